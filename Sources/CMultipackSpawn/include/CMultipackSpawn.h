#ifndef CMULTIPACK_SPAWN_H
#define CMULTIPACK_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

#include "loader.h"

// Processes, namespaces and stop signals: the code that must run where Swift cannot (between
// fork and exec, in a signal handler). Swift reaches it through Process/Spawn.swift and
// Process/StopToken.swift only.

// MARK: Starting children

/// A failure of the namespace's set-up, as the child reports it: this bit, the step's index
/// shifted by 8, and the errno.
#define MULTIPACK_SANDBOX_FAILED 0x40000000

/// A child's descriptors and session.
struct multipack_spawn_io {
    /// stdin, stdout, stderr: a descriptor to use, -1 to inherit, -2 for /dev/null.
    int in, out, err;
    /// A terminal (a pty's slave) that becomes the child's controlling terminal and its stdin,
    /// stdout and stderr, in a session of its own (setsid, TIOCSCTTY); -1 for none.
    int terminal;
    /// 1: a session of its own without a terminal (setsid), so that the caller's terminal is not
    /// the child's (`/dev/tty` opens nothing); 0: a process group of its own in the caller's session.
    int session;
    /// A descriptor the child gets as its descriptor 3 (a socket to multipack), -1 for none.
    int pass;
};

/// Starts a child as posix_spawn does (clone with CLONE_VM|CLONE_VFORK: no copy of multipack's
/// memory), with what posix_spawn cannot do: the child gets SIGKILL if multipack dies
/// (PR_SET_PDEATHSIG). The child has its own process group (or session, see `io`), the
/// descriptors `io` says, default signal dispositions and an empty signal mask, or the stop
/// signals blocked with `block_stops` (for a wrapper that would die of one and take the multipack
/// it runs with it). `sandbox`: NULL, or a plan (in a forked child, before `cwd`): the ids the
/// child takes, and the private user, mount and PID namespace it enters, if any; see spawn.c.
/// With a plan, the command runs with no_new_privs. The child is registered for stop signals
/// (multipack_children_add) before this returns.
/// Returns 0 or an errno (MULTIPACK_SANDBOX_FAILED | step << 8 | errno for the namespace).
int multipack_spawn(pid_t *pid_out, const char *file, char *const argv[], char *const envp[], const char *cwd,
                    struct multipack_spawn_io io, char *const sandbox[], int block_stops);

/// A pipe whose ends are closed on exec, made atomically. 0 or -1 with errno.
int multipack_pipe(int fds[2]);

/// mkostemp with O_CLOEXEC: a temporary file no child inherits.
int multipack_make_temporary_file(char *path_template);

/// 1 when `fd` is an anonymous pipe (pipefs), 0 when it is anything else (a named FIFO), -1 on error.
int multipack_is_anonymous_pipe(int fd);

/// A descriptor that polls readable when the process exits (Linux 5.3); -1 where unsupported.
int multipack_pidfd_open(pid_t pid);

/// Makes multipack the reaper of every orphan its children leave (SPEC §11), so that a daemon a
/// compile starts with setsid or nohup can be found and stopped when the stage ends.
int multipack_become_subreaper(void);

/// Sets a file's POSIX access ACL (`system.posix_acl_access`, in the kernel's xattr format), or
/// removes it. 0 or -1 with errno (EOPNOTSUPP: the file system has none).
int multipack_set_access_acl(const char *path, const void *value, size_t size);
int multipack_remove_access_acl(const char *path);

/// Starts the watchdog, once: a small process of its own session (not multipack's child) that
/// waits for multipack to end, however it ends (SIGKILL included), and then kills every process
/// group still registered, so that what a child started in its group dies with multipack
/// (SPEC §11). The registry moves to memory the two share. Returns 0 or an errno.
int multipack_watchdog_start(void);

/// Ends the watchdog (at a normal exit) and waits a moment for it to be gone.
void multipack_watchdog_stop(void);

/// A user namespace that maps `from_uid`/`from_gid` (the caller's) onto `to_uid`/`to_gid` (the
/// build's), for idmapped mounts: an O_CLOEXEC descriptor, or -1 with errno. Needs privilege.
int multipack_idmap_namespace(uid_t from_uid, uid_t to_uid, gid_t from_gid, gid_t to_gid);

/// 0 when the mount `path` is on can be idmapped through `userns`; else an errno (EINVAL: its file
/// system cannot, ENOSYS: the kernel is older than 5.12).
int multipack_idmap_check(const char *path, int userns);

/// renameat2 (Linux 3.15): EXCHANGE swaps two names at once, NOREPLACE fails rather than replace.
/// -1 with EINVAL where the file system has neither.
#define MULTIPACK_RENAME_NOREPLACE 1
#define MULTIPACK_RENAME_EXCHANGE 2
int multipack_rename(const char *from, const char *to, unsigned int flags);

// MARK: Terminals

/// A new pty from this mount namespace's /dev/ptmx (a namespace's own devpts instance, or the
/// host's): its master and its slave, both close-on-exec, the slave unlocked and opened without
/// becoming anyone's controlling terminal. Returns 0 or an errno.
int multipack_open_pty(int *master, int *slave);

/// A terminal's window size (TIOCGWINSZ). Returns 0 or an errno.
int multipack_window_size(int fd, unsigned short *rows, unsigned short *columns);

/// Sets a terminal's window size (TIOCSWINSZ); the kernel tells its foreground process group
/// (SIGWINCH). Returns 0 or an errno.
int multipack_set_window_size(int fd, unsigned short rows, unsigned short columns);

/// Sends a descriptor over a Unix socket (SCM_RIGHTS). Returns 0 or an errno.
int multipack_send_descriptor(int socket, int fd);

/// Receives one descriptor sent with multipack_send_descriptor (made close-on-exec). Returns it,
/// or -1 with errno (0 when the other end closed without sending one).
int multipack_receive_descriptor(int socket);

/// A connected pair of Unix stream sockets, close-on-exec. 0 or -1 with errno.
int multipack_socket_pair(int fds[2]);

/// Installs a SIGWINCH handler (SA_RESTART) that writes a byte to a self-pipe, and returns the
/// pipe's reading end (non-blocking): it polls readable after the caller's window changed. -1 on
/// failure. Once per process.
int multipack_winch_install(void);

// MARK: Stop signals

/// Installs the handler for SIGTERM, SIGINT, SIGHUP and SIGQUIT, makes the self-pipe and unblocks
/// the signals (a parent may have started multipack with them blocked). The handler only records
/// the first signal in an atomic, passes that first one on to the registered children's process
/// groups, writes one byte to the self-pipe and restores errno: no allocation, no lock. Returns 0
/// or an errno.
int multipack_stop_install(void);

/// The first stop signal received, or 0.
int multipack_stop_signal(void);

/// What the children get for it: the signal itself, except SIGQUIT, which asks for a core dump
/// nobody wants from a build: SIGTERM instead.
int multipack_stop_forwarded(void);

/// The self-pipe's reading end: it polls readable once a stop signal came (it is never read, so
/// every poller sees it). -1 before multipack_stop_install.
int multipack_stop_descriptor(void);

/// How many children can be registered at once.
#define MULTIPACK_CHILDREN_CAPACITY 64

/// Registers a child's process group for the handler; a stop that came before is passed on now.
/// Returns 0, or -1 when every slot is taken (the child then only gets the supervisor's signals).
int multipack_children_add(pid_t group);

/// Forgets a child's process group.
void multipack_children_remove(pid_t group);

/// Whether `pid` is a registered child.
int multipack_children_contains(pid_t pid);

#endif
