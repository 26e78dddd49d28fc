/* Moving a live connection to another replica at a request boundary, for
 * services that balance beyond the connect (docs/DESIGN.md "Load
 * balancing"). Both run just before the program's next request is written,
 * when nothing is outstanding, and never block or fail that write: when
 * anything is not ready the request goes where it would have gone.
 *
 * On demand: the manager publishes moves (this connection, from its
 * replica, to another). A connection named there starts a non-blocking
 * connect to the target and, at a later boundary once it is connected,
 * takes it (the session log replayed first, as a heal would), at most once
 * per rebind_interval_ms.
 *
 * Per request: one socket per replica, kept open (pool1); before each
 * request the policy picks a replica and its socket is put on the
 * program's descriptor number with dup3 (the one it leaves stays in the
 * pool). The program's epoll registrations follow: removed before the
 * dup3 (epoll keys them by number and open file, and the old file stays
 * open in the pool), added after. A connection with session state (Redis
 * SELECT, AUTH) stays where it is: its other sockets lack the session.
 * No proxy hop: the request goes straight to the replica. */
#include "addr.h"
#include "clock.h"
#include "core.h"
#include "flare.h"
#include "lock.h"
#include "log.h"
#include "real.h"
#include "table.h"
#include "usershm.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "dial/dial.h"
#include "frame/framed.h"
#include "frame/session.h"
#include "heal/heal.h"
#include "io/io.h"
#include "route/route.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Per request: a pool socket as it was left (the program's numbers named
 * it until then) */
struct rb_pooled {
	struct proof_held proof; /* its cookie from when it entered the pool; the
				  * rest once it was left (pool_held) */
	uint64_t left_ms;        /* coarse clock */
};

/* A pool socket idle this long is asked whether its replica closed it (or
 * wrote to it) before it is taken: within a burst of requests it is not */
#define POOL_IDLE_MS 10

/* Nothing to read, no hang-up, no error: what the program's socket showed
 * when the library left it. A replica closing idle connections (a graceful
 * restart, a keep-alive timeout) leaves its FIN here, where the program
 * cannot look. */
static int pool_clean(int p)
{
	struct pollfd x = {.fd = p, .events = POLLIN | POLLRDHUP};
	return real.poll && real.poll(&x, 1, 0) == 0;
}

/* Pool slot t is emptied; its number is not touched */
static void pool_forget(struct fconn *fc, int t)
{
	fc->rb.pool1[t] = 0;
	fc->rb.pool_ready &= ~(1u << t);
	fc->rb.pool_held &= ~(1u << t);
	fc->rb.pool_fl_ok &= ~(1u << t);
}

/* Pool socket t leaves the pool: its number is closed only while the
 * kernel says it is still that socket. A program that closed the library's
 * number (a close-all loop, a double close) and opened a file on it owns
 * the number now, and the socket went with its close. */
static void pool_drop(struct fconn *fc, int t)
{
	proof_close(fc->rb.pool1[t] - 1, fc->pooled[t].proof.cookie);
	pool_forget(fc, t);
}

/* A socket just dialed that the library will hold while the program runs:
 * its cookie, to prove it by later; 0 (and the socket closed) when the
 * kernel gives none, since it could never be proved, used or closed */
static uint64_t hold_cookie(int nfd)
{
	uint64_t cookie = nfd >= 0 ? proof_cookie(nfd) : 0;
	if (nfd >= 0 && !cookie)
		real.close(nfd);
	return cookie;
}

/* The on-demand move's socket, closed only while it is that socket */
static void move_drop(struct fconn *fc)
{
	proof_close(fc->rb.rb_fd1 - 1, fc->rb.rb_cookie);
	fc->rb.rb_fd1 = 0;
}

static int unread(int fd)
{
	int avail = 0;
	return real.ioctl && real.ioctl(fd, FIONREAD, &avail) == 0 && avail > 0;
}

