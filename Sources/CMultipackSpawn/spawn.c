// clone, execvpe, pipe2, unshare, mkostemp and _Fork are GNU extensions.
#define _GNU_SOURCE
#include "CMultipackSpawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
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
#include <sys/xattr.h>
#include <unistd.h>

// fork without the atfork handlers: async-signal-safe, for a child of a threaded process (glibc 2.34).
extern pid_t _Fork(void);

// MARK: Stop signals

// A handler may only touch lock-free atomics.
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "stop signals need lock-free int atomics");
_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "stop signals need lock-free pointer atomics");

static atomic_int stop_signal;
static atomic_int stop_pipe_write = -1;
static atomic_int stop_pipe_read = -1;
// The registered children's process groups: here, or in memory shared with the watchdog once
// multipack_watchdog_start moved them there.
static atomic_int local_children[MULTIPACK_CHILDREN_CAPACITY];
static _Atomic(atomic_int *) children_slots = local_children;
#define children (atomic_load(&children_slots))
static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};

int multipack_stop_signal(void) { return atomic_load(&stop_signal); }

int multipack_stop_forwarded(void) {
    int signal = atomic_load(&stop_signal);
    return signal == SIGQUIT ? SIGTERM : signal;
}

int multipack_stop_descriptor(void) { return atomic_load(&stop_pipe_read); }

/// Sends `signal` to a child's process group; a child forked a moment ago may not have made its
/// group yet (it does before anything else), and then gets it itself: a namespace's relay, where
/// every signal is blocked, passes it on once the command exists (pass_early_stops).
static void signal_group(pid_t group, int signal) {
    if (kill(-group, signal) != 0 && errno == ESRCH) kill(group, signal);
}

