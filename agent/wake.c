/* The kernel wake, the agent's side (shim/core/io/wake.c has the
 * library's). A client's blocking read that waits for a reply registers
 * its socket's cookie in its user's NAME.user.UID; while a replica is dead
 * for a reason its connections cannot tell by themselves (stopped, hung, a
 * failed probe, a lost host), this agent looks every WAKE_TICK_MS at the
 * registered sockets through sock_diag and ends those the evidence
 * condemns with SOCK_DESTROY (what `ss -K` does): the program's blocked
 * read returns ECONNABORTED at once, and its library heals.
 *
 * The evidence is the library's own rule (heal/verdict.c, verdict_watch):
 * the socket's peer is one of the dead replica's, no reply bytes wait
 * unread, and either its peer is silent (tcpsilent.h: nothing
 * acknowledged, keepalive probes out) or the death was seen
 * FLARE_DEAD_GRACE_MS ago. An exited process's connections say so
 * themselves (FIN, RST): never touched, nor one a forked child still
 * serves.
 *
 * Only sockets whose cookie their own user registered are ever ended: a
 * cookie is matched with the socket's uid, so no user can have another's
 * connection ended. SOCK_DESTROY needs CAP_NET_ADMIN: the agent tries it
 * on a loopback pair of its own at start, and without it says so and
 * leaves the table's FLARE_TBL_FLAG_WAKE clear (clients slice their waits
 * as before). */
#include "agent.h"

#include "clock.h"
#include "log.h"
#include "segments.h"
#include "sockdiag.h"
#include "tcpsilent.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Blocked readers are ended WAKE_TICK_MS after the evidence condemns them
 * for WAKE_FAST_MS after a death (the readers that were waiting when it
 * came), then every WAKE_SLOW_MS while the replica stays dead (a read
 * begun on it later) */
#define WAKE_TICK_MS 20
#define WAKE_FAST_MS 2000
#define WAKE_SLOW_MS 100
#define WAKE_COOKIES 8192 /* registered waits looked at per tick */
#define SEGS_MAX 1024

struct wake_cookie {
	uint64_t cookie;
	uid_t uid;
};

/* Can this agent end a socket? A loopback pair of its own, one end ended:
 * the other's read must say ECONNABORTED. 0, or why not (an errno value). */
static int self_test(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -1, s = -1, err = EIO;
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		goto out;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (s = accept(l, NULL, NULL)) < 0)
		goto out;
	struct sockaddr_in me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer);
	uint64_t cookie = 0;
	socklen_t cl = sizeof(cookie);
	if (getsockname(c, (struct sockaddr *)&me, &ml) < 0 ||
	    getpeername(c, (struct sockaddr *)&peer, &pl) < 0 ||
	    getsockopt(c, SOL_SOCKET, SO_COOKIE, &cookie, &cl) < 0)
		goto out;
	struct inet_diag_sockid id = {.idiag_sport = me.sin_port,
				      .idiag_dport = peer.sin_port,
				      .idiag_cookie = {(uint32_t)cookie, (uint32_t)(cookie >> 32)}};
	id.idiag_src[0] = me.sin_addr.s_addr;
	id.idiag_dst[0] = peer.sin_addr.s_addr;
	err = sockdiag_destroy(AF_INET, &id);
	char b;
	if (!err && !(recv(c, &b, 1, MSG_DONTWAIT) < 0 && errno == ECONNABORTED))
		err = EIO;
out:
	if (s >= 0)
		close(s);
	if (c >= 0)
		close(c);
	if (l >= 0)
		close(l);
	return err;
}

static int cookie_cmp(const void *x, const void *y)
{
	uint64_t a = ((const struct wake_cookie *)x)->cookie,
		 b = ((const struct wake_cookie *)y)->cookie;
	return a < b ? -1 : a > b;
}

