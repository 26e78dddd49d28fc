/* The readiness waits and the read and write families' shared bodies,
 * and the signal rules they follow. */
#ifndef FLARE_IO_H
#define FLARE_IO_H

#include "clock.h"
#include "conn/conn.h"

#include <limits.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

/* A blocking wait for a reply on a managed socket sleeps in poll(2) at most
 * this long at a time (never through a socket option the program could
 * see): between slices the library looks at the table and the connection,
 * so a program waiting on a silently dead host moves on. */
#define FLARE_SLICE_MS 50

/* Readiness hooks with nothing to do but the real call: no managed
 * connection in the process. With one, every wait goes through the sliced
 * loop, whose filters look at an event only for its error and hang-up
 * bits (and, while connects are pending, its writability). */
static inline int wait_is_plain(void)
{
	return !__atomic_load_n(&flare_n_managed, __ATOMIC_ACQUIRE);
}

/* ---- wait.c: the readiness hooks' shared loop ---- */
/* A readiness wait restarted after hidden events keeps the program's
 * deadline: wait_deadline(timeout) once, then wait_left(timeout, deadline)
 * gives the milliseconds left (-1 stays forever, 0 means it is over). */
int64_t wait_deadline(int timeout_ms);
int wait_left(int timeout_ms, int64_t deadline);
/* The longest a readiness wait may sleep in the kernel this time, and what
 * to do when it slept and nothing was ready. */
int wait_slice(int timeout_ms);
void wait_slept(void);
/* wait() sleeps at most ms (-1: no limit) in the kernel, filter() hides
 * the events of connects the library moved on from and returns how many
 * are left; it goes on until one is left or the program's timeout is over,
 * and leaves the milliseconds left in left_ms. */
struct sliced_wait {
	int (*wait)(struct sliced_wait *w, int ms);
	int (*filter)(struct sliced_wait *w, int n);
	int left_ms;
	/* the program's own timeout, when it had one finer than milliseconds:
	 * a wait of exact_ms (the whole of it) sleeps exactly that */
	const struct timespec *exact;
	int exact_ms;
};
/* A program's timeout in milliseconds, rounded up (a sub-millisecond
 * sleep is a sleep, not a poll), at most INT_MAX; -1 for none, -2 for a
 * value the kernel rejects (the hook passes the call through). */
int wait_ms_of_ts(const struct timespec *ts);
/* What the wait of ms sleeps: the program's exact timeout when ms is all of it. */
struct timespec wait_ts(const struct sliced_wait *w, int ms);
/* Inline in each hook, so that its wait and filter are direct calls. */
extern unsigned flare_waits;
void watch_all(void);
static inline __attribute__((always_inline)) int wait_sliced(struct sliced_wait *w, int timeout)
{
	/* the program's deadline, read off the clock only when a second wait
	 * needs it: a wait that returns events (nearly all) costs no clock */
	int64_t end = 0;
	int have_end = 0;
	for (;;) {
		int slice = wait_slice(timeout);
		int n = w->wait(w, slice);
		if (n < 0)
			return n;
		/* a busy loop looks once in 64 waits (watch_all reads the clock),
		 * an idle one after every slice it slept; the count is only a
		 * throttle: no locked instruction per wait, a lost update is fine */
		if (__atomic_load_n(&flare_n_outstanding, __ATOMIC_ACQUIRE)) {
			unsigned k = __atomic_load_n(&flare_waits, __ATOMIC_RELAXED) + 1;
			__atomic_store_n(&flare_waits, k, __ATOMIC_RELAXED);
			if (n == 0 || (k & 63) == 0)
				watch_all();
		}
		if (n == 0)
			wait_slept();
		int left = n ? w->filter(w, n) : 0;
		if (left > 0 || timeout == 0 || (n == 0 && slice == timeout)) {
			w->left_ms = left > 0 ? timeout : 0;
			return left;
		}
		if (timeout > 0) {
			if (!have_end) {
				/* a wait that came back empty slept its slice; one whose
				 * events were all hidden is taken as having slept none */
				end =
				    (int64_t)flare_monotonic_ms() - (n == 0 ? slice : 0) + timeout;
				have_end = 1;
			}
			if ((timeout = wait_left(timeout, end)) == 0) {
				w->left_ms = 0;
				return 0;
			}
		}
	}
}

/* ---- epreg.c: epoll registrations that follow a swap, read from the kernel ---- */
extern unsigned long flare_epoll_ctls; /* [atom] the program's epoll_ctl calls */
/* Every registration of fc's descriptors in the process's epoll
 * instances; -1 when they cannot be known (no /proc, too many). [lock] */
int ep_read(struct fconn *fc, struct ep_regs *out);
/* Takes them off their instances (before a dup3), puts them back (after). */
void ep_detach(const struct ep_regs *regs);
void ep_attach(const struct ep_regs *regs);
/* fd behind (epfd, data) among pending connections (connecting, replaying), or -1 */
int ep_find_pending(int epfd, uint64_t data);
/* the same among every live connection (an error event: rare) */
int ep_find(int epfd, uint64_t data);

/* ---- io.c: shared bodies of the read and write families ---- */
/* The descriptor's O_NONBLOCK, read once between two of the program's own
 * flag changes (fcntl F_SETFL, ioctl FIONBIO: they call fd_flags_changed) */
int fd_nonblocking(struct fconn *fc, int fd);
void fd_flags_changed(struct fconn *fc);
ssize_t flare_recvmsg_managed(struct fconn *fc, int fd, struct msghdr *msg, int flags);
ssize_t flare_recv_managed(struct fconn *fc, int fd, void *buf, size_t len, int flags);
ssize_t flare_send_managed(struct fconn *fc, int fd, const void *buf, size_t len, int flags);
ssize_t flare_sendto_managed(struct fconn *fc, int fd, const void *buf, size_t len, int flags,
			     const struct sockaddr *to, socklen_t tolen);
ssize_t flare_sendmsg_managed(struct fconn *fc, int fd, const struct msghdr *msg, int flags);
/* Arguments the kernel rejects (a negative or too large count, a null
 * array): the program's call goes to the kernel as it is, for its answer
 * (EINVAL, EMSGSIZE, EFAULT), never through code that would read them. */
static inline int iov_args_bad(const struct iovec *iov, long n)
{
	return n < 0 || n > IOV_MAX || (n && !iov);
}
ssize_t flare_readv_managed(struct fconn *fc, int fd, const struct iovec *iov, int iovcnt);

/* ---- wake.c: the agent's kernel wake ---- */
/* The entry a blocking read on fc's socket registered (clear it when the
 * read returns), or NULL: the read waits in slices as before. */
uint64_t *wake_register(struct fconn *fc);
void wake_unregister(uint64_t *entry);

/* ---- sig.c ---- */
/* Would the kernel have restarted a call interrupted now (every installed
 * handler has SA_RESTART)? */
int sig_would_restart(void);
/* Raises SIGPIPE where the program would have received one. */
void sig_pipe_as_program(int flags);

#endif
