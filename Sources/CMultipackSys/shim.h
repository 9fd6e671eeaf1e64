// What Swift's Glibc module leaves out because it is built without _GNU_SOURCE.
#include <spawn.h>
#include <signal.h>
#include <sys/file.h>
#include <string.h>
#include <pthread.h>

// glibc >= 2.29 (every Heroku stack): start a child in another working directory without a shell.
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *actions, const char *path);

// Linux (every Heroku stack): a pipe whose ends are closed on exec, atomically.
extern int pipe2(int pipefd[2], int flags);

#include <errno.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern int execvpe(const char *file, char *const argv[], char *const envp[]);

/// Makes multipack the reaper of every orphan its children leave (SPEC §11), so that a daemon a
/// compile starts with setsid or nohup can be found and stopped when the stage ends.
static inline int multipack_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L); }

/// A descriptor that polls readable when the process exits (Linux 5.3); -1 where unsupported.
static inline int multipack_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

/// fork and exec, with what posix_spawn cannot do: the child gets SIGKILL if multipack dies
/// (PR_SET_PDEATHSIG). The child has its own process group, stdin /dev/null, default signal
/// dispositions and an empty mask. `out`/`err`: a descriptor to use, -1 to inherit, -2 for
/// /dev/null. Only async-signal-safe calls run between fork and exec. Returns 0 or an errno.
static inline int multipack_spawn(pid_t *pid_out, const char *file, char *const argv[],
                                  char *const envp[], const char *cwd, int out, int err) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(report[0]);
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
        int code = 0;
        if (cwd != NULL && chdir(cwd) != 0) {
            code = errno;
        } else {
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
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