static void on_stop(int signal) {
    int saved = errno;
    int none = 0;
    // Only the first stop is passed on: a multipack in a namespace is sent it again until it ends
    // (it may have missed the first), and the processes it runs must get one, not a stream of them.
    if (atomic_compare_exchange_strong(&stop_signal, &none, signal)) {
        int forwarded = multipack_stop_forwarded();
        for (int index = 0; index < MULTIPACK_CHILDREN_CAPACITY; index++) {
            pid_t group = atomic_load(&children[index]);
            if (group > 0) signal_group(group, forwarded);
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
            if (atomic_load(&stop_signal) != 0) signal_group(group, multipack_stop_forwarded());
            return 0;
        }
    }
    if (atomic_load(&stop_signal) != 0) signal_group(group, multipack_stop_forwarded());
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

/// Waits for the child `pid` to end, through interruptions (how it ended does not matter).
static void reap(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

/// Reads one byte, through interruptions: 1, 0 at end of file, or -1.
static ssize_t read_byte(int fd, char *byte) {
    ssize_t count;
    do {
        count = read(fd, byte, 1);
    } while (count < 0 && errno == EINTR);
    return count;
}

// MARK: The watchdog

static int watchdog_end = -1;
static int watchdog_done = -1;
// The watchdog's pidfd: readable once it is a zombie, not merely once its descriptors closed.
static int watchdog_pidfd = -1;

/// Closes every descriptor but those in `keep` (-1 entries ignored). System calls only.
static void close_all_except(const int *keep, int count) {
    int sorted[8], used = 0;
    for (int index = 0; index < count && used < 8; index++)
        if (keep[index] >= 0) sorted[used++] = keep[index];
    for (int i = 1; i < used; i++)
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            int swap = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = swap;
        }
    unsigned int from = 0;
    for (int index = 0; index <= used; index++) {
        unsigned int to = index < used ? (unsigned int)sorted[index] : ~0U;
        if (to > from) {
            unsigned int last = index < used ? to - 1 : ~0U;
            if (syscall(436 /* close_range */, from, last, 0) != 0)
                for (unsigned int fd = from; fd <= last && fd < 4096; fd++) close((int)fd);
        }
        if (index < used) from = to + 1;
    }
}

/// The watchdog's life: it waits for multipack's end of the pipe to close (multipack exited or
/// was killed, SIGKILL included) and then kills every process group still registered, so that
/// what a child started in its group (a compile's background job) cannot outlive multipack.
static void watch(int end, int done) {
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    for (int signal = 1; signal < NSIG; signal++)
        if (signal != SIGKILL && signal != SIGSTOP) sigaction(signal, &ignore, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int keep[] = {end, done};
    close_all_except(keep, 2);
    if (chdir("/") != 0) {
    }
    prctl(PR_SET_NAME, "multipack-watch", 0L, 0L, 0L);
    for (;;) {
        char byte;
        ssize_t count = read(end, &byte, 1);
        if (count == 0 || (count < 0 && errno != EINTR)) break;
    }
    atomic_int *slots = children;
    for (int index = 0; index < MULTIPACK_CHILDREN_CAPACITY; index++) {
        pid_t group = atomic_load(&slots[index]);
        if (group > 0) kill(-group, SIGKILL);
    }
    _exit(0);
}

int multipack_watchdog_start(void) {
    if (watchdog_end >= 0) return 0;
    atomic_int *shared = mmap(NULL, sizeof(atomic_int) * MULTIPACK_CHILDREN_CAPACITY, PROT_READ | PROT_WRITE,
                              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return errno;
    for (int index = 0; index < MULTIPACK_CHILDREN_CAPACITY; index++)
        atomic_store(&shared[index], atomic_load(&local_children[index]));
    atomic_store(&children_slots, shared);
    int pipe_fds[2], done_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return errno;
    if (pipe2(done_fds, O_CLOEXEC) != 0) {
        int code = errno;
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        return code;
    }
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t middle = _Fork();
    if (middle == 0) {
        // Its own session: a signal or SIGKILL sent to multipack's process group leaves it. Not
        // multipack's child (the middle process exits): a subreaper's scan for leftovers never
        // meets it, and multipack's own waits never reap it.
        setsid();
        pid_t watchdog = _Fork();
        if (watchdog == 0) watch(pipe_fds[0], done_fds[1]);
        if (watchdog > 0) {
            ssize_t ignored = write(done_fds[1], &watchdog, sizeof watchdog);
            (void)ignored;
        }
        _exit(0);
    }
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(pipe_fds[0]);
    close(done_fds[1]);
    if (middle < 0) {
        close(pipe_fds[1]);
        close(done_fds[0]);
        return fork_errno;
    }
    reap(middle);
    pid_t watchdog = 0;
    ssize_t got;
    do {
        got = read(done_fds[0], &watchdog, sizeof watchdog);
    } while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof watchdog && watchdog > 0) watchdog_pidfd = multipack_pidfd_open(watchdog);
    watchdog_end = pipe_fds[1];
    watchdog_done = done_fds[0];
    return 0;
}

void multipack_watchdog_stop(void) {
    if (watchdog_end < 0) return;
    close(watchdog_end);
    watchdog_end = -1;
    // Gone before multipack: an ancestor that reaps orphans then meets at most its zombie. Its
    // descriptors close before it is one, so its pidfd says when it is (the pipe where there
    // is none).
    struct pollfd done = {watchdog_pidfd >= 0 ? watchdog_pidfd : watchdog_done, POLLIN, 0};
    while (poll(&done, 1, 1000) < 0 && errno == EINTR) {
    }
    if (watchdog_pidfd >= 0) close(watchdog_pidfd);
    watchdog_pidfd = -1;
    close(watchdog_done);
    watchdog_done = -1;
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

int multipack_set_access_acl(const char *path, const void *value, size_t size) {
    return setxattr(path, "system.posix_acl_access", value, size, 0);
}

int multipack_remove_access_acl(const char *path) { return removexattr(path, "system.posix_acl_access"); }

int multipack_rename(const char *from, const char *to, unsigned int flags) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
}

// MARK: Namespaces (the direct sandbox)

// The new mount API by number (Linux 5.2; idmapped mounts 5.12): glibc ≤ 2.35, which the
// packaged binary must run on, has no wrappers. The numbers are the same on every architecture.
#define SYSCALL_OPEN_TREE 428
#define SYSCALL_MOVE_MOUNT 429
#define SYSCALL_MOUNT_SETATTR 442
#define OPEN_TREE_CLONE_FLAG 1
#define MOVE_MOUNT_F_EMPTY_PATH_FLAG 0x4
#define ATTR_RDONLY 0x1
#define ATTR_NOSUID 0x2
#define ATTR_NODEV 0x4
#define ATTR_IDMAP 0x100000
#define ATTR_RECURSIVE 0x8000

struct mount_attributes {
    unsigned long long set, clear, propagation, userns;
};

/// Writes `text` whole to `fd` (-1: its open failed) and closes it. No allocation, no stdio.
static int write_whole(int fd, const char *text) {
    if (fd < 0) return -1;
    ssize_t length = (ssize_t)strlen(text);
    ssize_t written = write(fd, text, (size_t)length);
    close(fd);
    return written == length ? 0 : -1;
}

static int write_file(const char *path, const char *text) {
    return write_whole(open(path, O_WRONLY | O_CLOEXEC), text);
}

/// `/proc/<pid>/<name>` relative to a descriptor of /proc, written whole. No allocation, no stdio.
static int write_proc_file(int proc, pid_t pid, const char *name, const char *text) {
    char path[64];
    char digits[16];
    int count = 0;
    for (unsigned int value = (unsigned int)pid; count == 0 || value > 0; value /= 10)
        digits[count++] = (char)('0' + value % 10);
    int length = 0;
    while (count > 0) path[length++] = digits[--count];
    path[length++] = '/';
    for (const char *cursor = name; *cursor != '\0' && length < (int)sizeof path - 1; cursor++) path[length++] = *cursor;
    path[length] = '\0';
    return write_whole(openat(proc, path, O_WRONLY | O_CLOEXEC), text);
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

/// Makes a mount and every mount under it read-only, nosuid and nodev, as bubblewrap's
/// --ro-bind does (a build must not change what the next runs on, nor gain from a setuid file or
/// a device node of a stack's image): mount_setattr (Linux 5.12), else a remount of the top one,
/// which must keep the flags the kernel locked on it (noexec, atime, ...) in a user namespace, or
/// it is refused.
static int remount_read_only(const char *target) {
    struct mount_attributes attributes = {ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV, 0, 0, 0};
    if (syscall(SYSCALL_MOUNT_SETATTR, AT_FDCWD, target, ATTR_RECURSIVE, &attributes, sizeof attributes) == 0)
        return 0;
    struct statfs info;
    if (statfs(target, &info) != 0) return -1;
    unsigned long kept = (unsigned long)info.f_flags &
                         (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
    return mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | kept, NULL);
}

/// A bind of the caller's own directory or file that the build must see as its own (the build
/// directory, the cache, the config vars): a copy of its mount, idmapped through `userns` (the
/// caller's ids onto the build's), nosuid and nodev, moved to `target`.
static int bind_idmapped(const char *source, const char *target, int writable, int userns) {
    int tree = (int)syscall(SYSCALL_OPEN_TREE, AT_FDCWD, source, OPEN_TREE_CLONE_FLAG | O_CLOEXEC);
    if (tree < 0) return -1;
    struct mount_attributes attributes = {ATTR_IDMAP | ATTR_NOSUID | ATTR_NODEV | (writable ? 0 : ATTR_RDONLY), 0, 0,
                                          (unsigned long long)userns};
    int result = (int)syscall(SYSCALL_MOUNT_SETATTR, tree, "", AT_EMPTY_PATH, &attributes, sizeof attributes);
    if (result == 0)
        result = (int)syscall(SYSCALL_MOVE_MOUNT, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH_FLAG);
    int saved = errno;
    close(tree);
    errno = saved;
    return result;
}

/// Closes every descriptor but `keep` (-1: all), for the processes that stay behind in a namespace
/// and never exec: they must not hold multipack's pipes or locks open.
static void close_all_but(int keep) { close_all_except(&keep, 1); }

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

/// Who the child becomes: the plan's first word, "<mode> <uid> <gid> <idmap>", read before the fork.
struct identity {
    /// 's': a user namespace of its own, which maps the caller's uid (an unprivileged caller's).
    /// 'r': root's: the new root is made as root, then a user namespace whose maps the relay
    ///      writes (the build's user is another uid than root's, which only a process privileged
    ///      outside may map, as newuidmap does), then the ids are taken for good.
    /// 'd': no namespace: the ids are taken on the host for good.
    char mode;
    uid_t uid;
    gid_t gid;
    /// 'r': a user namespace mapping the caller's ids onto the build's, for owned binds; -1: none.
    int idmap;
};

static int parse_identity(const char *word, struct identity *out) {
    char *end;
    out->mode = word[0];
    if (out->mode != 's' && out->mode != 'r' && out->mode != 'd') return EINVAL;
    unsigned long uid = strtoul(word + 1, &end, 10);
    unsigned long gid = strtoul(end, &end, 10);
    long idmap = strtol(end, &end, 10);
    if (*end != '\0') return EINVAL;
    out->uid = (uid_t)uid;
    out->gid = (gid_t)gid;
    out->idmap = (int)idmap;
    return 0;
}

/// Takes the build's ids for good (SPEC §15, "Not root, for real"): no supplementary group, the
/// gid and uid, no capability and no_new_privs, so that no setuid binary or file capability
/// grants anything after exec.
static int drop_to(const struct identity *id) {
    if (setgroups(0, NULL) != 0) return -1;
    if (setresgid(id->gid, id->gid, id->gid) != 0) return -1;
    if (setresuid(id->uid, id->uid, id->uid) != 0) return -1;
    // In root's user namespace, where root's own uid is not mapped, a uid change keeps the
    // capabilities the namespace gave: they go here.
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &header, data) != 0) return -1;
    return prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L);
}

