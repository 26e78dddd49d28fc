/* Healing a managed connection after a failure: a replacement socket to
 * the next target replica, the outstanding request replayed on it, and
 * only then the swap onto the program's descriptor number(s). A blocking
 * program waits for all of it (READY -> READY); a non-blocking one gets the
 * new socket at once, still connecting, and the replay (the session log,
 * its replies read and checked, then the requests) follows from its next
 * calls and readiness waits (replay.c): nothing blocks in its wait. Only
 * what the connection's trust and exchange allow is healed (exchange.c);
 * everything else surfaces as it would without the library. */
#include "clock.h"
#include "core.h"
#include "flare.h"
#include "log.h"
#include "real.h"
#include "table.h"
#include "usershm.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "dial/dial.h"
#include "frame/session.h"
#include "heal/heal.h"
#include "heal/verdict.h"
#include "io/io.h"
#include "route/route.h"
#include "tls/tls_call.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int is_conn_failure(int err)
{
	switch (err) {
	case ECONNRESET:
	case EPIPE:
	case ETIMEDOUT:
	case ECONNABORTED:
	case ENOTCONN:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN: return 1;
	default: return 0;
	}
}

int send_all(int fd, const uint8_t *p, size_t n, int timeout_ms)
{
	int64_t end = wait_deadline(timeout_ms);
	while (n) {
		ssize_t w = real.send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			int left = wait_left(timeout_ms, end);
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			if (left == 0 || (real.poll(&pf, 1, left) <= 0 && errno != EINTR))
				return -1;
			continue;
		}
		return -1;
	}
	return 0;
}

/* Failover targets after the current replica failed: asked of the manager
 * under reactive failover when the program blocks anyway, else the table's
 * ranking (order.c): a non-blocking program is never made to wait for the
 * manager's answer. */
int heal_targets(const struct fconn *fc, const struct flare_route *rt, int async, uint8_t *out)
{
	uint8_t asked[FLARE_MAX_REPLICAS];
	uint32_t tried = __atomic_load_n(&fc->ex.replayed, __ATOMIC_RELAXED);
	int n_asked = fc->svc.failover == FLARE_FAILOVER_REACTIVE && !async
			  ? query_targets(fc, rt, asked)
			  : -1;
	return order_failover(rt, fc->link.cur, fc->svc.failover, asked, n_asked, tried, out);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

/* Was the last heal's replay refused? The new connection failed at once
 * with nothing read, or failed again right after it answered the replayed
 * request: a session the new replica does not share (the program's own
 * reconnect would rebuild it; flare cannot). [claim] */
int heal_replay_refused(const struct fconn *fc)
{
	if (!fc->ex.heal_ms)
		return 0; /* never healed */
	if (!__atomic_load_n(&fc->ex.heal_answered, __ATOMIC_RELAXED))
		return flare_monotonic_ms() - fc->ex.heal_ms < FLARE_REFUSED_MS;
	return __atomic_load_n(&fc->ex.n_req, __ATOMIC_RELAXED) - fc->ex.heal_req <= 1;
}

int heal_plan(struct fconn *fc, const char *why, int async, struct flare_route *rt, uint8_t *order,
	      uint32_t *from, uint32_t *len)
{
	if (verdict_refusal(fc, why))
		return -1;
	int trc = route_read(fc->svc.index, rt);
	if (trc != FLARE_TBL_OK || (uint32_t)fc->link.cur >= rt->svc.n_replicas) {
		log_debug("%s: not healed: table %s", why, flare_tbl_rc_name(trc));
		return -1;
	}
	watch_demote(rt);
	*len = exchange_replay_len(fc);
	*from = exchange_replay_from(fc);
	int n = heal_targets(fc, rt, async, order);
	if (n == 0) {
		log_warn("service %s: %s (%s): every replica already had this request from a heal "
			 "and failed it; the failure surfaces",
			 rt->svc.name, rt->reps[fc->link.cur].name, why);
		return -1;
	}
	return n;
}

/* Waits (bounded) for another thread's heal; 0 when it swapped. */
static int wait_other_healer(struct fconn *fc, uint32_t gen)
{
	int limit = (int)fc->svc.connect_timeout_ms * FLARE_MAX_REPLICAS + 1000;
	for (int waited = 0; waited < limit; waited++) {
		if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen)
			return 0;
		if (!fconn_claimed(fc))
			return __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen ? 0 : -1;
		sleep_ms(1);
	}
	return -1;
}

/* The new socket for target idx, the session replayed and the requests
 * buf[from, len) resent on it when the program blocks; -1 to try the next
 * target. */
