// clone, execvpe, pipe2, unshare, mkostemp and _Fork are GNU extensions.
#define _GNU_SOURCE
#include "CMultipackSpawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// fork without the atfork handlers: async-signal-safe, for a child of a threaded process (glibc 2.34).
extern pid_t _Fork(void);

// MARK: Stop signals

// A handler may only touch lock-free atomics.
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "stop signals need lock-free int atomics");

static atomic_int stop_signal;
static atomic_int stop_pipe_write = -1;
static atomic_int stop_pipe_read = -1;
static atomic_int children[MULTIPACK_CHILDREN_CAPACITY];
static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};

int multipack_stop_signal(void) { return atomic_load(&stop_signal); }

int multipack_stop_forwarded(void) {
    int signal = atomic_load(&stop_signal);
    return signal == SIGQUIT ? SIGTERM : signal;
}

int multipack_stop_descriptor(void) { return atomic_load(&stop_pipe_read); }

static void on_stop(int signal) {
    int saved = errno;
    int none = 0;
    // Only the first stop is passed on: a multipack in a namespace is sent it again until it ends
    // (it may have missed the first), and the processes it runs must get one, not a stream of them.
    if (atomic_compare_exchange_strong(&stop_signal, &none, signal)) {
        int forwarded = multipack_stop_forwarded();
        for (int index = 0; index < MULTIPACK_CHILDREN_CAPACITY; index++) {
            pid_t group = atomic_load(&children[index]);
            if (group > 0) kill(-group, forwarded);
        }
    }
    int pipe_end = atomic_load(&stop_pipe_write);
    if (pipe_end >= 0) {
        char byte = 1;
        ssize_t ignored = write(pipe_end, &byte, 1);  // a full pipe is readable already
        (void)ignored;
    }
    errno = saved;
}

int multipack_stop_install(void) {
    if (atomic_load(&stop_pipe_read) < 0) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return errno;
        atomic_store(&stop_pipe_write, fds[1]);
        atomic_store(&stop_pipe_read, fds[0]);
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR so their loops notice
    sigset_t unblock;
    sigemptyset(&unblock);
    for (size_t index = 0; index < sizeof stop_signals / sizeof stop_signals[0]; index++) {
        if (sigaction(stop_signals[index], &action, NULL) != 0) return errno;
        sigaddset(&unblock, stop_signals[index]);
    }
    // A parent may have started us with these blocked (a local build does, through bubblewrap):
    // unblocked only now, one that came in meanwhile reaches the handler.
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    return 0;
}

int multipack_children_add(pid_t group) {
    for (int index = 0; index < MULTIPACK_CHILDREN_CAPACITY; index++) {
        int free_slot = 0;
        if (atomic_compare_exchange_strong(&children[index], &free_slot, group)) {
            // A stop that came before the child was registered still reaches it.
            if (atomic_load(&stop_signal) != 0) kill(-group, multipack_stop_forwarded());
            return 0;
        }
    }
    if (atomic_load(&stop_signal) != 0) kill(-group, multipack_stop_forwarded());
    return -1;
}

void multipack_children_remove(pid_t group) {
    for (int index = 0; index < MULTIPACK_CHILDREN_CAPACITY; index++) {
        int expected = group;
        atomic_compare_exchange_strong(&children[index], &expected, 0);
    }
}

int multipack_children_contains(pid_t pid) {
    for (int index = 0; index < MULTIPACK_CHILDREN_CAPACITY; index++)
        if (atomic_load(&children[index]) == pid) return 1;
    return 0;
}

// MARK: Small system calls Swift's Glibc module does not show

int multipack_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int multipack_make_temporary_file(char *path_template) { return mkostemp(path_template, O_CLOEXEC); }

int multipack_is_anonymous_pipe(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) return -1;
    return info.f_type == 0x50495045 /* PIPEFS_MAGIC */;
}

int multipack_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int multipack_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L); }

int multipack_rename(const char *from, const char *to, unsigned int flags) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
}

// MARK: Namespaces (the direct sandbox)

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t length = (ssize_t)strlen(text);
    ssize_t written = write(fd, text, (size_t)length);
    close(fd);
    return written == length ? 0 : -1;
}