/* Every live client's registered waits, sorted by cookie */
static int collect(struct agent *a, struct wake_cookie *out, int max)
{
	static struct flare_seg segs[SEGS_MAX];
	static uint64_t one[WAKE_COOKIES];
	int n = 0, k = flare_segs_list(a->writer.name, segs, SEGS_MAX);
	for (int i = 0; i < k && i < SEGS_MAX && n < max; i++) {
		if (segs[i].kind != SEG_USER || !segs[i].valid)
			continue;
		int got = flare_seg_user_waits(&segs[i], one, max - n);
		for (int j = 0; j < got; j++)
			out[n++] = (struct wake_cookie){one[j], segs[i].owner};
	}
	qsort(out, (size_t)n, sizeof(*out), cookie_cmp);
	return n;
}

static int replica_at(const struct agent *a, const struct flare_addr *dst)
{
	for (int i = 0; i < a->wake.n_reps; i++)
		if (flare_addr_equal(&a->wake.reps[i].addr, dst))
			return i;
	return -1;
}

/* What one tick looks at: the registered waits, sorted by cookie */
struct sweep {
	struct agent *a;
	const struct wake_cookie *reg;
	int n_reg;
	uint64_t now;
};

/* One established socket from the dump: ended when registered by its own
 * user and condemned. */
static void judge(void *arg, const struct inet_diag_msg *d, const struct tcp_info *ti,
		  size_t ti_len)
{
	const struct sweep *sw = arg;
	struct agent *a = sw->a;
	uint64_t cookie = (uint64_t)d->id.idiag_cookie[0] | (uint64_t)d->id.idiag_cookie[1] << 32;
	struct wake_cookie key = {cookie, 0};
	const struct wake_cookie *w =
	    bsearch(&key, sw->reg, (size_t)sw->n_reg, sizeof(*sw->reg), cookie_cmp);
	if (!w || w->uid != d->idiag_uid || d->idiag_rqueue > 0)
		return; /* not registered by its owner, or a reply waits to be read */
	struct flare_addr dst = sockdiag_peer(d);
	int r = replica_at(a, &dst);
	if (r < 0)
		return;
	const struct wake_replica *rep = &a->wake.reps[r];
	if (rep->alive || flare_death_exited(rep->reason))
		return;
	int silent = ti && flare_tcp_peer_silent(ti, ti_len);
	if (!silent && sw->now - rep->dead_since_ns < (uint64_t)FLARE_DEAD_GRACE_MS * 1000000ull)
		return;
	int err = sockdiag_destroy(d->idiag_family, &d->id);
	char s[FLARE_ADDR_STRLEN];
	if (err)
		log_warn("wake: cannot end a connection of uid %u to %s: %s",
			 (unsigned)d->idiag_uid, flare_addr_format(&dst, s, sizeof(s)),
			 strerror(err));
	else {
		a->wake.ended++;
		log_info("wake: ended a blocked connection of uid %u to %s (%s, %s)",
			 (unsigned)d->idiag_uid, flare_addr_format(&dst, s, sizeof(s)),
			 flare_death_name(rep->reason),
			 silent ? "its host acknowledges nothing" : "the reply overdue");
	}
}

/* 0: no replica is dead for a reason its connections cannot tell; else
 * the milliseconds since the latest such death, at least 1 */