static int heal_dial(struct fconn *fc, const struct flare_route *rt, int idx, uint32_t from,
		     uint32_t len, int async, int *err)
{
	int like = fconn_first_fd(fc);
	if (like < 0) {
		*err = EBADF;
		return -1;
	}
	int nfd = async ? dial_start(fc, like, rt, idx, err) : dial_replica(fc, like, rt, idx, err);
	if (nfd < 0 || async)
		return nfd;
	/* closed by the next heal if a siglongjmp ends this one, while it is
	 * still this socket (the program runs in between) */
	fc->own.pending_cookie = proof_cookie(nfd);
	fc->own.pending_fd = nfd;
	if (session_replay(fc, nfd, (int)fc->svc.connect_timeout_ms, rt->reps[idx].name) < 0) {
		*err = EPROTO;
		real.close(nfd);
		fc->own.pending_fd = -1;
		return -1;
	}
	if (len > from &&
	    send_all(nfd, fc->buf + from, len - from, (int)fc->svc.connect_timeout_ms) < 0) {
		*err = errno;
		log_debug("replay to %s failed: %s", rt->reps[idx].name, strerror(errno));
		real.close(nfd);
		fc->own.pending_fd = -1;
		return -1;
	}
	if (__atomic_load_n(&fc->ex.shut_wr, __ATOMIC_ACQUIRE))
		real.shutdown(nfd, SHUT_WR);
	return nfd;
}

/* The new socket is in place: the link's next state. [claim] */
static void heal_done(struct fconn *fc, const uint8_t *order, int n, int k, uint32_t from,
		      uint32_t len, int async, int in_progress)
{
	exchange_healed(fc);
	if (!async) {
		if (len > from) {
			COUNT(replays, fc->svc.index, SS_REPLAYS, 1);
			COUNT(replay_bytes, fc->svc.index, SS_REPLAY_BYTES, len - from);
		}
		fconn_enter(fc, FC_READY);
		return;
	}
	fc->mv.replay_from = fc->mv.replay_off = from;
	fc->mv.replay_len = len;
	session_async_start(fc);
	nb_start(fc, order, n, k + 1, 0);
	int resend =
	    len > from || fc->mv.sess_step || __atomic_load_n(&fc->ex.shut_wr, __ATOMIC_ACQUIRE);
	if (resend)
		fconn_enter(fc, in_progress ? FC_HEAL_CONNECTING : FC_REPLAYING);
	else
		fconn_enter(fc, in_progress ? FC_CONNECTING : FC_READY);
}

int heal(struct fconn *fc, uint32_t gen, const char *why, int async)
{
	if (flare_in_foreign_child() || fconn_first_fd(fc) < 0)
		return -1;
	if (fconn_tls_linked(fc))
		return tls_abandon_socket(fc, why); /* the SSL hook heals the session */
	if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen)
		return 0;
	if (!fconn_claim(fc))
		return wait_other_healer(fc, gen);
	if (fc->own.pending_fd >= 0) {
		proof_close(fc->own.pending_fd, fc->own.pending_cookie);
		fc->own.pending_fd = -1;
	}
	int rc = -1;
	struct flare_route rt;
	if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen) {
		rc = 0;
		goto out;
	}
	int st = fconn_state(fc);
	if (st == FC_FAILED || st == FC_FREE) {
		log_debug("%s: not healed: the connection has failed already", why);
		goto out;
	}
	uint8_t order[FLARE_MAX_REPLICAS + 1];
	uint64_t t0 = flare_monotonic_ns();
	uint32_t len, from;
	int n = heal_plan(fc, why, async, &rt, order, &from, &len);
	if (n <= 0)
		goto out;
	const char *name = rt.reps[fc->link.cur].name;
	for (int k = 0; k < n; k++) {
		int idx = order[k], err = 0;
		int nfd = heal_dial(fc, &rt, idx, from, len, async, &err);
		if (nfd < 0) {
			log_debug("failover to %s: %s", rt.reps[idx].name, strerror(err));
			continue;
		}
		int swapped = fconn_swap(fc, nfd);
		fc->own.pending_fd = -1;
		if (swapped < 0)
			break;
		fc->link.cur = idx;
		/* the replayed request's own time starts now (request_timeout_ms) */
		__atomic_store_n(&fc->ex.req_start_ms, flare_monotonic_ms(), __ATOMIC_RELAXED);
		__atomic_or_fetch(&fc->ex.replayed, 1u << idx, __ATOMIC_RELAXED);
		fc->ex.heal_req = __atomic_load_n(&fc->ex.n_req, __ATOMIC_RELAXED);
		fc->ex.heal_ms = flare_monotonic_ms();
		__atomic_store_n(&fc->ex.heal_answered, 0, __ATOMIC_RELAXED);
		COUNT(failovers, fc->svc.index, SS_HEALS, 1);
		if (async)
			STAT_INC(heals_async);
		heal_done(fc, order, n, k, from, len, async, err == EINPROGRESS);
		log_info("service %s: %s -> %s (%s), %u request byte(s) %s, in %.0f us",
			 rt.svc.name, name, rt.reps[idx].name, why, len - from,
			 async ? "to replay once connected" : "replayed",
			 (double)(flare_monotonic_ns() - t0) / 1000.0);
		__atomic_add_fetch(&fc->gen, 1, __ATOMIC_ACQ_REL);
		rc = 0;
		goto out;
	}
	log_warn("service %s: no replica could take over from %s (%s)", rt.svc.name, name, why);
out:
	if (rc < 0)
		COUNT(passed_errors, fc->svc.index, SS_PASSED_ERRORS, 1);
	fconn_unclaim(fc);
	return rc;
}

int heal_on_event(int fd)
{
	struct fconn *fc = fdtab_get(fd);
	const char *why = fc ? verdict_event(fc, fd) : NULL;
	if (!why)
		return 0;
	uint32_t gen = __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE);
	return heal(fc, gen, why, 1) == 0;
}
