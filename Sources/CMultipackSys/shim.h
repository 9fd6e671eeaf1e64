// What Swift's Glibc module leaves out because it is built without _GNU_SOURCE.
#include <spawn.h>
#include <signal.h>
#include <sys/file.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

// glibc >= 2.29 (every Heroku stack): start a child in another working directory without a shell.
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *actions, const char *path);

// Linux (every Heroku stack): a pipe whose ends are closed on exec, atomically.
extern int pipe2(int pipefd[2], int flags);

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

extern int execvpe(const char *file, char *const argv[], char *const envp[]);
// fork without the atfork handlers: async-signal-safe, for a child of a threaded process (glibc 2.34).
extern pid_t _Fork(void);
// A temporary file made close-on-exec atomically.
extern int mkostemp(char *template_, int flags);
// A byte string inside another, in linear time (glibc's two-way search).
extern void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen);
extern int unshare(int flags);

/// A failure of the namespace's set-up, as the child reports it: this bit, the step's index
/// shifted by 8, and the errno.
#define MULTIPACK_SANDBOX_FAILED 0x40000000

static inline int multipack_write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t length = (ssize_t)strlen(text);
    ssize_t written = write(fd, text, (size_t)length);
    close(fd);
    return written == length ? 0 : -1;
}

/// mkdir -p, in a forked child (no allocation). `last` says whether the last component is made
/// too (a directory) or left to the caller (a file's mount point, a symlink).
static inline int multipack_make_parents(const char *path, int last) {
    char buffer[4096];
    size_t length = strlen(path);
    if (length >= sizeof buffer) { errno = ENAMETOOLONG; return -1; }
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
static inline int multipack_remount_read_only(const char *target) {
    struct { unsigned long long set, clear, propagation, userns; } attributes = {1 /* MOUNT_ATTR_RDONLY */, 0, 0, 0};
    if (syscall(442 /* mount_setattr */, AT_FDCWD, target, 0x8000 /* AT_RECURSIVE */, &attributes, sizeof attributes) == 0)
        return 0;
    struct statfs info;
    if (statfs(target, &info) != 0) return -1;
    unsigned long kept = (unsigned long)info.f_flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
    return mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, NULL);
}

