/* The read and write families on managed descriptors. A blocking read
 * that waits for a reply waits in user space, in poll(2) slices, never
 * through a socket option: between slices the library learns from the
 * table and the connection that its replica died, or that its request's
 * reply is overdue (watch.c). The read itself is the program's own call
 * with the program's own flags, made once the socket is readable, so every
 * flag (MSG_WAITALL, MSG_PEEK, MSG_TRUNC) and the program's SO_RCVTIMEO act
 * exactly as the kernel makes them; a read with nothing outstanding (an
 * idle connection, a server that speaks first) is the plain call. */
#include "clock.h"
#include "flare.h"
#include "real.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "dial/dial.h"
#include "heal/heal.h"
#include "heal/verdict.h"
#include "io/io.h"
#include "route/route.h"
#include "tls/tls_call.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>

enum rop { R_RECV, R_RECVMSG, R_READV };

static ssize_t do_read(enum rop op, int fd, void *buf, size_t len, struct msghdr *msg, int flags)
{
	switch (op) {
	case R_RECV: return real.recv(fd, buf, len, flags);
	case R_RECVMSG: return real.recvmsg(fd, msg, flags);
	default: return real.readv(fd, msg->msg_iov, (int)msg->msg_iovlen);
	}
}

/* The read without waiting (readv has no flags: its recvmsg reads alike) */
static ssize_t read_now(enum rop op, int fd, void *buf, size_t len, struct msghdr *msg, int flags)
{
	return do_read(op == R_READV ? R_RECVMSG : op, fd, buf, len, msg, flags | MSG_DONTWAIT);
}

static int nonblocking(int fd, int flags)
{
	return (flags & MSG_DONTWAIT) || (real.fcntl(fd, F_GETFL) & O_NONBLOCK);
}

/* O_NONBLOCK as last read: 1 blocking, 2 not, 0 not known (no system call) */
static int nb_cached(const struct fconn *fc)
{
	return (int)(__atomic_load_n(&fc->link.nb_known, __ATOMIC_ACQUIRE) & 3);
}