/* 1 connected, 0 still connecting, -1 failed */
static int dial_state(struct fconn *fc, int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	if (real.poll(&p, 1, 0) <= 0)
		return flare_monotonic_ms() - fc->mv.dial_ms > fc->svc.connect_timeout_ms ? -1 : 0;
	int err = 0;
	socklen_t len = sizeof(err);
	if ((p.revents & (POLLERR | POLLHUP)) ||
	    real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
		return -1;
	return 1;
}

/* This connection's address as its replica sees it (the moves name it) */
static void refresh_local(struct fconn *fc, int fd)
{
	uint32_t gen = __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE);
	if (fc->rb.local_gen == gen && fc->rb.local.family)
		return;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    flare_addr_from_sockaddr((struct sockaddr *)&ss, len, &fc->rb.local) == 0)
		fc->rb.local_gen = gen;
}

static void on_demand(struct fconn *fc, int fd)
{
	struct flare_route rt;
	if (fc->rb.rb_fd1) {
		int nfd = fc->rb.rb_fd1 - 1;
		/* held since a request ago: still the socket dialed? */
		if (!proof_is(nfd, fc->rb.rb_cookie)) {
			fc->rb.rb_fd1 = 0; /* its number is the program's now */
			log_info(
			    "fd %d: the socket dialed to move it is gone (its number %d closed "
			    "by the program and reused): the move is dropped",
			    fd, nfd);
			return;
		}
		int st = dial_state(fc, nfd);
		if (st == 0 || (st > 0 && unread(fd)))
			return; /* not yet: this request goes where the last one went */
		fc->rb.rb_fd1 = 0;
		if (st < 0 || route_read(fc->svc.index, &rt) != FLARE_TBL_OK ||
		    (uint32_t)fc->rb.rb_to >= rt.svc.n_replicas ||
		    session_replay(fc, nfd, (int)fc->svc.connect_timeout_ms,
				   rt.reps[fc->rb.rb_to].name) < 0) {
			real.close(nfd);
			return;
		}
		const char *from = rt.reps[fc->link.cur].name;
		if (!proof_identity_all(fc)) {
			real.close(nfd); /* the program's numbers are not this socket's */
			return;
		}
		if (fconn_swap(fc, nfd) < 0)
			return;
		fc->link.cur = fc->rb.rb_to;
		fc->rb.bound_ms = flare_coarse_ms();
		__atomic_store_n(&fc->ex.replayed, 0, __ATOMIC_RELAXED);
		exchange_healed(fc);
		__atomic_add_fetch(&fc->gen, 1, __ATOMIC_ACQ_REL);
		COUNT(rebinds, fc->svc.index, SS_REBINDS, 1);
		log_info("service %s: %s -> %s (rebalanced at a request boundary)", rt.svc.name,
			 from, rt.reps[fc->link.cur].name);
		return;
	}
	fc->rb.moves_seen = route_moves_gen(); /* looked at, whatever it says */
	refresh_local(fc, fd);
	uint32_t to;
	if (route_read(fc->svc.index, &rt) != FLARE_TBL_OK ||
	    route_find_move(&fc->rb.local, rt.svc.first_replica + (uint32_t)fc->link.cur, &to) !=
		FLARE_TBL_OK ||
	    to < rt.svc.first_replica || to - rt.svc.first_replica >= rt.svc.n_replicas)
		return;
	int idx = (int)(to - rt.svc.first_replica), err = 0;
	if (idx == fc->link.cur || !rt.reps[idx].alive)
		return;
	int nfd = dial_start(fc, fd, &rt, idx, &err);
	uint64_t cookie = hold_cookie(nfd);
	if (cookie) {
		fc->rb.rb_fd1 = nfd + 1;
		fc->rb.rb_to = idx;
		fc->rb.rb_cookie = cookie;
	}
}

/* The program's descriptor(s) now name pool socket p (replica t). Its
 * flags and close-on-exec bits are cached: a switch costs the dup3 (and,
 * for an epoll program, one delete and one add per registration). */
