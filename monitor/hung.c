/* The replicas' TCP connections as the kernel sees them (sock_diag), read
 * once per probe interval for two things.
 *
 * Request rates, for load balancing: the data segments each connection
 * received since the last pass (tcp_info's data_segs_in). A request/reply
 * client sends one segment per request, so this is its request rate,
 * measured without any change to the server; pipelined requests that share
 * a segment count once. Per connection too, with the client's address,
 * for services that rebind on demand (the manager decides which move).
 *
 * Replica processes that stop reading their sockets (a deadlock, a stuck
 * disk, a GC gone wrong): alive and running, so neither the registration
 * nor the process state says anything. The kernel does: for every TCP
 * connection to a replica's port, sock_diag gives the bytes received
 * (tcp_info) and the bytes still unread (the receive queue), so the bytes
 * the process consumed. A replica whose connections hold unread bytes and
 * none of which consumed a byte for monitor.hung_ms is hung: dead until
 * it reads again. Idle servers (nothing unread) are never hung. */
#include "monitor.h"

#include "clock.h"
#include "log.h"
#include "sockdiag.h"

#include <linux/tcp.h>

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* the kernel's TCP states (include/net/tcp_states.h) */
#define ST_ESTABLISHED 1
#define ST_CLOSE_WAIT 8

#define MAX_TRACKED 4096 /* connections remembered from one pass to the next */

struct seen {
	uint32_t inode;
	uint32_t segs; /* data segments received */
	uint64_t consumed;
};

struct pass {
	struct monitor *m;
	uint64_t now;
	struct seen *next;
	int n_next;
	struct fw_report_conn *conns;
	int n_conns;
};

static struct seen *prev_seen;
static int n_prev;

static int by_inode(const void *a, const void *b)
{
	uint32_t x = ((const struct seen *)a)->inode, y = ((const struct seen *)b)->inode;
	return x < y ? -1 : x > y;
}

static int replica_at_port(struct monitor *m, uint16_t port)
{
	for (int i = 0; i < m->n_reps; i++)
		if (m->reps[i].registrations > 0 &&
		    m->cfg->replicas[m->reps[i].cfg].addr.port == port)
			return i;
	return -1;
}

static void one_socket(void *arg, const struct inet_diag_msg *d, const struct tcp_info *ti,
		       size_t ti_len)
{
	struct pass *p = arg;
	int rep = replica_at_port(p->m, ntohs(d->id.idiag_sport));
	if (rep < 0 || !ti ||
	    ti_len <
		offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti->tcpi_bytes_received))
		return;
	struct mon_replica *r = &p->m->reps[rep];
	/* a peer's FIN takes a sequence number: in CLOSE_WAIT it is counted
	 * in the receive queue (and sometimes in bytes_received), but it is no
	 * request left unread (a client that connected and went away before
	 * the server accepted it) */
	uint32_t unread = d->idiag_rqueue;
	if (d->idiag_state == ST_CLOSE_WAIT && unread > 0)
		unread--;
	uint64_t consumed = ti->tcpi_bytes_received - d->idiag_rqueue;
	struct seen key = {.inode = d->idiag_inode}, *old = NULL;
	if (prev_seen)
		old = bsearch(&key, prev_seen, (size_t)n_prev, sizeof(key), by_inode);
	if (old && consumed > old->consumed)
		r->hung_progress = 1;
	r->hung_unread += unread;
	/* a connection the last pass did not see opened since then: all its
	 * segments are new (on the first pass nothing is known: none are) */
	uint32_t segs = ti->tcpi_data_segs_in;
	uint32_t fresh = old ? segs - old->segs : prev_seen ? segs : 0;
	r->segs += fresh;
	const struct flare_config *c = p->m->cfg;
	if (c->services[c->replicas[r->cfg].service].binding == FLARE_BINDING_ON_DEMAND &&
	    p->n_conns < MAX_TRACKED)
		p->conns[p->n_conns++] = (struct fw_report_conn){
		    .replica = (uint16_t)rep, .peer = sockdiag_peer(d), .rate_milli = fresh};
	if (p->n_next < MAX_TRACKED)
		p->next[p->n_next++] = (struct seen){d->idiag_inode, segs, consumed};
}