/// Closes every descriptor but `keep` (-1: all), for the processes that stay behind in a namespace
/// and never exec: they must not hold multipack's pipes or locks open.
static inline void multipack_close_all_but(int keep) {
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
static inline void multipack_relay_exit(pid_t first) {
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
static inline void multipack_init(pid_t command) {
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
/// With a PID namespace, three processes: the caller stays outside as the relay
/// (`multipack_relay_exit`), its child is the namespace's first process (`multipack_init`), and
/// the grandchild returns to exec the command. Where PID namespaces are refused, the caller goes on
/// alone. `parent` is multipack. Only async-signal-safe calls (_Fork, not fork).
/// Returns 0, or MULTIPACK_SANDBOX_FAILED | step << 8 | errno (step 0: the namespace itself).
static inline int multipack_enter_sandbox(char *const plan[], pid_t parent) {
#define MULTIPACK_FAIL(step) return MULTIPACK_SANDBOX_FAILED | ((step) << 8) | (errno & 0xff)
    int pid_namespace = unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) == 0;
    if (!pid_namespace && unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) MULTIPACK_FAIL(0);
    if (multipack_write_file("/proc/self/setgroups", "deny") != 0 && errno != ENOENT) MULTIPACK_FAIL(0);
    if (multipack_write_file("/proc/self/uid_map", plan[0]) != 0) MULTIPACK_FAIL(0);
    if (multipack_write_file("/proc/self/gid_map", plan[1]) != 0) MULTIPACK_FAIL(0);
    if (pid_namespace) {
        // The new credentials cleared the parent-death signal: set again, then checked, since
        // multipack may have died in between. The relay dies with multipack, the first process
        // with the relay; the relay holds `alive` open, and a hang-up there tells the first
        // process it came too late for its own signal (a parent's pid means nothing inside).
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
        if (getppid() != parent) _exit(127);
        int alive[2];
        if (pipe2(alive, O_CLOEXEC) != 0) MULTIPACK_FAIL(0);
        pid_t first = _Fork();
        if (first < 0) MULTIPACK_FAIL(0);
        if (first > 0) {
            multipack_close_all_but(alive[1]);
            multipack_relay_exit(first);
        }
        close(alive[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
        struct pollfd relay = {alive[0], POLLIN, 0};
        if (poll(&relay, 1, 0) != 0) _exit(127);
        close(alive[0]);
    }
    // Nothing done here reaches the host; then a scratch root to stand on while the new one is
    // built, so that the old one (with the host's /tmp uncovered) is at /oldroot.
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) MULTIPACK_FAIL(0);
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) MULTIPACK_FAIL(0);
    if (mkdir("/tmp/newroot", 0755) != 0 || mkdir("/tmp/oldroot", 0755) != 0) MULTIPACK_FAIL(0);
    if (syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") != 0 || chdir("/") != 0) MULTIPACK_FAIL(0);
    if (mount("tmpfs", "/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) MULTIPACK_FAIL(0);
    for (int index = 2, step = 1; plan[index] != NULL; index += 3, step++) {
        char kind = plan[index][0];
        const char *source = plan[index + 1], *target = plan[index + 2];
        int made = multipack_make_parents(
            target, kind == 'b' || kind == 'r' || kind == 't' || kind == 'd' || kind == 'P' || kind == 'p');
        if (made != 0) MULTIPACK_FAIL(step);
        switch (kind) {
        case 'B':
        case 'R': {
            int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0) close(fd);
        }
            /* fallthrough */
        case 'b':
        case 'r':
            if (mount(source, target, NULL, MS_BIND | MS_REC, NULL) != 0) MULTIPACK_FAIL(step);
            if ((kind == 'r' || kind == 'R') && multipack_remount_read_only(target) != 0) MULTIPACK_FAIL(step);
            break;
        case 't':
            if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) MULTIPACK_FAIL(step);
            break;
        case 's':
            if (symlink(source, target) != 0 && errno != EEXIST) MULTIPACK_FAIL(step);
            break;
        case 'o':
            if (multipack_remount_read_only(target) != 0) MULTIPACK_FAIL(step);
            break;
        case 'P':
            mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620");
            break;
        case 'p':
            // In a PID namespace only its own procfs will do: the host's would show pids that
            // mean other processes inside (multipack looks there for what a stage left running).
            if (mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0 &&
                (pid_namespace || mount(source, target, NULL, MS_BIND | MS_REC, NULL) != 0))
                MULTIPACK_FAIL(step);
            break;
        }
    }
    // The new root replaces the scratch one, which goes with the old root under it.
    if (chdir("/newroot") != 0 || syscall(SYS_pivot_root, ".", ".") != 0) MULTIPACK_FAIL(0);
    if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) MULTIPACK_FAIL(0);
    if (pid_namespace) {
        pid_t command = _Fork();
        if (command < 0) MULTIPACK_FAIL(0);
        if (command > 0) {
            multipack_close_all_but(-1);
            multipack_init(command);
        }
    }
    return 0;
#undef MULTIPACK_FAIL
}

/// Makes multipack the reaper of every orphan its children leave (SPEC §11), so that a daemon a
/// compile starts with setsid or nohup can be found and stopped when the stage ends.
static inline int multipack_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L); }

/// renameat2 (Linux 3.15), which the Glibc module does not show: EXCHANGE swaps two names at once,
/// NOREPLACE fails rather than replace. -1 with EINVAL where the file system has neither.
#define MULTIPACK_RENAME_NOREPLACE 1
#define MULTIPACK_RENAME_EXCHANGE 2
static inline int multipack_rename(const char *from, const char *to, unsigned int flags) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
}

/// A descriptor that polls readable when the process exits (Linux 5.3); -1 where unsupported.
static inline int multipack_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/// A new child's first steps, before exec: default signal dispositions, its own process group,
/// SIGKILL when multipack dies (PR_SET_PDEATHSIG), stdin /dev/null and the given stdout/stderr
/// (a descriptor, -1 to inherit, -2 for /dev/null). System calls only.
static inline void multipack_child_setup(pid_t parent, int out, int err) {
    struct sigaction standard;
    memset(&standard, 0, sizeof standard);
    standard.sa_handler = SIG_DFL;
    for (int signal = 1; signal < NSIG; signal++) sigaction(signal, &standard, NULL);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
    if (getppid() != parent) _exit(127);
    int null_in = open("/dev/null", O_RDONLY);
    if (null_in >= 0 && null_in != 0) { dup2(null_in, 0); close(null_in); }
    int targets[2] = {out, err};
    for (int index = 0; index < 2; index++) {
        int fd = targets[index];
        if (fd == -2) {
            int null_out = open("/dev/null", O_WRONLY);
            if (null_out >= 0) { dup2(null_out, index + 1); close(null_out); }
        } else if (fd >= 0) {
            dup2(fd, index + 1);
        }
    }
}