static int switch_to(struct fconn *fc, int fd, int p, int t, uint64_t now_ms)
{
	struct ep_regs regs;
	flare_lock(&fc->lock);
	fconn_prune_locked(fc);
	if (ep_read(fc, &regs) < 0) {
		flare_unlock(&fc->lock);
		return -1; /* registrations it cannot carry over: stay */
	}
	if (__atomic_exchange_n(&fc->rb.flags_dirty, 0, __ATOMIC_ACQ_REL) || !fc->rb.flags_ok ||
	    fc->rb.flags_nfds != fc->own.n_fds) {
		fc->rb.prog_fl = real.fcntl(fd, F_GETFL);
		fc->rb.prog_cloexec = 0;
		for (int i = 0; i < fc->own.n_fds; i++) {
			int fdfl = real.fcntl(fc->own.fds[i], F_GETFD);
			if (fdfl >= 0 && (fdfl & FD_CLOEXEC))
				fc->rb.prog_cloexec |= 1u << i;
		}
		fc->rb.flags_nfds = fc->own.n_fds;
		fc->rb.flags_ok = fc->rb.prog_fl >= 0;
		fc->rb.pool_fl_ok = 0;
	}
	if (fc->rb.flags_ok && !(fc->rb.pool_fl_ok >> t & 1u)) {
		real.fcntl(p, F_SETFL, fc->rb.prog_fl & (O_NONBLOCK | O_ASYNC | O_APPEND));
		fc->rb.pool_fl_ok |= 1u << t;
	}
	ep_detach(&regs);
	int rc = fc->own.n_fds ? 0 : -1, from = fc->link.cur;
	struct rb_pooled left = {.left_ms = now_ms};
	proof_hold(fc, &left.proof);
	for (int i = 0; i < fc->own.n_fds && rc == 0; i++)
		if (fdtab_get(fc->own.fds[i]) == fc &&
		    real.dup3(p, fc->own.fds[i], fc->rb.prog_cloexec >> i & 1u ? O_CLOEXEC : 0) < 0)
			rc = -1;
	if (rc == 0) {
		/* the pool socket's identity and counts are the connection's
		 * now: held since it was left, asked of the kernel the first
		 * time (two system calls a switch saved: strace) */
		if (fc->rb.pool_held >> t & 1u)
			proof_resume(fc, &fc->pooled[t].proof);
		else
			proof_mark(fc, fc->own.fds[0]);
		fc->pooled[from] = left;
		fc->rb.pool_held |= 1u << from;
	}
	flare_unlock(&fc->lock);
	ep_attach(&regs);
	return rc;
}

/* The connection's route, read again only when the table changed */
static const struct flare_route *cached_route(struct fconn *fc)
{
	uint64_t gen = route_table_gen();
	if (fc->rb.route_ok && gen == fc->rb.route_gen)
		return fc->route;
	if (!fc->route && !(fc->route = malloc(sizeof(*fc->route))))
		return NULL;
	fc->rb.route_ok = route_read(fc->svc.index, fc->route) == FLARE_TBL_OK;
	fc->rb.route_gen = gen;
	return fc->rb.route_ok ? fc->route : NULL;
}