/* One sock_diag dump of a family's connections to the replicas' ports:
 * the kernel filters them by port, so a host's other connections cost
 * the pass nothing */
static int dump(struct pass *p, int family)
{
	uint32_t states = (1u << ST_ESTABLISHED) | (1u << ST_CLOSE_WAIT);
	uint16_t ports[SOCKDIAG_MAX_PORTS];
	int n = 0;
	for (int i = 0; i < p->m->n_reps; i++) {
		if (p->m->reps[i].registrations <= 0)
			continue;
		uint16_t port = p->m->cfg->replicas[p->m->reps[i].cfg].addr.port;
		int seen = 0;
		for (int k = 0; k < n && !seen; k++)
			seen = ports[k] == port;
		if (seen)
			continue;
		if (n == SOCKDIAG_MAX_PORTS) /* more than a filter holds: every socket */
			return sockdiag_dump(family, states, one_socket, p);
		ports[n++] = port;
	}
	return sockdiag_dump_ports(family, states, ports, n, 0, one_socket, p);
}

/* Segment counts over the pass's interval become rates (x1000 per second) */
static void rates(struct monitor *m, struct pass *p)
{
	uint64_t dt = m->traffic_ms && p->now > m->traffic_ms ? p->now - m->traffic_ms : 0;
	m->traffic_ms = p->now;
	for (int i = 0; i < m->n_reps; i++) {
		m->reps[i].rate = dt ? (double)m->reps[i].segs * 1000.0 / (double)dt : 0;
		m->reps[i].segs = 0;
	}
	for (int i = 0; i < p->n_conns; i++)
		p->conns[i].rate_milli =
		    dt ? (uint32_t)((uint64_t)p->conns[i].rate_milli * 1000000ull / dt) : 0;
	free(m->conns);
	m->conns = p->conns;
	m->n_conns = p->n_conns;
}

void hung_check(struct monitor *m)
{
	static int failed_once;
	int limit = m->cfg->monitor_hung_ms;
	if (limit <= 0 && !m->want_traffic)
		return;
	struct pass p = {.m = m,
			 .now = flare_monotonic_ms(),
			 .next = malloc(MAX_TRACKED * sizeof(struct seen)),
			 .conns = malloc(MAX_TRACKED * sizeof(struct fw_report_conn))};
	if (!p.next || !p.conns) {
		free(p.next);
		free(p.conns);
		return;
	}
	for (int i = 0; i < m->n_reps; i++)
		m->reps[i].hung_unread = m->reps[i].hung_progress = 0;
	if (dump(&p, AF_INET) < 0 || dump(&p, AF_INET6) < 0) {
		if (!failed_once++)
			log_warn("sock_diag: %s: hung replicas and request rates cannot be seen",
				 errno ? strerror(errno) : "no answer");
		free(p.next);
		free(p.conns);
		return;
	}
	qsort(p.next, (size_t)p.n_next, sizeof(*p.next), by_inode);
	free(prev_seen);
	prev_seen = p.next;
	n_prev = p.n_next;
	rates(m, &p);
	/* a pass that came late (this monitor was not scheduled) did not
	 * watch the time in between: a stall is counted from now, never
	 * across the monitor's own absence */
	static uint64_t last_pass;
	int late = last_pass && p.now - last_pass > 2 * (uint64_t)m->cfg->probe_interval_ms + 50;
	last_pass = p.now;
	if (limit <= 0)
		return;
	for (int i = 0; i < m->n_reps; i++) {
		struct mon_replica *r = &m->reps[i];
		if (!r->hung_unread || r->hung_progress || !r->registrations)
			r->stalled_since = 0; /* nothing waits, or it reads */
		else if (!r->stalled_since || late)
			r->stalled_since = p.now;
		int hung = r->stalled_since && p.now - r->stalled_since >= (uint64_t)limit;
		if (hung != r->hung)
			log_info("replica %s: %s", m->cfg->replicas[r->cfg].name,
				 hung ? "its process stopped reading its connections (hung)"
				      : "its process reads again");
		r->hung = hung;
	}
}