static uint64_t condemnable(const struct agent *a, uint64_t now)
{
	uint64_t latest = 0;
	for (int i = 0; i < a->wake.n_reps; i++)
		if (!a->wake.reps[i].alive && !flare_death_exited(a->wake.reps[i].reason) &&
		    a->wake.reps[i].dead_since_ns > latest)
			latest = a->wake.reps[i].dead_since_ns;
	return latest ? (now - latest) / 1000000ull + 1 : 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	(void)fd;
	(void)what;
	uint64_t now = flare_monotonic_ns(), since_ms = condemnable(a, now);
	if (!since_ms) {
		evtimer_del(a->wake.timer);
		return;
	}
	if (since_ms > WAKE_FAST_MS && now - a->wake.last_sweep_ns < WAKE_SLOW_MS * 1000000ull)
		return;
	a->wake.last_sweep_ns = now;
	static struct wake_cookie reg[WAKE_COOKIES];
	int n = collect(a, reg, WAKE_COOKIES);
	if (n > 0) {
		/* only connections to the dead replicas' ports are copied out
		 * (the kernel filters; judge looks at the address itself) */
		uint16_t ports[SOCKDIAG_MAX_PORTS];
		int np = 0, whole = 0;
		for (int i = 0; i < a->wake.n_reps && !whole; i++) {
			const struct wake_replica *r = &a->wake.reps[i];
			if (r->alive || flare_death_exited(r->reason))
				continue;
			int seen = 0;
			for (int k = 0; k < np && !seen; k++)
				seen = ports[k] == r->addr.port;
			if (!seen && np == SOCKDIAG_MAX_PORTS)
				whole = 1;
			else if (!seen)
				ports[np++] = r->addr.port;
		}
		struct sweep sw = {a, reg, n, now};
		for (int f = 0; f < 2; f++) {
			int family = f ? AF_INET6 : AF_INET;
			if (whole)
				sockdiag_dump(family, 1u << TCP_ESTABLISHED, judge, &sw);
			else
				sockdiag_dump_ports(family, 1u << TCP_ESTABLISHED, ports, np, 1,
						    judge, &sw);
		}
	}
}

int wake_start(struct agent *a)
{
	int err = self_test();
	if (err) {
		log_info("kernel wake off (%s: the agent lacks CAP_NET_ADMIN, or the kernel "
			 "SOCK_DESTROY): clients' blocking reads wait in slices",
			 strerror(err));
		return 0;
	}
	struct timeval tv = {0, WAKE_TICK_MS * 1000};
	a->wake.timer = event_new(a->base, -1, EV_PERSIST, on_tick, a);
	if (!a->wake.timer)
		return -1;
	a->wake.tick = tv;
	a->wake.on = 1;
	flare_tbl_writer_flags(&a->writer, FLARE_TBL_FLAG_WAKE, 1);
	log_info(
	    "kernel wake on: condemned connections of blocked clients are ended (SOCK_DESTROY)");
	return 0;
}

void wake_stop(struct agent *a)
{
	if (a->wake.timer)
		event_free(a->wake.timer);
	a->wake.timer = NULL;
	free(a->wake.reps);
	a->wake.reps = NULL;
	a->wake.n_reps = 0;
}

void wake_rank(struct agent *a, const struct fw_rank *r)
{
	uint64_t now = flare_monotonic_ns();
	if (r->full) {
		struct wake_replica *reps = calloc((size_t)r->n_replicas + 1, sizeof(*reps));
		if (!reps)
			return;
		for (uint32_t i = 0; i < r->n_replicas && i < (uint32_t)a->wake.n_reps; i++)
			reps[i] = a->wake.reps[i]; /* the same index: keep when it died */
		free(a->wake.reps);
		a->wake.reps = reps;
		a->wake.n_reps = (int)r->n_replicas;
	}
	for (uint32_t i = 0; i < r->n_replicas; i++) {
		const struct fw_rank_replica *q = &r->replicas[i];
		if (q->idx >= (uint32_t)a->wake.n_reps)
			continue;
		struct wake_replica *w = &a->wake.reps[q->idx];
		if (w->alive && !q->alive)
			w->dead_since_ns = now;
		else if (!q->alive && !w->dead_since_ns)
			w->dead_since_ns = now; /* dead when first heard of */
		w->alive = q->alive;
		w->reason = q->reason;
		w->addr = q->addr;
	}
	if (a->wake.on && condemnable(a, now) && !evtimer_pending(a->wake.timer, NULL))
		evtimer_add(a->wake.timer, &a->wake.tick);
}
