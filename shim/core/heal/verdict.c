/* The heal decision (verdict.h has the map of who asks what). Each gate
 * asks the kernel or the table only when a failure is in question, never
 * on a call that merely moves bytes. */
#include "clock.h"
#include "core.h"
#include "flare.h"
#include "log.h"
#include "real.h"
#include "table.h"
#include "tcpsilent.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "heal/heal.h"
#include "heal/verdict.h"
#include "route/route.h"
#include "tls/tls_call.h"

#include <stddef.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

const char *verdict_refusal(struct fconn *fc, const char *why)
{
	/* proof first: the descriptors are still this connection's socket,
	 * and the kernel saw no byte move that the record lacks */
	if (!proof_identity_all(fc)) {
		log_debug("%s: not healed: the descriptor is another socket now", why);
		return "another socket on the descriptor";
	}
	int fd = fconn_first_fd(fc);
	const char *unseen = fd >= 0 ? proof_bytes(fc, fd) : "no descriptor left";
	if (unseen) {
		if (fconn_trust(fc) != TR_TAINTED && fconn_trust(fc) != TR_BROKEN) {
			log_info("fd %d: %s: not healed, the failure surfaces", fd, unseen);
			trust_event(fc, TE_TAINT);
		}
		return unseen;
	}
	/* the trust table and the framers' permissions (exchange.c, framed.c) */
	if (!exchange_healable(fc)) {
		log_debug("%s: not healed: a reply was being read, or the request is not "
			  "replayable",
			  why);
		return "the exchange does not allow a replay";
	}
	if (heal_replay_refused(fc)) {
		trust_event(fc, TE_REFUSED);
		log_warn("%s: the last heal's replay was refused; this connection is not healed "
			 "again (the program's own reconnect fails over)",
			 why);
		return "the last replay was refused";
	}
	return NULL;
}

const char *verdict_event(struct fconn *fc, int fd)
{
	/* a linked session's failure stands: the program's SSL call heals it */
	if (fconn_state(fc) != FC_READY || fconn_tls_linked(fc) || !exchange_healable(fc) ||
	    flare_in_foreign_child())
		return NULL;
	/* reply bytes (perhaps all of a reply, then the close) are the
	 * program's to read first: after them, a failure is its to see.
	 * Whether the connection failed is the kernel's TCP state: not the
	 * event (POLLERR alone is an error-queue notification on a healthy
	 * connection: MSG_ZEROCOPY, SO_TIMESTAMPING, IP_RECVERR), and not a
	 * peek, which would take the socket's pending error (ECONNRESET) from
	 * the program if the heal is then refused. */
	int avail = 0;
	if ((real.ioctl && real.ioctl(fd, FIONREAD, &avail) == 0 && avail > 0) || !proof_failed(fd))
		return NULL;
	return "error or hang-up in the program's wait";
}

/* The kernel's word on fd's peer (tcpsilent.h) */
static int peer_silent(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	return real.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 &&
	       flare_tcp_peer_silent(&ti, l);
}

/* Reply bytes the program has not read yet: they are its to read first,
 * and a heal would throw them away. */
static int reply_waiting(int fd)
{
	int avail = 0;
	return real.ioctl && real.ioctl(fd, FIONREAD, &avail) == 0 && avail > 0;
}

const char *verdict_watch(struct fconn *fc, int fd)
{
	if (!exchange_outstanding(fc))
		return NULL;
	uint32_t limit = fc->svc.request_timeout_ms;
	if (limit &&
	    flare_monotonic_ms() - __atomic_load_n(&fc->ex.req_start_ms, __ATOMIC_RELAXED) >=
		limit) {
		if (reply_waiting(fd))
			return NULL; /* the reply came; the program is slow to read it */
		STAT_INC(request_timeouts);
		watch_suspect(fc->svc.index, fc->link.cur, limit);
		return "no reply within request_timeout_ms";
	}
	struct flare_route rt;
	if (route_read(fc->svc.index, &rt) != FLARE_TBL_OK ||
	    (uint32_t)fc->link.cur >= rt.svc.n_replicas || rt.reps[fc->link.cur].alive)
		return NULL;
	/* dead in the table: the connection must agree */
	uint64_t now = flare_monotonic_ms();
	uint32_t req = __atomic_load_n(&fc->ex.n_req, __ATOMIC_RELAXED);
	uint64_t since = __atomic_load_n(&fc->ex.dead_seen_ms, __ATOMIC_RELAXED);
	if (!since || __atomic_load_n(&fc->ex.dead_req, __ATOMIC_RELAXED) != req) {
		/* this request's first look at the death */
		__atomic_store_n(&fc->ex.dead_req, req, __ATOMIC_RELAXED);
		__atomic_store_n(&fc->ex.dead_seen_ms, now, __ATOMIC_RELAXED);
		since = now;
	}
	int exited = flare_death_exited(rt.reps[fc->link.cur].reason);
	const char *why = peer_silent(fd) ? "replica dead in the table, and its host acknowledges "
					    "nothing"
			  : !exited && now - since >= FLARE_DEAD_GRACE_MS
			      ? "replica dead in the table, and the reply overdue"
			      : NULL;
	if (!why || reply_waiting(fd))
		return NULL;
	STAT_INC(table_dead_wakeups);
	return why;
}
