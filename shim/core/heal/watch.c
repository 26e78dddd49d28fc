/* Requests waiting on a replica that will not answer (what counts as one
 * is verdict_watch's to say, in verdict.c): the reply has not
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
#include "clock.h"
#include "real.h"
#include "table.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "heal/heal.h"
#include "heal/verdict.h"
#include "io/io.h"

#include <fcntl.h>

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

void watch_suspect(uint32_t svc, int rep, uint32_t timeout_ms)
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
		const char *why = fd >= 0 ? verdict_watch(fc, fd) : NULL;
		if (why)
			/* a blocking socket is healed as its blocking read would */
			heal(fc, gen, why, (real.fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
	}
}