/// mkdir -p, in a forked child (no allocation). `last` says whether the last component is made
/// too (a directory) or left to the caller (a file's mount point, a symlink).
static int make_parents(const char *path, int last) {
    char buffer[4096];
    size_t length = strlen(path);
    if (length >= sizeof buffer) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buffer, path, length + 1);
    for (size_t index = 1; index <= length; index++) {
        if (buffer[index] != '/' && buffer[index] != '\0') continue;
        if (buffer[index] == '\0' && !last) break;
        char saved = buffer[index];
        buffer[index] = '\0';
        if (mkdir(buffer, 0755) != 0 && errno != EEXIST) return -1;
        buffer[index] = saved;
    }
    return 0;
}

/// Makes a mount and every mount under it read-only: mount_setattr (Linux 5.12), else a remount
/// of the top one, which must keep the flags the kernel locked on it (nosuid, nodev, ...) in a
/// user namespace, or it is refused.
static int remount_read_only(const char *target) {
    struct {
        unsigned long long set, clear, propagation, userns;
    } attributes = {1 /* MOUNT_ATTR_RDONLY */, 0, 0, 0};
    if (syscall(442 /* mount_setattr */, AT_FDCWD, target, 0x8000 /* AT_RECURSIVE */, &attributes,
                sizeof attributes) == 0)
        return 0;
    struct statfs info;
    if (statfs(target, &info) != 0) return -1;
    unsigned long kept = (unsigned long)info.f_flags &
                         (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
    return mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, NULL);
}

/// Closes every descriptor but `keep` (-1: all), for the processes that stay behind in a namespace
/// and never exec: they must not hold multipack's pipes or locks open.
static void close_all_but(int keep) {
    for (int fd = 0; fd < 3; fd++)
        if (fd != keep) close(fd);
    int from = keep >= 3 ? keep + 1 : 3;
    if (keep >= 3 && syscall(436 /* close_range */, 3, keep - 1, 0) != 0)
        for (int fd = 3; fd < keep; fd++) close(fd);
    if (syscall(436 /* close_range */, from, ~0U, 0) != 0)
        for (int fd = from; fd < 4096; fd++) close(fd);
}

/// Outside the PID namespace: waits for its first process and ends as it did (exit code, or the
/// signal that killed it). Every signal stays blocked here: a stop sent to the process group
/// reaches the build inside, not this relay.
static void relay_exit(pid_t first) {
    int status;
    while (waitpid(first, &status, 0) < 0)
        if (errno != EINTR) _exit(127);
    if (WIFSIGNALED(status)) {
        struct sigaction standard;
        memset(&standard, 0, sizeof standard);
        standard.sa_handler = SIG_DFL;
        sigaction(WTERMSIG(status), &standard, NULL);
        sigset_t only;
        sigemptyset(&only);
        sigaddset(&only, WTERMSIG(status));
        kill(getpid(), WTERMSIG(status));
        sigprocmask(SIG_UNBLOCK, &only, NULL);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 127);
}

/// The namespace's first process, as bubblewrap's init: reaps every orphan and ends when the
/// command does, with its code (128 + the signal that killed it); the kernel then ends every
/// process left inside. The command is not pid 1, where the kernel drops signals it has no
/// handler for (a SIGTERM to `multipack run`'s process would do nothing).
static void run_init(pid_t command) {
    int status, code = 127;
    for (;;) {
        pid_t reaped = waitpid(-1, &status, 0);
        if (reaped == command) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (reaped < 0 && errno != EINTR) break;
    }
    _exit(code);
}

