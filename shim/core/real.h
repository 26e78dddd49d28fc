/* The libc functions the library calls under its hooks, resolved once
 * with dlsym(RTLD_NEXT) in the constructor (init.c). One list: the struct
 * of pointers, their resolution and the check that the essential ones were
 * found are all generated from FLARE_REAL_FNS.
 *
 * X(name, return type, parameters, how):
 *   HOOKED    we define this symbol too: a lookup that finds our own hook
 *             (libflare.so not first in the search order) counts as absent
 *   CALLED    we only call it: whatever dlsym finds is libc's
 * Entries marked REQUIRED must resolve, or the library passes everything
 * through (it cannot manage a socket without them). */
#ifndef FLARE_REAL_H
#define FLARE_REAL_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

struct epoll_event;
struct pollfd;
struct mmsghdr;
typedef struct _IO_FILE FILE;

#define FLARE_REAL_FNS(X)                                                                          \
	X(socket, int, (int, int, int), HOOKED, REQUIRED)                                          \
	X(connect, int, (int, const struct sockaddr *, socklen_t), HOOKED, REQUIRED)               \
	X(close, int, (int), HOOKED, REQUIRED)                                                     \
	X(close_range, int, (unsigned, unsigned, int), HOOKED, OPTIONAL)                           \
	X(shutdown, int, (int, int), HOOKED, OPTIONAL)                                             \
	X(poll, int, (struct pollfd *, unsigned long, int), HOOKED, OPTIONAL)                      \
	X(ppoll, int, (struct pollfd *, unsigned long, const struct timespec *, const void *),     \
	  HOOKED, OPTIONAL)                                                                        \
	X(select, int, (int, void *, void *, void *, struct timeval *), HOOKED, OPTIONAL)          \
	X(pselect, int, (int, void *, void *, void *, const struct timespec *, const void *),      \
	  HOOKED, OPTIONAL)                                                                        \
	X(epoll_ctl, int, (int, int, int, struct epoll_event *), HOOKED, OPTIONAL)                 \
	X(epoll_wait, int, (int, struct epoll_event *, int, int), HOOKED, OPTIONAL)                \
	X(epoll_pwait, int, (int, struct epoll_event *, int, int, const void *), HOOKED, OPTIONAL) \
	X(send, ssize_t, (int, const void *, size_t, int), HOOKED, REQUIRED)                       \
	X(sendto, ssize_t, (int, const void *, size_t, int, const struct sockaddr *, socklen_t),   \
	  HOOKED, OPTIONAL)                                                                        \
	X(sendmsg, ssize_t, (int, const struct msghdr *, int), HOOKED, REQUIRED)                   \
	X(write, ssize_t, (int, const void *, size_t), HOOKED, REQUIRED)                           \
	X(writev, ssize_t, (int, const struct iovec *, int), HOOKED, OPTIONAL)                     \
	X(recv, ssize_t, (int, void *, size_t, int), HOOKED, REQUIRED)                             \
	X(recvfrom, ssize_t, (int, void *, size_t, int, struct sockaddr *, socklen_t *), HOOKED,   \
	  OPTIONAL)                                                                                \
	X(recvmsg, ssize_t, (int, struct msghdr *, int), HOOKED, REQUIRED)                         \
	X(read, ssize_t, (int, void *, size_t), HOOKED, REQUIRED)                                  \
	X(readv, ssize_t, (int, const struct iovec *, int), HOOKED, OPTIONAL)                      \
	X(setsockopt, int, (int, int, int, const void *, socklen_t), HOOKED, REQUIRED)             \
	X(getsockopt, int, (int, int, int, void *, socklen_t *), HOOKED, REQUIRED)                 \
	X(bind, int, (int, const struct sockaddr *, socklen_t), HOOKED, OPTIONAL)                  \
	X(listen, int, (int, int), HOOKED, OPTIONAL)                                               \
	X(accept, int, (int, struct sockaddr *, socklen_t *), HOOKED, OPTIONAL)                    \
	X(accept4, int, (int, struct sockaddr *, socklen_t *, int), HOOKED, OPTIONAL)              \
	X(dup, int, (int), HOOKED, OPTIONAL)                                                       \
	X(dup2, int, (int, int), HOOKED, OPTIONAL)                                                 \
	X(dup3, int, (int, int, int), HOOKED, REQUIRED)                                            \
	X(fcntl, int, (int, int, ...), HOOKED, REQUIRED)                                           \
	X(fcntl64, int, (int, int, ...), HOOKED, OPTIONAL)                                         \
	X(getpeername, int, (int, struct sockaddr *, socklen_t *), HOOKED, OPTIONAL)               \
	X(ioctl, int, (int, unsigned long, ...), HOOKED, OPTIONAL)                                 \
	X(epoll_pwait2, int,                                                                       \
	  (int, struct epoll_event *, int, const struct timespec *, const void *), HOOKED,         \
	  OPTIONAL)                                                                                \
	X(sendfile, ssize_t, (int, int, off_t *, size_t), HOOKED, OPTIONAL)                        \
	X(sendfile64, ssize_t, (int, int, off_t *, size_t), HOOKED, OPTIONAL)                      \
	X(splice, ssize_t, (int, off_t *, int, off_t *, size_t, unsigned), HOOKED, OPTIONAL)       \
	X(copy_file_range, ssize_t, (int, off_t *, int, off_t *, size_t, unsigned), HOOKED,        \
	  OPTIONAL)                                                                                \
	X(sendmmsg, int, (int, struct mmsghdr *, unsigned, int), HOOKED, OPTIONAL)                 \
	X(recvmmsg, int, (int, struct mmsghdr *, unsigned, int, struct timespec *), HOOKED,        \
	  OPTIONAL)                                                                                \
	X(fdopen, FILE *, (int, const char *), HOOKED, OPTIONAL)                                   \
	X(socketpair, int, (int, int, int, int *), HOOKED, OPTIONAL)                               \
	X(pipe, int, (int *), HOOKED, OPTIONAL)                                                    \
	X(pipe2, int, (int *, int), HOOKED, OPTIONAL)                                              \
	X(fork, pid_t, (void), CALLED, OPTIONAL)

#define FLARE_REAL_FIELD(name, ret, params, how, need) ret(*name) params;
struct real_fns {
	FLARE_REAL_FNS(FLARE_REAL_FIELD)
};
#undef FLARE_REAL_FIELD

extern struct real_fns real;
extern int flare_ready;    /* real symbols resolved */
extern int flare_disabled; /* FLARE_DISABLE=1, or libc unusable: pure pass-through */
extern pid_t flare_pid;    /* our pid, updated in fork children */

void flare_init(void);
/* 1 inside a vfork/CLONE_VM child sharing our memory: touch no state */
int flare_in_foreign_child(void);

#endif
