/* Requests waiting on a replica that will not answer: the reply has not
 * begun within the service's request_timeout_ms (a replica the monitor
 * cannot see as hung), or its replica is dead in the table (its monitor saw
 * the process die or stop) and the connection itself agrees. The table's
 * word alone is not enough: a forking server's child goes on serving its
 * connection after the listener died. So a table death heals a connection
 * only with evidence from the connection: its peer has acknowledged none of
 * the bytes sent for a while, or keepalive probes go unanswered (a silent
 * host), or, for a death whose reason says the connection cannot say so
 * itself (a stopped or hung process, whose kernel still acknowledges; a
 * lost host; a failed probe), the reply is still overdue
 * FLARE_DEAD_GRACE_MS after the death was first seen. A process that
 * exited (or whose listener refuses) has connections that end by
 * themselves, with a FIN or a reset, or that a child it forked still
 * serves: a slow reply there is a reply, and only the connection moves it.
 * Such a request is replayed on the next replica.
 * A blocking read looks at its own connection between its slices (io.c);
 * readiness waits are sliced while any request is outstanding and look at
 * every such connection at most once a slice (wait.c), so programs that
 * wait in poll, select or epoll are healed the same way.
 *
 * A replica that let a request time out is suspect in this process for a
 * while (ten request timeouts, 1 to 60 s; the table cannot know): new
 * connections and failovers try it only after every replica the table
 * calls alive, as a dead one. Like an outlier ejection, per process. */
#include "shim.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

static uint64_t last_watch_ms; /* [atom] */

/* Suspects, lock-free (fork-safe): service 16 bits | replica 8 | until
 * (monotonic ms) 40; 0 is a free slot. */
#define MAX_SUSPECTS 32
#define UNTIL_MASK ((1ull << 40) - 1)
static uint64_t suspects[MAX_SUSPECTS]; /* [atom] */
static int n_suspects;                  /* [atom] slots ever used: 0 = none, the fast path */

static uint64_t suspect_key(uint32_t svc, int rep)
{
	return ((uint64_t)(svc & 0xffff) << 48) | ((uint64_t)(rep & 0xff) << 40);
}

static void suspect(uint32_t svc, int rep, uint32_t timeout_ms)
{
	uint64_t ms = (uint64_t)timeout_ms * 10;
	ms = ms < 1000 ? 1000 : ms > 60000 ? 60000 : ms;
	uint64_t now = flare_monotonic_ms(), key = suspect_key(svc, rep);
	uint64_t entry = key | ((now + ms) & UNTIL_MASK);
	for (int i = 0; i < MAX_SUSPECTS; i++) {
		uint64_t old = __atomic_load_n(&suspects[i], __ATOMIC_RELAXED);
		/* the replica's own slot, or a free or expired one */
		if ((old && (old & ~UNTIL_MASK) != key && (old & UNTIL_MASK) > now) ||
		    !__atomic_compare_exchange_n(&suspects[i], &old, entry, 0, __ATOMIC_RELEASE,
						 __ATOMIC_RELAXED))
			continue;
		int used = __atomic_load_n(&n_suspects, __ATOMIC_RELAXED);
		while (used < i + 1 &&
		       !__atomic_compare_exchange_n(&n_suspects, &used, i + 1, 0, __ATOMIC_RELEASE,
						    __ATOMIC_RELAXED))
			;
		return;
	}
}

int watch_demote(struct flare_route *rt)
{
	int used = __atomic_load_n(&n_suspects, __ATOMIC_ACQUIRE), n = 0;
	if (!used)
		return 0;
	uint64_t now = flare_monotonic_ms();
	for (int i = 0; i < used; i++) {
		uint64_t e = __atomic_load_n(&suspects[i], __ATOMIC_RELAXED);
		uint32_t rep = (uint32_t)(e >> 40) & 0xff;
		if (e && (e & UNTIL_MASK) > now &&
		    (uint32_t)(e >> 48) == (rt->svc_index & 0xffff) && rep < rt->svc.n_replicas &&
		    rt->reps[rep].alive) {
			rt->reps[rep].alive = 0;
			n++;
		}
	}
	return n;
}