/// The mask a child execs with: empty, or the stop signals blocked for a wrapper (bubblewrap) that
/// would die of one and take the multipack it runs with it; that multipack takes them (pending
/// ones too) once its own handlers are set, and stops in order.
static inline void multipack_exec_mask(int block_stops) {
    sigset_t mask;
    sigemptyset(&mask);
    if (block_stops) {
        int stops[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
        for (int index = 0; index < 4; index++) sigaddset(&mask, stops[index]);
    }
    sigprocmask(SIG_SETMASK, &mask, NULL);
}

/// fork and exec, for a child that enters a namespace first: a child that shares multipack's
/// memory (as multipack_spawn's other children do) is refused a user namespace by unshare. The
/// rest as multipack_spawn. Only async-signal-safe calls run between fork and exec.
static inline int multipack_spawn_forked(pid_t *pid_out, const char *file, char *const argv[],
                                         char *const envp[], const char *cwd, int out, int err,
                                         char *const sandbox[], int block_stops) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
        multipack_child_setup(parent, out, err);
        int code = sandbox != NULL ? multipack_enter_sandbox(sandbox, parent) : 0;
        // Entering a user namespace changes credentials: the parent-death signal is set again.
        if (code == 0 && sandbox != NULL) prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
        if (code == 0 && cwd != NULL && chdir(cwd) != 0) code = errno;
        if (code == 0) {
            multipack_exec_mask(block_stops);
            execvpe(file, argv, envp);
            code = errno;
        }
        ssize_t ignored = write(report[1], &code, sizeof code);
        (void)ignored;
        _exit(127);
    }
    int fork_errno = errno;
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
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return child_errno != 0 ? child_errno : ENOEXEC;
    }
    *pid_out = pid;
    return 0;
}

// clone(2) with a function on its own stack, as posix_spawn uses it (<sched.h> hides it without
// _GNU_SOURCE; the flags come from <linux/sched.h>).
extern int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...);

struct multipack_spawn_request {
    const char *file;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    int out, err;
    pid_t parent;
    int block_stops;
    int error;
};

/// The child's side: runs on its own stack in multipack's memory until exec, so it only makes
/// system calls and writes nothing but `request->error`.
static inline int multipack_spawn_child(void *raw) {
    struct multipack_spawn_request *request = raw;
    multipack_child_setup(request->parent, request->out, request->err);
    if (request->cwd != NULL && chdir(request->cwd) != 0) {
        request->error = errno;
        _exit(127);
    }
    multipack_exec_mask(request->block_stops);
    execvpe(request->file, request->argv, request->envp);
    request->error = errno;
    _exit(127);
}

/// Starts a child as posix_spawn does (clone with CLONE_VM|CLONE_VFORK: no copy of multipack's
/// memory, multipack waits until the exec), with what posix_spawn cannot do: the child gets
/// SIGKILL if multipack dies (PR_SET_PDEATHSIG). The child has its own process group, stdin
/// /dev/null, default signal dispositions and an empty mask (see multipack_exec_mask for
/// `block_stops`). `out`/`err`: a descriptor to use, -1 to inherit, -2 for /dev/null. `sandbox`:
/// NULL, or a plan for multipack_enter_sandbox, entered before `cwd` (in a forked child). Returns
/// 0 or an errno.
static inline int multipack_spawn(pid_t *pid_out, const char *file, char *const argv[],
                                  char *const envp[], const char *cwd, int out, int err,
                                  char *const sandbox[], int block_stops) {
    if (sandbox != NULL)
        return multipack_spawn_forked(pid_out, file, argv, envp, cwd, out, err, sandbox, block_stops);
    // execvpe searches PATH in a buffer on this stack.
    const char *path = getenv("PATH");
    size_t size = (256 << 10) + (path != NULL ? 2 * strlen(path) : 0);
    void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return errno;
    struct multipack_spawn_request request = {file, argv, envp, cwd, out, err, getpid(), block_stops, 0};
    // No handler of multipack's may run in the child before it resets them.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = clone(multipack_spawn_child, (char *)stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD,
                      &request);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    munmap(stack, size);
    if (pid < 0) return clone_errno;
    if (request.error != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return request.error;
    }
    *pid_out = pid;
    return 0;
}
