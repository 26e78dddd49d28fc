/* flare's own TCP timeouts on managed sockets: TCP_USER_TIMEOUT and
 * keepalive, so that a dead peer costs the program the service's timeouts,
 * not the kernel's minutes. A program's own choices win.
 *
 * They are five setsockopt calls, a few per cent of a short connection's
 * cost (a curl-style connect, request, close), and they matter only to a
 * connection that lives long: the keepalive idle time is at least a second
 * and the user timeout counts from the first unanswered retransmission,
 * whenever it was set. So a new connection gets them once it outlives
 * FLARE_TIMEOUTS_DEFER_MS: on its first write after that, when a blocking
 * read's slice ends, or when a readiness wait has slept that long (the
 * waits are sliced to it while any connection is owed its timeouts).
 * Replacement sockets made by a heal get them at once. */
#include "clock.h"
#include "lock.h"
#include "real.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "dial/dial.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

int flare_n_timeouts_owed;

static void set_int(int fd, int level, int name, int v)
{
	real.setsockopt(fd, level, name, &v, sizeof(v));
}

static int get_int(int fd, int level, int name)
{
	int v = 0;
	socklen_t l = sizeof(v);
	real.getsockopt(fd, level, name, &v, &l);
	return v;
}

void timeouts_apply(struct fconn *fc, int fd)
{
	int set = fdtab_opts(fd);
	if (fc->svc.user_timeout_ms &&
	    (!(set & FLARE_SET_USER_TIMEOUT) || get_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT) == 0))
		set_int(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, (int)fc->svc.user_timeout_ms);
	if (fc->svc.ka_idle &&
	    (!(set & FLARE_SET_KEEPALIVE) || !get_int(fd, SOL_SOCKET, SO_KEEPALIVE))) {
		set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
		set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, fc->svc.ka_idle);
		set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, fc->svc.ka_intvl ? fc->svc.ka_intvl : 1);
		set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, fc->svc.ka_cnt ? fc->svc.ka_cnt : 1);
	}
}

void timeouts_defer(struct fconn *fc)
{
	if (!fc->svc.user_timeout_ms && !fc->svc.ka_idle)
		return;
	fc->link.timeouts_due_ms = flare_coarse_ms() + FLARE_TIMEOUTS_DEFER_MS;
	if (!__atomic_exchange_n(&fc->link.timeouts_owed, 1, __ATOMIC_ACQ_REL))
		__atomic_add_fetch(&flare_n_timeouts_owed, 1, __ATOMIC_RELEASE);
}

void timeouts_forget(struct fconn *fc)
{
	if (__atomic_load_n(&fc->link.timeouts_owed, __ATOMIC_RELAXED) &&
	    __atomic_exchange_n(&fc->link.timeouts_owed, 0, __ATOMIC_ACQ_REL))
		__atomic_sub_fetch(&flare_n_timeouts_owed, 1, __ATOMIC_RELEASE);
}

/* Under the connection's lock: a close detaches the number (taking the
 * lock) before closing it, so fds[0] cannot be closed and reused while the
 * options are being set. */
static int settle_locked(struct fconn *fc)
{
	int done = 0;
	flare_lock(&fc->lock);
	fconn_prune_locked(fc);
	if (fc->own.n_fds > 0 &&
	    __atomic_exchange_n(&fc->link.timeouts_owed, 0, __ATOMIC_ACQ_REL)) {
		__atomic_sub_fetch(&flare_n_timeouts_owed, 1, __ATOMIC_RELEASE);
		timeouts_apply(fc, fc->own.fds[0]);
		done = 1;
	}
	flare_unlock(&fc->lock);
	return done;
}

void timeouts_settle(struct fconn *fc, int due_only)
{
	if (!__atomic_load_n(&fc->link.timeouts_owed, __ATOMIC_RELAXED))
		return;
	if (due_only && flare_coarse_ms() < fc->link.timeouts_due_ms)
		return;
	settle_locked(fc);
}

static int owes_timeouts(struct fconn *fc, void *arg)
{
	(void)arg;
	return __atomic_load_n(&fc->link.timeouts_owed, __ATOMIC_RELAXED);
}

void timeouts_settle_all(void)
{
	struct fconn *work[64];
	int n, settled;
	do {
		/* one still being connected (no descriptor yet) is left for later */
		n = fdtab_collect(owes_timeouts, NULL, work, 64);
		settled = 0;
		for (int i = 0; i < n; i++)
			settled += settle_locked(work[i]);
	} while (n == 64 && settled > 0);
}