/// Sets the parent-death signal again (a change of credentials clears it) and says whether the
/// relay, which holds the other end of `alive`, is gone already.
static int relay_gone(int alive) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
    struct pollfd relay = {alive, POLLIN, 0};
    return poll(&relay, 1, 0) != 0;
}

/// The relay's part once the command exists (a byte on `started`; a closed pipe: it never will):
/// a stop that came to the process group before (while the namespace was being made) reached no
/// command, and is pending here, where every signal is blocked. It is passed on, once.
static void pass_early_stops(int started) {
    char byte;
    ssize_t count = read_byte(started, &byte);
    close(started);
    if (count != 1) return;
    sigset_t pending;
    if (sigpending(&pending) != 0) return;
    for (size_t index = 0; index < sizeof stop_signals / sizeof stop_signals[0]; index++)
        if (sigismember(&pending, stop_signals[index])) kill(-getpgrp(), stop_signals[index]);
}

/// The relay's part in root's namespace: once the first process has made its user namespace (a
/// byte on `ask`), writes its maps through `proc` (a descriptor of /proc taken before the new
/// root hid it) and answers on `answer`; a closed `ask` means the first process failed.
static void map_first(pid_t first, int proc, int ask, int answer, const char *uid_map, const char *gid_map) {
    char byte = 0;
    if (read_byte(ask, &byte) == 1 && write_proc_file(proc, first, "uid_map", uid_map) == 0 &&
        write_proc_file(proc, first, "gid_map", gid_map) == 0) {
        ssize_t ignored = write(answer, &byte, 1);
        (void)ignored;
    }
    close(ask);
    close(answer);
    close(proc);
}