/// Makes the calling (forked, single-threaded) process's own user, mount and PID namespace and
/// root, as bubblewrap would: `plan` is the uid map, the gid map, then steps of three strings
/// (kind, source, target) that build the new root at /newroot from the old one at /oldroot,
/// NULL-ended. Kinds: b/r a directory bound writable/read-only, B/R a file, t a tmpfs, s a symlink
/// (source is its text), o a read-only remount, d a directory, P a devpts (skipped where refused),
/// p the namespace's own procfs (the source bound instead where there is no PID namespace).
/// With a PID namespace, three processes: the caller stays outside as the relay (relay_exit), its
/// child is the namespace's first process (run_init), and the grandchild returns to exec the
/// command. Where PID namespaces are refused, the caller goes on alone. `parent` is multipack.
/// Only async-signal-safe calls (_Fork, not fork).
/// Returns 0, or MULTIPACK_SANDBOX_FAILED | step << 8 | errno (step 0: the namespace itself).
static int enter_sandbox(char *const plan[], pid_t parent) {
#define FAIL(step) return MULTIPACK_SANDBOX_FAILED | ((step) << 8) | (errno & 0xff)
    int pid_namespace = unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) == 0;
    if (!pid_namespace && unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) FAIL(0);
    if (write_file("/proc/self/setgroups", "deny") != 0 && errno != ENOENT) FAIL(0);
    if (write_file("/proc/self/uid_map", plan[0]) != 0) FAIL(0);
    if (write_file("/proc/self/gid_map", plan[1]) != 0) FAIL(0);
    if (pid_namespace) {
        // The new credentials cleared the parent-death signal: set again, then checked, since
        // multipack may have died in between. The relay dies with multipack, the first process
        // with the relay; the relay holds `alive` open, and a hang-up there tells the first
        // process it came too late for its own signal (a parent's pid means nothing inside).
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
        if (getppid() != parent) _exit(127);
        int alive[2];
        if (pipe2(alive, O_CLOEXEC) != 0) FAIL(0);
        pid_t first = _Fork();
        if (first < 0) FAIL(0);
        if (first > 0) {
            close_all_but(alive[1]);
            relay_exit(first);
        }
        close(alive[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
        struct pollfd relay = {alive[0], POLLIN, 0};
        if (poll(&relay, 1, 0) != 0) _exit(127);
        close(alive[0]);
    }
    // Nothing done here reaches the host; then a scratch root to stand on while the new one is
    // built, so that the old one (with the host's /tmp uncovered) is at /oldroot.
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) FAIL(0);
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) FAIL(0);
    if (mkdir("/tmp/newroot", 0755) != 0 || mkdir("/tmp/oldroot", 0755) != 0) FAIL(0);
    if (syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") != 0 || chdir("/") != 0) FAIL(0);
    if (mount("tmpfs", "/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) FAIL(0);
    for (int index = 2, step = 1; plan[index] != NULL; index += 3, step++) {
        char kind = plan[index][0];
        const char *source = plan[index + 1], *target = plan[index + 2];
        int made = make_parents(
            target, kind == 'b' || kind == 'r' || kind == 't' || kind == 'd' || kind == 'P' || kind == 'p');
        if (made != 0) FAIL(step);
        switch (kind) {
        case 'B':
        case 'R': {
            int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0) close(fd);
        }
            /* fallthrough */
        case 'b':
        case 'r':
            if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) != 0) FAIL(step);
            if ((kind == 'r' || kind == 'R') && remount_read_only(target) != 0) FAIL(step);
            break;
        case 't':
            if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) FAIL(step);
            break;
        case 's':
            if (symlink(source, target) != 0 && errno != EEXIST) FAIL(step);
            break;
        case 'o':
            if (remount_read_only(target) != 0) FAIL(step);
            break;
        case 'P':
            mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620");
            break;
        case 'p':
            // In a PID namespace only its own procfs will do: the host's would show pids that
            // mean other processes inside (multipack looks there for what a stage left running).
            if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0 &&
                (pid_namespace || mount(source, target, NULL, MS_BIND | MS_REC, NULL) != 0))
                FAIL(step);
            break;
        }
    }
    // The new root replaces the scratch one, which goes with the old root under it.
    if (chdir("/newroot") != 0 || syscall(SYS_pivot_root, ".", ".") != 0) FAIL(0);
    if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) FAIL(0);
    if (pid_namespace) {
        pid_t command = _Fork();
        if (command < 0) FAIL(0);
        if (command > 0) {
            close_all_but(-1);
            run_init(command);
        }
    }
    return 0;
#undef FAIL
}

// MARK: Spawning