int fd_nonblocking(struct fconn *fc, int fd)
{
	uint32_t k = __atomic_load_n(&fc->link.nb_known, __ATOMIC_ACQUIRE);
	if (k & 3)
		return (k & 3) == 2;
	int nb = (real.fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
	/* kept only if no flag change came in between (its epoch moved) */
	__atomic_compare_exchange_n(&fc->link.nb_known, &k, k | (nb ? 2u : 1u), 0, __ATOMIC_ACQ_REL,
				    __ATOMIC_RELAXED);
	return nb;
}

void fd_flags_changed(struct fconn *fc)
{
	uint32_t k = __atomic_load_n(&fc->link.nb_known, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&fc->link.nb_known, &k, ((k >> 2) + 1) << 2, 0,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
		;
}

static size_t iov_total(const struct iovec *iov, size_t n)
{
	size_t t = 0;
	for (size_t i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

/* When the program's SO_RCVTIMEO would end its read (0: never). */
static uint64_t rcv_deadline(const struct fconn *fc)
{
	const struct timeval *pt = &fc->link.prog_rcvtimeo;
	if (!pt->tv_sec && !pt->tv_usec)
		return 0;
	return flare_monotonic_ns() + (uint64_t)pt->tv_sec * 1000000000ull +
	       (uint64_t)pt->tv_usec * 1000ull;
}

/* One slice of a blocking reader's wait for its reply: 1 when fd is
 * readable (data, EOF or an error: the program's call will not block), 0
 * when the slice ended, -1 with errno set (EINTR, or EAGAIN when the
 * program's own receive timeout passed). After the first slice of a
 * read the descriptor's flags are read again, so that a flag change no
 * hook saw (another process sharing the file) costs at most one slice.
 * Slices are long on purpose: a timer that is due before the next tick
 * would reprogram the CPU's timer at every wait (a few microseconds in a
 * virtual machine, more than the rest of the request path). */
static int await_slice(int fd, uint64_t deadline)
{
	int ms = FLARE_SLICE_MS;
	if (deadline) {
		uint64_t now = flare_monotonic_ns();
		if (now >= deadline) {
			errno = EAGAIN;
			return -1;
		}
		uint64_t left = (deadline - now + 999999) / 1000000;
		if (left < (uint64_t)ms)
			ms = (int)left;
	}
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r = real.poll(&p, 1, ms);
	return r > 0 ? 1 : r;
}

/* A blocking caller on a connection a heal is still moving (a heal begun
 * in its readiness wait): it waits, as a blocking call would, until the
 * new socket is connected and the replay sent (and, for a read, the
 * session's replies taken). 0, or -1 when the heal did not finish in time
 * (errno ETIMEDOUT). */
static int wait_pending(struct fconn *fc, int fd)
{
	int64_t end = wait_deadline((int)fc->svc.connect_timeout_ms * FLARE_MAX_REPLICAS);
	while (fconn_is_pending(fconn_state(fc))) {
		int left = wait_left((int)fc->svc.connect_timeout_ms * FLARE_MAX_REPLICAS, end);
		if (left == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		if (real.poll)
			real.poll(&p, 1, left < 5 ? left : 5);
		nb_progress(fc, fd);
	}
	return 0;
}

/* A read or write on a connection that is not READY: one still
 * connecting or replaying is moved on, and a blocking caller waits for it
 * (the socket's bytes are not the program's yet: a session's replies may
 * be on their way, the replayed request goes first); a non-blocking one
 * gets the kernel's EAGAIN. An error an asynchronous heal owes (no replica
 * left) is the caller's. 0 to go on, -1 with errno set. */
static int not_ready(struct fconn *fc, int fd, int flags)
{
	if (fconn_is_pending(fconn_state(fc)))
		nb_progress(fc, fd);
	if (fconn_is_pending(fconn_state(fc))) {
		if (nonblocking(fd, flags)) { /* the kernel's word: a rare path */
			errno = EAGAIN;
			return -1;
		}
		if (wait_pending(fc, fd) < 0)
			return -1;
	}
	int owed = fconn_take_owed_error(fc);
	if (owed) {
		errno = owed;
		return -1;
	}
	return 0;
}

static ssize_t managed_read(enum rop op, struct fconn *fc, int fd, void *buf, size_t len,
			    struct msghdr *msg, int flags)
{
	/* a read of nothing, of urgent data or of the error queue (where 0 is
	 * no EOF) is the kernel's alone */
	if ((flags & (MSG_OOB | MSG_ERRQUEUE)) ||
	    (op == R_RECV ? len : iov_total(msg->msg_iov, msg->msg_iovlen)) == 0)
		return do_read(op, fd, buf, len, msg, flags);
	tls_call_saw(fc, fd);
	uint64_t deadline = 0;
	int have_deadline = 0, slices = 0;
	for (;;) {
		/* one load on the common path: READY, nothing owed or pending */
		if (fconn_state(fc) != FC_READY && not_ready(fc, fd, flags) < 0)
			return -1;
		uint32_t gen = __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE);
		ssize_t n = -2; /* not read yet */
		/* sliced while a reply is awaited, or while the connection is
		 * young enough to owe its TCP timeouts (its first 20 ms) */
		/* A descriptor known to be non-blocking gets the program's own
		 * call, whatever the cache says: never an EAGAIN the kernel would
		 * not have given. */
		int watched = (exchange_outstanding(fc) ||
			       __atomic_load_n(&fc->link.timeouts_owed, __ATOMIC_RELAXED)) &&
			      real.poll && !(flags & MSG_DONTWAIT) && nb_cached(fc) != 2;
		/* With the agent's kernel wake, the agent ends the socket if the
		 * reply is not coming (wake.c): the program's own call, nothing
		 * around it. Else, where the bytes are usually there already (an
		 * event loop, a program that waits in epoll and then reads its
		 * blocking socket, a reply read in parts), one call with
		 * MSG_DONTWAIT: what the program's own call returns at once,
		 * blocking or not, with no need to know which. Not with
		 * MSG_WAITALL, which must wait for all of it. An EAGAIN is the
		 * program's only when the kernel says now that the descriptor is
		 * non-blocking. */
		uint64_t *woken_by_agent;
		int rest_of_record =
		    watched && !slices && flare_tls_call.got && !(flags & MSG_WAITALL);
		if (rest_of_record) {
			/* the rest of a TLS record whose head this SSL call read: as
			 * a rule it came with it, and the one call takes it without a
			 * wake registration; else the registered read below waits */
			n = read_now(op, fd, buf, len, msg, flags);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				n = -2;
		}
		if (n == -2 && watched && !slices && (woken_by_agent = wake_register(fc)) != NULL) {
			n = do_read(op, fd, buf, len, msg, flags);
			int e = errno;
			wake_unregister(woken_by_agent);
			/* EAGAIN: non-blocking (or a receive timeout). The kernel's
			 * word on which, asked once, spares the later reads of a
			 * non-blocking socket their registration */
			if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK) && !nb_cached(fc))
				fd_nonblocking(fc, fd);
			errno = e;
		} else if (n == -2 && watched && !slices && !rest_of_record &&
			   !__atomic_load_n(&fc->link.rd_waits, __ATOMIC_RELAXED) &&
			   !(flags & MSG_WAITALL)) {
			n = read_now(op, fd, buf, len, msg, flags);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				if (!nb_cached(fc) && fd_nonblocking(fc, fd))
					return -1; /* the program's own EAGAIN */
				__atomic_store_n(&fc->link.rd_waits, 1,
						 __ATOMIC_RELAXED); /* wait first */
				n = -2;
			}
		}
		if (n == -2 && watched && !fd_nonblocking(fc, fd)) {
			if (!have_deadline) {
				deadline = rcv_deadline(fc);
				have_deadline = 1;
			}
			if (!slices) {
				/* once in 64 waits, the next read tries without one */
				uint8_t w = __atomic_load_n(&fc->link.rd_waits, __ATOMIC_RELAXED);
				__atomic_store_n(&fc->link.rd_waits, (uint8_t)((w + 1) & 63),
						 __ATOMIC_RELAXED);
			}
			int r = await_slice(fd, deadline);
			slices++;
			if (r == 0 && slices == 1) {
				/* read the flags again (the kernel's word): non-blocking
				 * now, the program's own call answers */
				fd_flags_changed(fc);
				continue;
			}
			if (r == 0) {
				/* the slice ended: the connection has lived a while */
				timeouts_settle(fc, 0);
				const char *why = NULL;
				if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) == gen &&
				    (why = verdict_watch(fc, fd)) != NULL)
					heal(fc, gen, why, 0);
				continue;
			}
			if (r < 0) {
				/* as the kernel: a receive timeout set, or a handler
				 * without SA_RESTART, ends the call with EINTR */
				if (errno == EINTR && !deadline && sig_would_restart())
					continue;
				return -1;
			}
		}
		if (n == -2)
			n = do_read(op, fd, buf, len, msg, flags);
		if (n > 0) {
			if (!(flags & MSG_PEEK))
				sock_count(&fc->link.sock_rd, n);
			tls_call_got();
			/* a linked session's bytes: its plaintext is the exchange */
			if (fconn_tls_linked(fc))
				return n;
			if (flags & MSG_TRUNC)
				fconn_taint(fd, "MSG_TRUNC discarded reply bytes");
			if (!(flags & MSG_PEEK)) {
				struct iovec one = {buf, (size_t)n};
				if (flags & MSG_TRUNC)
					exchange_read(fc, NULL, 0, (size_t)n);
				else if (op == R_RECV)
					exchange_read(fc, &one, 1, (size_t)n);
				else
					exchange_read(fc, msg->msg_iov, (int)msg->msg_iovlen,
						      (size_t)n);
			}
			return n;
		}
		int err = n < 0 ? errno : 0;
		if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
			errno = err; /* non-blocking, its receive timeout, or a signal */
			return -1;
		}
		if (err == ENOTSOCK || err == EBADF) {
			/* the number was closed and reused where no hook saw it */
			if (fdtab_get(fd) == fc)
				fdtab_detach(fd);
			errno = err;
			return -1; /* read() and readv() retry as plain calls */
		}
		if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen)
			continue; /* another thread swapped the socket under us */
		if ((n == 0 || is_conn_failure(err)) && fconn_tls_linked(fc)) {
			tls_sock_failed(fc); /* OpenSSL meets it; the SSL hook heals */
			if (n == 0)
				return 0;
		} else if (n == 0 || is_conn_failure(err)) {
			if (heal(fc, gen, n == 0 ? "EOF before the reply" : strerror(err),
				 nonblocking(fd, flags)) == 0)
				continue;
			if (n == 0)
				return 0;
		}
		errno = err;
		return -1;
	}
}