/* The peer closed its side, or has acknowledged nothing for a while
 * though bytes wait for it, or keepalive probes are out: the process or
 * its host is gone or cut off. (The program's own half-close, FIN_WAIT,
 * says nothing of the peer.) */
static int peer_silent(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	if (real.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0 ||
	    l < offsetof(struct tcp_info, tcpi_rcv_rtt))
		return 0;
	switch (ti.tcpi_state) {
	case TCP_CLOSE_WAIT:
	case TCP_LAST_ACK:
	case TCP_CLOSING:
	case TCP_TIME_WAIT:
	case TCP_CLOSE: return 1; /* the peer closed or reset: nothing more will come */
	default: break;
	}
	if (ti.tcpi_probes > 0 || ti.tcpi_backoff > 0)
		return 1;
	uint32_t bound = ti.tcpi_rtt / 250; /* four round trips, in ms */
	if (bound < FLARE_SILENT_MS)
		bound = FLARE_SILENT_MS;
	return ti.tcpi_unacked > 0 &&
	       (ti.tcpi_retransmits > 0 ||
		(ti.tcpi_last_data_sent >= bound && ti.tcpi_last_ack_recv >= bound));
}

/* Reply bytes the program has not read yet: they are its to read first,
 * and a heal would throw them away. */
static int reply_waiting(int fd)
{
	int avail = 0;
	return real.ioctl && real.ioctl(fd, FIONREAD, &avail) == 0 && avail > 0;
}

const char *watch_why(struct fconn *fc, int fd)
{
	if (!exchange_outstanding(fc))
		return NULL;
	uint32_t limit = fc->request_timeout_ms;
	if (limit &&
	    flare_monotonic_ms() - __atomic_load_n(&fc->req_start_ms, __ATOMIC_RELAXED) >= limit) {
		if (reply_waiting(fd))
			return NULL; /* the reply came; the program is slow to read it */
		STAT_INC(request_timeouts);
		suspect(fc->svc_index, fc->cur, limit);
		return "no reply within request_timeout_ms";
	}
	struct flare_route rt;
	if (route_read(fc->svc_index, &rt) != FLARE_TBL_OK ||
	    (uint32_t)fc->cur >= rt.svc.n_replicas || rt.reps[fc->cur].alive)
		return NULL;
	/* dead in the table: the connection must agree */
	uint64_t now = flare_monotonic_ms();
	uint32_t req = __atomic_load_n(&fc->n_req, __ATOMIC_RELAXED);
	uint64_t since = __atomic_load_n(&fc->dead_seen_ms, __ATOMIC_RELAXED);
	if (!since || __atomic_load_n(&fc->dead_req, __ATOMIC_RELAXED) != req) {
		/* this request's first look at the death */
		__atomic_store_n(&fc->dead_req, req, __ATOMIC_RELAXED);
		__atomic_store_n(&fc->dead_seen_ms, now, __ATOMIC_RELAXED);
		since = now;
	}
	int exited = flare_death_exited(rt.reps[fc->cur].reason);
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

static int waiting_healable(struct fconn *fc, void *arg)
{
	(void)arg;
	return fconn_state(fc) == FC_READY && exchange_outstanding(fc) && exchange_healable(fc);
}

void watch_all(void)
{
	uint64_t now = flare_monotonic_ms(),
		 last = __atomic_load_n(&last_watch_ms, __ATOMIC_RELAXED);
	/* one thread looks, once a slice */
	if (now - last < FLARE_SLICE_MS ||
	    !__atomic_compare_exchange_n(&last_watch_ms, &last, now, 0, __ATOMIC_RELAXED,
					 __ATOMIC_RELAXED))
		return;
	struct fconn *fcs[64];
	int n = fdtab_collect(waiting_healable, NULL, fcs, 64);
	for (int i = 0; i < n; i++) {
		struct fconn *fc = fcs[i];
		uint32_t gen = __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE);
		int fd = fconn_first_fd(fc);
		const char *why = fd >= 0 ? watch_why(fc, fd) : NULL;
		if (why)
			/* a blocking socket is healed as its blocking read would */
			heal(fc, gen, why, (real.fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
	}
}