/// A new child's first steps, before exec: default signal dispositions, its own process group
/// (or session, with its terminal as controlling terminal), SIGKILL when multipack dies
/// (PR_SET_PDEATHSIG), and the descriptors `io` says (a descriptor, -1 to inherit, -2 for
/// /dev/null; the passed one as descriptor 3). System calls only.
static void child_setup(pid_t parent, const struct multipack_spawn_io *io) {
    struct sigaction standard;
    memset(&standard, 0, sizeof standard);
    standard.sa_handler = SIG_DFL;
    for (int signal = 1; signal < NSIG; signal++) sigaction(signal, &standard, NULL);
    if (io->terminal >= 0 || io->session) {
        setsid();
        if (io->terminal >= 0) ioctl(io->terminal, TIOCSCTTY, 0);
    } else {
        setpgid(0, 0);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
    if (getppid() != parent) _exit(127);
    int targets[3] = {io->in, io->out, io->err};
    for (int index = 0; index < 3; index++) {
        int fd = io->terminal >= 0 ? io->terminal : targets[index];
        if (fd == -2) {
            int null_fd = open("/dev/null", index == 0 ? O_RDONLY : O_WRONLY);
            if (null_fd >= 0 && null_fd != index) {
                dup2(null_fd, index);
                close(null_fd);
            }
        } else if (fd >= 0) {
            dup2(fd, index);
        }
    }
    if (io->pass == 3) {
        fcntl(3, F_SETFD, 0);
    } else if (io->pass >= 0) {
        dup2(io->pass, 3);
    }
}

/// The mask a child execs with: empty, or the stop signals blocked for a wrapper (bubblewrap) that
/// would die of one and take the multipack it runs with it; that multipack takes them (pending
/// ones too) once its own handlers are set, and stops in order.
static void exec_mask(int block_stops) {
    sigset_t mask;
    sigemptyset(&mask);
    if (block_stops)
        for (size_t index = 0; index < sizeof stop_signals / sizeof stop_signals[0]; index++)
            sigaddset(&mask, stop_signals[index]);
    sigprocmask(SIG_SETMASK, &mask, NULL);
}

/// fork and exec, for a child that enters a namespace first: a child that shares multipack's
/// memory (as the other children do) is refused a user namespace by unshare. Only
/// async-signal-safe calls run between fork and exec.
static int spawn_forked(pid_t *pid_out, const char *file, char *const argv[], char *const envp[], const char *cwd,
                        const struct multipack_spawn_io *io, char *const sandbox[], int block_stops) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        child_setup(parent, io);
        int code = enter_sandbox(sandbox, parent);
        // Entering a user namespace changes credentials: the parent-death signal is set again.
        if (code == 0) prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
        if (code == 0 && cwd != NULL && chdir(cwd) != 0) code = errno;
        if (code == 0) {
            exec_mask(block_stops);
            execvpe(file, argv, envp);
            code = errno;
        }
        ssize_t ignored = write(report[1], &code, sizeof code);
        (void)ignored;
        _exit(127);
    }
    int fork_errno = errno;
    if (pid > 0) multipack_children_add(pid);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(report[1]);
    if (pid < 0) {
        close(report[0]);
        return fork_errno;
    }
    int child_errno = 0;
    ssize_t count;
    do {
        count = read(report[0], &child_errno, sizeof child_errno);
    } while (count < 0 && errno == EINTR);
    close(report[0]);
    if (count == (ssize_t)sizeof child_errno) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        multipack_children_remove(pid);
        return child_errno != 0 ? child_errno : ENOEXEC;
    }
    *pid_out = pid;
    return 0;
}

struct spawn_request {
    const char *file;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    struct multipack_spawn_io io;
    pid_t parent;
    int block_stops;
    int error;
};

/// The child's side: runs on its own stack in multipack's memory until exec, so it only makes
/// system calls and writes nothing but `request->error`.
static int spawn_child(void *raw) {
    struct spawn_request *request = raw;
    child_setup(request->parent, &request->io);
    if (request->cwd != NULL && chdir(request->cwd) != 0) {
        request->error = errno;
        _exit(127);
    }
    exec_mask(request->block_stops);
    execvpe(request->file, request->argv, request->envp);
    request->error = errno;
    _exit(127);
}

int multipack_spawn(pid_t *pid_out, const char *file, char *const argv[], char *const envp[], const char *cwd,
                    struct multipack_spawn_io io, char *const sandbox[], int block_stops) {
    if (sandbox != NULL) return spawn_forked(pid_out, file, argv, envp, cwd, &io, sandbox, block_stops);
    // execvpe searches PATH in a buffer on this stack.
    const char *path = getenv("PATH");
    size_t size = (256 << 10) + (path != NULL ? 2 * strlen(path) : 0);
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return errno;
    struct spawn_request request = {file, argv, envp, cwd, io, getpid(), block_stops, 0};
    // No handler of multipack's may run in the child before it resets them, and a stop that comes
    // now is handled once the child is registered.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = clone(spawn_child, (char *)stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, &request);
    int clone_errno = errno;
    if (pid > 0 && request.error == 0) multipack_children_add(pid);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    munmap(stack, size);
    if (pid < 0) return clone_errno;
    if (request.error != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return request.error;
    }
    *pid_out = pid;
    return 0;
}
