/* Bounds on what strangers can make the manager hold: connections in all,
 * and connections that have not said HELLO yet (with a key: not proved
 * they hold one), in all and per peer address. A connection over a bound
 * is closed as it arrives; memory before HELLO is further bounded per
 * connection by evconn_guard (small frames, a handshake deadline). */
#include "manager.h"

#include "clock.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

struct addr_count {
	char ip[FLARE_ADDR_STRLEN];
	int n;
	UT_hash_handle hh;
};

struct conn_limits {
	int conns, pending;
	struct addr_count *by_addr;
	uint64_t last_warn_ns;
};

static void ip_of(const struct sockaddr *sa, int len, char *out, size_t n)
{
	struct flare_addr a;
	if (flare_addr_from_sockaddr(sa, (socklen_t)len, &a) < 0) {
		snprintf(out, n, "local");
		return;
	}
	a.port = 0; /* one budget per address, whatever the source port */
	flare_addr_format(&a, out, n);
}

static void warn_refused(struct manager *m, const char *ip, const char *why)
{
	uint64_t now = flare_monotonic_ns();
	m->conns_refused++;
	if (now - m->limits->last_warn_ns < 1000000000ull)
		return; /* once a second under a flood */
	m->limits->last_warn_ns = now;
	log_warn("%s: connection refused: %s (%llu refused so far)", ip, why,
		 (unsigned long long)m->conns_refused);
}

void *limits_admit(struct manager *m, const struct sockaddr *sa, int len)
{
	struct conn_limits *l = m->limits;
	const struct flare_config *cfg = m->cfg;
	char ip[FLARE_ADDR_STRLEN];
	ip_of(sa, len, ip, sizeof(ip));
	struct addr_count *e = NULL;
	HASH_FIND_STR(l->by_addr, ip, e);
	const char *why = l->conns >= cfg->max_connections ? "manager.max_connections reached"
			  : l->pending >= cfg->max_pending ? "manager.max_pending reached"
			  : e && e->n >= cfg->max_pending_per_address
			      ? "manager.max_pending_per_address reached"
			      : NULL;
	if (why) {
		warn_refused(m, ip, why);
		return NULL;
	}
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return NULL;
		snprintf(e->ip, sizeof(e->ip), "%s", ip);
		HASH_ADD_STR(l->by_addr, ip, e);
	}
	e->n++;
	l->pending++;
	l->conns++;
	return e;
}

static void unpend(struct conn_limits *l, struct addr_count *e)
{
	l->pending--;
	if (--e->n == 0) {
		HASH_DEL(l->by_addr, e);
		free(e);
	}
}

void limits_established(struct manager *m, struct evconn *c)
{
	if (c->tag)
		unpend(m->limits, c->tag);
	c->tag = NULL;
}

void limits_closed(struct manager *m, void *tag)
{
	if (tag)
		unpend(m->limits, tag);
	m->limits->conns--;
}

int limits_pending(const struct manager *m) { return m->limits ? m->limits->pending : 0; }
int limits_connections(const struct manager *m) { return m->limits ? m->limits->conns : 0; }

int limits_init(struct manager *m)
{
	m->limits = calloc(1, sizeof(*m->limits));
	return m->limits ? 0 : -1;
}

void limits_free(struct manager *m)
{
	if (!m->limits)
		return;
	struct addr_count *e, *tmp;
	HASH_ITER(hh, m->limits->by_addr, e, tmp)
	{
		HASH_DEL(m->limits->by_addr, e);
		free(e);
	}
	free(m->limits);
	m->limits = NULL;
}