#define FAIL(step) return MULTIPACK_SANDBOX_FAILED | ((step) << 8) | (errno & 0xff)

/// Builds the new root at /newroot from the old one at /oldroot, by the plan's steps (three
/// strings each, from plan[3]), and moves into it. Owned binds are idmapped through `idmap`
/// (-1: plain binds).
static int make_root(char *const plan[], int pid_namespace, int idmap) {
    // Nothing done here reaches the host; then a scratch root to stand on while the new one is
    // built, so that the old one (with the host's /tmp uncovered) is at /oldroot.
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) FAIL(0);
    if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) FAIL(0);
    if (mkdir("/tmp/newroot", 0755) != 0 || mkdir("/tmp/oldroot", 0755) != 0) FAIL(0);
    if (syscall(SYS_pivot_root, "/tmp", "/tmp/oldroot") != 0 || chdir("/") != 0) FAIL(0);
    if (mount("tmpfs", "/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) FAIL(0);
    for (int index = 3, step = 1; plan[index] != NULL; index += 3, step++) {
        char kind = plan[index][0];
        int owned = plan[index][1] == '+' && idmap >= 0;
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
            if (owned) {
                if (bind_idmapped(source, target, kind == 'b' || kind == 'B', idmap) != 0) FAIL(step);
                break;
            }
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
    return 0;
}

/// Makes the calling (forked, single-threaded) process's own user, mount and PID namespace and
/// root, as bubblewrap would. `plan`: the identity, the uid map, the gid map, then the steps of
/// make_root, NULL-ended. Kinds: b/r a directory bound writable/read-only, B/R a file (a `+`
/// after the kind: the caller's own, idmapped for root), t a tmpfs, s a symlink (source is its
/// text), o a read-only remount, d a directory, P a devpts (skipped where refused), p the
/// namespace's own procfs (the source bound instead where there is no PID namespace).
/// With a PID namespace (and always for root), three processes: the caller stays outside as the
/// relay (relay_exit), its child is the namespace's first process (run_init), and the grandchild
/// returns to exec the command. Where PID namespaces are refused, the caller (root: the first
/// process) goes on alone. `parent` is multipack. Only async-signal-safe calls (_Fork, not fork).
/// Returns 0, or MULTIPACK_SANDBOX_FAILED | step << 8 | errno (step 0: the namespace itself).
static int enter_sandbox(char *const plan[], pid_t parent, const struct identity *id) {
    int root = id->mode == 'r';
    // Root makes the mounts as itself, where an unprivileged caller needs its user namespace first.
    int user = root ? 0 : CLONE_NEWUSER;
    int pid_namespace = unshare(user | CLONE_NEWNS | CLONE_NEWPID) == 0;
    if (!pid_namespace && unshare(user | CLONE_NEWNS) != 0) FAIL(0);
    if (!root) {
        if (write_file("/proc/self/setgroups", "deny") != 0 && errno != ENOENT) FAIL(0);
        if (write_file("/proc/self/uid_map", plan[1]) != 0) FAIL(0);
        if (write_file("/proc/self/gid_map", plan[2]) != 0) FAIL(0);
    }
    int alive = -1, ask = -1, answer = -1, started = -1;
    if (pid_namespace || root) {
        // The new credentials cleared the parent-death signal: set again, then checked, since
        // multipack may have died in between. The relay dies with multipack, the first process
        // with the relay; the relay holds `alive` open, and a hang-up there tells the first
        // process it came too late for its own signal (a parent's pid means nothing inside).
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
        if (getppid() != parent) _exit(127);
        int alive_fds[2], ask_fds[2] = {-1, -1}, answer_fds[2] = {-1, -1}, started_fds[2] = {-1, -1}, proc = -1;
        if (pipe2(alive_fds, O_CLOEXEC) != 0) FAIL(0);
        if (pipe2(started_fds, O_CLOEXEC) != 0) FAIL(0);
        if (root && (pipe2(ask_fds, O_CLOEXEC) != 0 || pipe2(answer_fds, O_CLOEXEC) != 0 ||
                     (proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0))
            FAIL(0);
        pid_t first = _Fork();
        if (first < 0) FAIL(0);
        if (first > 0) {
            int keep[] = {alive_fds[1], ask_fds[0], answer_fds[1], proc, started_fds[0]};
            close_all_except(keep, 5);
            if (root) map_first(first, proc, ask_fds[0], answer_fds[1], plan[1], plan[2]);
            pass_early_stops(started_fds[0]);
            relay_exit(first);
        }
        close(alive_fds[1]);
        close(started_fds[0]);
        started = started_fds[1];
        if (root) {
            close(ask_fds[0]);
            close(answer_fds[1]);
            close(proc);
        }
        alive = alive_fds[0], ask = ask_fds[1], answer = answer_fds[0];
        if (relay_gone(alive)) _exit(127);
    }
    int made = make_root(plan, pid_namespace, root ? id->idmap : -1);
    if (made != 0) return made;
    if (root) {
        // The root is made: now the user namespace, where the build's uid is 1000.
        if (unshare(CLONE_NEWUSER) != 0) FAIL(0);
        char byte = 1;
        if (write(ask, &byte, 1) != 1) FAIL(0);
        if (read_byte(answer, &byte) != 1) {
            errno = EPERM;
            FAIL(0);
        }
        close(ask);
        close(answer);
        if (drop_to(id) != 0) FAIL(0);
        if (relay_gone(alive)) _exit(127);
    }
    if (alive >= 0) close(alive);
    char byte = 1;
    if (pid_namespace) {
        pid_t command = _Fork();
        if (command < 0) FAIL(0);
        if (command > 0) {
            ssize_t ignored = write(started, &byte, 1);
            (void)ignored;
            close_all_but(-1);
            run_init(command);
        }
    } else if (started >= 0) {
        // This process execs the command: what came to the relay is passed on to it.
        ssize_t ignored = write(started, &byte, 1);
        (void)ignored;
    }
    if (started >= 0) close(started);
    return 0;
}

#undef FAIL

int multipack_idmap_namespace(uid_t from_uid, uid_t to_uid, gid_t from_gid, gid_t to_gid) {
    char uid_map[64], gid_map[64];
    snprintf(uid_map, sizeof uid_map, "%u %u 1\n", (unsigned int)from_uid, (unsigned int)to_uid);
    snprintf(gid_map, sizeof gid_map, "%u %u 1\n", (unsigned int)from_gid, (unsigned int)to_gid);
    int proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0) return -1;
    int hold[2];
    if (pipe2(hold, O_CLOEXEC) != 0) {
        close(proc);
        return -1;
    }
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    // A child born in a new user namespace (clone's flags, as fork with one more), which only
    // holds it until its maps are written and it is opened.
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        char byte;
        close(hold[1]);
        read_byte(hold[0], &byte);
        _exit(0);
    }
    int code = pid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(hold[0]);
    int userns = -1;
    if (pid > 0) {
        if (write_proc_file(proc, pid, "uid_map", uid_map) != 0 || write_proc_file(proc, pid, "gid_map", gid_map) != 0)
            code = errno;
        char path[32];
        snprintf(path, sizeof path, "%d/ns/user", (int)pid);
        if (code == 0 && (userns = openat(proc, path, O_RDONLY | O_CLOEXEC)) < 0) code = errno;
    }
    close(hold[1]);
    close(proc);
    if (pid > 0) reap(pid);
    errno = code;
    return code == 0 ? userns : -1;
}

int multipack_idmap_check(const char *path, int userns) {
    int tree = (int)syscall(SYSCALL_OPEN_TREE, AT_FDCWD, path, OPEN_TREE_CLONE_FLAG | O_CLOEXEC);
    if (tree < 0) return errno;
    struct mount_attributes attributes = {ATTR_IDMAP, 0, 0, (unsigned long long)userns};
    int code = syscall(SYSCALL_MOUNT_SETATTR, tree, "", AT_EMPTY_PATH, &attributes, sizeof attributes) == 0 ? 0 : errno;
    close(tree);
    return code;
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
    struct identity identity;
    if (parse_identity(sandbox[0], &identity) != 0) return EINVAL;
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
        int code = identity.mode != 'd'    ? enter_sandbox(sandbox, parent, &identity)
                   : drop_to(&identity) != 0 ? MULTIPACK_SANDBOX_FAILED | (errno & 0xff)
                                             : 0;
        // Entering a user namespace or taking other ids changes credentials: the parent-death
        // signal is set again (and multipack may have died meanwhile). Nothing the command execs
        // may gain a privilege.
        if (code == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L);
            if (identity.mode == 'd' && getppid() != parent) _exit(127);
        }
        if (code == 0 && prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) != 0) code = errno;
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
        reap(pid);
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
        reap(pid);
        return request.error;
    }
    *pid_out = pid;
    return 0;
}
