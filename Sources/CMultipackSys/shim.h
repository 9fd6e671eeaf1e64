// What Swift's Glibc module leaves out because it is built without _GNU_SOURCE.
#include <spawn.h>
#include <signal.h>
#include <sys/file.h>

// glibc >= 2.29 (every Heroku stack): start a child in another working directory without a shell.
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *actions, const char *path);

// Linux (every Heroku stack): a pipe whose ends are closed on exec, atomically.
extern int pipe2(int pipefd[2], int flags);
