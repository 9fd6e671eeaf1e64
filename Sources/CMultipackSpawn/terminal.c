// ptys, window sizes and descriptor passing: `multipack run`'s one-off commands on a terminal.
// pipe2 and the MSG_CMSG_CLOEXEC flag are GNU extensions.
#define _GNU_SOURCE
#include "CMultipackSpawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

int multipack_open_pty(int *master, int *slave) {
    int pty = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (pty < 0) return errno;
    int unlock = 0;
    if (ioctl(pty, TIOCSPTLCK, &unlock) != 0) goto fail;
    // The slave through its master (Linux 4.13): no path to look up, whatever /dev/pts holds.
    int peer = ioctl(pty, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (peer < 0) {
        unsigned int number;
        char path[64];
        if (ioctl(pty, TIOCGPTN, &number) != 0) goto fail;
        snprintf(path, sizeof path, "/dev/pts/%u", number);
        peer = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (peer < 0) goto fail;
    }
    *master = pty;
    *slave = peer;
    return 0;
fail: {
    int saved = errno;
    close(pty);
    return saved;
}
}

int multipack_window_size(int fd, unsigned short *rows, unsigned short *columns) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) return errno;
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}

int multipack_set_window_size(int fd, unsigned short rows, unsigned short columns) {
    struct winsize size = {rows, columns, 0, 0};
    return ioctl(fd, TIOCSWINSZ, &size) == 0 ? 0 : errno;
}

int multipack_send_descriptor(int socket, int fd) {
    char byte = 0;
    struct iovec data = {&byte, 1};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = {0};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(header), &fd, sizeof(int));
    ssize_t sent;
    do {
        sent = sendmsg(socket, &message, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent == 1 ? 0 : errno;
}

int multipack_receive_descriptor(int socket) {
    char byte;
    struct iovec data = {&byte, 1};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr message = {0};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    ssize_t received;
    do {
        received = recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
    } while (received < 0 && errno == EINTR);
    if (received <= 0) {
        if (received == 0) errno = 0;
        return -1;
    }
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL; header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS &&
            header->cmsg_len == CMSG_LEN(sizeof(int))) {
            int fd;
            memcpy(&fd, CMSG_DATA(header), sizeof(int));
            return fd;
        }
    }
    errno = 0;
    return -1;
}

int multipack_socket_pair(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

static atomic_int winch_pipe_write = -1;

static void on_winch(int signal) {
    (void)signal;
    int saved = errno;
    int pipe_end = atomic_load(&winch_pipe_write);
    if (pipe_end >= 0) {
        char byte = 1;
        ssize_t ignored = write(pipe_end, &byte, 1);  // a full pipe is readable already
        (void)ignored;
    }
    errno = saved;
}

int multipack_winch_install(void) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    atomic_store(&winch_pipe_write, fds[1]);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_winch;
    sigemptyset(&action.sa_mask);
    // A window change must not interrupt what multipack is waiting for.
    action.sa_flags = SA_RESTART;
    if (sigaction(SIGWINCH, &action, NULL) != 0) return -1;
    // A parent may have started multipack with it blocked; threads started after this inherit it.
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, SIGWINCH);
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    return fds[0];
}