static void per_request(struct fconn *fc, int fd)
{
	const struct flare_route *rt = cached_route(fc);
	if (!rt)
		return;
	int t = balance_pick(rt, balance_random(), fc->rb.turn++, -1);
	if (t < 0 || t == fc->link.cur || (uint32_t)fc->link.cur >= rt->svc.n_replicas)
		return;
	uint32_t gen = __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE);
	if (fc->rb.pool_gen != gen || !fc->rb.pool1[fc->link.cur]) {
		/* the program's socket is new (connected, or healed: then the
		 * replica that failed may have others' sockets dead too, so the
		 * pool starts afresh): keep it */
		rebind_release_sockets(fc);
		/* no record of the pool, or no cookie to prove its sockets by (a
		 * kernel without SO_COOKIE): no pool, this request stays */
		uint64_t own = __atomic_load_n(&fc->pf.cookie, __ATOMIC_ACQUIRE);
		if (!own || (!fc->pooled &&
			     !(fc->pooled = malloc(FLARE_MAX_REPLICAS * sizeof(*fc->pooled)))))
			return;
		int keep = real.fcntl(fd, F_DUPFD_CLOEXEC, 0);
		fc->rb.pool1[fc->link.cur] = keep >= 0 ? keep + 1 : 0;
		fc->pooled[fc->link.cur].proof.cookie = own;
		fc->rb.pool_ready |= 1u << fc->link.cur;
		fc->rb.pool_fl_ok |= 1u << fc->link.cur;
		fc->rb.pool_gen = gen;
		if (keep < 0)
			return;
	}
	int p = fc->rb.pool1[t] - 1, err = 0;
	if (p < 0) {
		/* this request stays; the replica's socket serves a later one */
		int nfd = dial_start(fc, fd, rt, t, &err);
		/* a number the kernel just gave out was closed under another
		 * slot (by the program): that slot's socket is gone */
		for (int i = 0; nfd >= 0 && i < FLARE_MAX_REPLICAS; i++)
			if (i != t && fc->rb.pool1[i] == nfd + 1)
				pool_forget(fc, i);
		pool_forget(fc, t);
		uint64_t cookie = hold_cookie(nfd);
		if (cookie) {
			fc->rb.pool1[t] = nfd + 1;
			fc->pooled[t].proof.cookie = cookie;
		}
		return;
	}
	/* held while the program ran: the program may have closed the number
	 * and opened a socket or a pipe of its own there (a quiet one passes
	 * the poll below), whose SO_ERROR and place on the program's numbers
	 * are not the library's to take */
	if (!proof_is(p, fc->pooled[t].proof.cookie)) {
		pool_forget(fc, t); /* the number is the program's: not closed */
		log_info("fd %d: its pooled socket to replica %d is gone (its number %d closed "
			 "by the program and reused): dialed again",
			 fd, t, p);
		return;
	}
	if (!(fc->rb.pool_ready >> t & 1u)) {
		int st = dial_state(fc, p);
		if (st < 0)
			pool_drop(fc, t);
		if (st <= 0)
			return;
		fc->rb.pool_ready |= 1u << t;
	}
	if (!fconn_framed(fc) && unread(fd))
		return; /* the reply did not end where the program stopped reading */
	uint64_t now_ms = flare_coarse_ms();
	if ((!(fc->rb.pool_held >> t & 1u) || now_ms - fc->pooled[t].left_ms >= POOL_IDLE_MS) &&
	    !pool_clean(p)) {
		/* closed (or written to) by its replica while pooled: dropped,
		 * dialed again for a later request; this one stays */
		pool_drop(fc, t);
		return;
	}
	/* the act replaces what the program's numbers name with what p names:
	 * proved first (above) that p is still the pool's socket, and that
	 * they still name this connection's socket (a close no hook saw, a raw
	 * system call's, and an open() on the number would lose the file) */
	if (!proof_identity_all(fc))
		return;
	if (switch_to(fc, fd, p, t, now_ms) < 0)
		return;
	fc->link.cur = t;
	__atomic_store_n(&fc->ex.replayed, 0, __ATOMIC_RELAXED);
	fc->rb.pool_gen = __atomic_add_fetch(&fc->gen, 1, __ATOMIC_ACQ_REL);
	COUNT(switches, fc->svc.index, SS_SWITCHES, 1);
}

/* On demand, most writes have nothing to do: a socket to take, or moves
 * published since the last look and the interval over. [claim] */
static int move_due(struct fconn *fc)
{
	return fc->rb.rb_fd1 || (flare_coarse_ms() - fc->rb.bound_ms >= fc->svc.rebind_ms &&
				 route_moves_gen() != fc->rb.moves_seen);
}

void rebind_at_write(struct fconn *fc, int fd)
{
	int per_req = fc->svc.binding == FLARE_BINDING_REQUEST;
	if (fconn_state(fc) != FC_READY || !fconn_claim(fc))
		return;
	/* A vfork child shares the parent's memory, not its descriptors: it
	 * must change nothing. It may not write to a socket either (POSIX
	 * allows it only exec and _exit: posix_spawn's file actions are
	 * close, dup2 and open), so the per-request path, which runs on every
	 * request, spares itself the getpid; the on-demand one looks only when
	 * something may change. The boundary (a lock for framed connections)
	 * is asked last. */
	if (fconn_state(fc) == FC_READY && (per_req || move_due(fc)) &&
	    exchange_boundary(fc, per_req)) {
		if (per_req)
			per_request(fc, fd);
		else if (!flare_in_foreign_child())
			on_demand(fc, fd);
	}
	fconn_unclaim(fc);
}

void rebind_release_sockets(struct fconn *fc)
{
	/* a vfork child must not close its parent's sockets */
	if (flare_in_foreign_child())
		return;
	if (fc->rb.rb_fd1)
		move_drop(fc);
	for (int i = 0; i < FLARE_MAX_REPLICAS; i++)
		if (fc->rb.pool1[i])
			pool_drop(fc, i);
	fc->rb.pool_ready = fc->rb.pool_fl_ok = fc->rb.pool_held = 0;
}