ssize_t flare_recv_managed(struct fconn *fc, int fd, void *buf, size_t len, int flags)
{
	return managed_read(R_RECV, fc, fd, buf, len, NULL, flags);
}

ssize_t flare_recvmsg_managed(struct fconn *fc, int fd, struct msghdr *msg, int flags)
{
	return managed_read(R_RECVMSG, fc, fd, NULL, 0, msg, flags);
}

ssize_t flare_readv_managed(struct fconn *fc, int fd, const struct iovec *iov, int iovcnt)
{
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
	return managed_read(R_READV, fc, fd, NULL, 0, &m, 0);
}

/* A write on a managed descriptor: MSG_NOSIGNAL always (a dead peer must
 * not kill a program the library can still heal), SIGPIPE raised by hand
 * where the program would have had it. */
static ssize_t managed_write(struct fconn *fc, int fd, const void *buf, size_t len,
			     const struct msghdr *msg, int flags, const struct sockaddr *to,
			     socklen_t tolen)
{
	tls_call_saw(fc, fd);
	for (;;) {
		/* one load on the common path: READY, nothing owed or pending */
		if (fconn_state(fc) != FC_READY && not_ready(fc, fd, flags) < 0)
			return -1;
		if (fc->svc.binding != FLARE_BINDING_SESSION && !fconn_tls_linked(fc))
			rebind_at_write(fc, fd);
		uint32_t gen = __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE);
		/* an address (or control data) on a connected stream socket is
		 * the kernel's to ignore or refuse: the bytes are a write */
		ssize_t n = msg  ? real.sendmsg(fd, msg, flags | MSG_NOSIGNAL)
			    : to ? real.sendto(fd, buf, len, flags | MSG_NOSIGNAL, to, tolen)
				 : real.send(fd, buf, len, flags | MSG_NOSIGNAL);
		if (n >= 0) {
			timeouts_settle(fc, 1);
			sock_count(&fc->link.sock_wr, n);
			if (fconn_tls_linked(fc))
				return n;
			if (msg)
				exchange_wrote(fc, msg->msg_iov, (int)msg->msg_iovlen, (size_t)n);
			else
				exchange_wrote_buf(fc, buf, (size_t)n);
			return n;
		}
		int err = errno;
		if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
			errno = err;
			return -1;
		}
		if (err == ENOTSOCK || err == EBADF) {
			if (fdtab_get(fd) == fc)
				fdtab_detach(fd); /* closed and reused where no hook saw it */
			errno = err;
			return -1;
		}
		if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen)
			continue;
		if (is_conn_failure(err) && fconn_tls_linked(fc)) {
			tls_sock_failed(fc);
			/* SIGPIPE waits for the SSL hook's verdict: a heal owes none */
			if (err == EPIPE && !(flags & MSG_NOSIGNAL) && flare_tls_call.depth) {
				__atomic_store_n(&fc->tls.pipe_owed, 1, __ATOMIC_RELEASE);
				errno = err;
				return -1;
			}
		} else if (is_conn_failure(err)) {
			/* nothing of this request went out: a reconnect re-runs nothing */
			exchange_write_failed(fc);
			if (heal(fc, gen, strerror(err), nonblocking(fd, flags)) == 0)
				continue;
		}
		if (err == EPIPE)
			sig_pipe_as_program(flags);
		errno = err;
		return -1;
	}
}

ssize_t flare_send_managed(struct fconn *fc, int fd, const void *buf, size_t len, int flags)
{
	return managed_write(fc, fd, buf, len, NULL, flags, NULL, 0);
}

ssize_t flare_sendto_managed(struct fconn *fc, int fd, const void *buf, size_t len, int flags,
			     const struct sockaddr *to, socklen_t tolen)
{
	return managed_write(fc, fd, buf, len, NULL, flags, to, tolen);
}

ssize_t flare_sendmsg_managed(struct fconn *fc, int fd, const struct msghdr *msg, int flags)
{
	return managed_write(fc, fd, NULL, 0, msg, flags, NULL, 0);
}
