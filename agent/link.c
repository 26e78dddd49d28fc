/* The agent's subscription: HELLO, a full table, then deltas and
 * heartbeats. A frame the table writer refuses (it would corrupt what
 * clients read) drops the subscription, and the next one starts with a
 * fresh full table. */
#include "agent.h"
#include "clock.h"

#include "log.h"
#include "table.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void schedule_retry(struct agent *a);

static void on_connect(struct evconn *c)
{
	struct fw_msg hello = {.type = FW_HELLO};
	hello.u.hello.role = FW_ROLE_AGENT;
	hello.u.hello.pid = (uint32_t)getpid();
	gethostname(hello.u.hello.name, sizeof(hello.u.hello.name) - 1);
	evconn_send(c, &hello);
	log_debug("%s: connected, subscribing", c->peer);
}

static void on_msg(struct evconn *c, struct fw_msg *m)
{
	struct agent *a = c->owner;
	const char *why = NULL;
	switch (m->type) {
	case FW_RANK:
		if (m->u.rank.full) {
			if (flare_tbl_write_full(&a->writer, &m->u.rank, &why) < 0)
				break;
			a->fulls++;
			if (!a->subscribed)
				log_info(
				    "%s: subscribed, table %s published (gen %llu, %u services, "
				    "%u replicas)",
				    c->peer, a->writer.name, (unsigned long long)m->u.rank.gen,
				    m->u.rank.n_services, m->u.rank.n_replicas);
			a->subscribed = 1;
			a->tries = 0;
			a->backoff_ms = a->cfg->reconnect_min_ms;
		} else {
			if (!a->subscribed) {
				why = "delta before the full table";
				break;
			}
			if (flare_tbl_write_delta(&a->writer, &m->u.rank, &why) < 0)
				break;
			a->deltas++;
			log_debug("gen %llu: %u hosts, %u services, %u replicas changed",
				  (unsigned long long)m->u.rank.gen, m->u.rank.n_hosts,
				  m->u.rank.n_services, m->u.rank.n_replicas);
		}
		return;
	case FW_HEARTBEAT:
		if (a->subscribed)
			flare_tbl_touch(&a->writer);
		return;
	case FW_QUERY_RESP: query_answer(a, m); return;
	case FW_ERROR: log_error("%s: manager says '%s'", c->peer, m->u.text.text); return;
	default: why = "unexpected frame type"; break;
	}
	if (why) {
		a->rejected++;
		log_error("%s: ranking rejected (%s); resubscribing for a full table", c->peer,
			  why);
		evconn_close(c, "bad ranking");
	}
}

static void on_close(struct evconn *c, const char *why)
{
	struct agent *a = c->owner;
	if (a->c != c)
		return;
	a->c = NULL;
	query_link_lost(a);
	if (a->subscribed)
		log_warn("%s: lost (%s); keeping the last table, reconnecting", c->peer, why);
	else
		log_debug("%s: %s", c->peer, why);
	a->subscribed = 0;
	a->current = (a->current + 1) % a->cfg->n_managers;
	schedule_retry(a);
}

static const struct evconn_ops ops = {
    .on_connect = on_connect, .on_msg = on_msg, .on_close = on_close};

static void try_connect(struct agent *a)
{
	struct sockaddr_storage ss;
	char peer[96], s[FLARE_ADDR_STRLEN];
	const struct flare_addr *addr = &a->cfg->managers[a->current];
	socklen_t len = flare_addr_to_sockaddr(addr, &ss);
	snprintf(peer, sizeof(peer), "manager %s", flare_addr_format(addr, s, sizeof(s)));
	a->c = evconn_connect(a->base, (struct sockaddr *)&ss, (int)len, peer,
			      a->cfg->heartbeat_timeout_ms, &ops, a);
	if (!a->c) {
		a->current = (a->current + 1) % a->cfg->n_managers;
		schedule_retry(a);
	}
}

/* Every address once without waiting, then exponential backoff. */
static void schedule_retry(struct agent *a)
{
	int ms = 0;
	if (++a->tries >= a->cfg->n_managers) {
		ms = a->backoff_ms;
		a->backoff_ms = a->backoff_ms * 2 > a->cfg->reconnect_max_ms
				    ? a->cfg->reconnect_max_ms
				    : a->backoff_ms * 2;
	}
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(a->retry, &tv);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	try_connect(arg);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	(void)fd;
	(void)what;
	if (!a->c || !a->c->connected)
		return;
	struct fw_msg hb = {.type = FW_HEARTBEAT};
	hb.u.heartbeat.time_ns = flare_monotonic_ns();
	evconn_send(a->c, &hb);
}

int agent_start(struct agent *a)
{
	a->backoff_ms = a->cfg->reconnect_min_ms;
	a->retry = evtimer_new(a->base, on_retry, a);
	a->hb_timer = event_new(a->base, -1, EV_PERSIST, on_heartbeat, a);
	if (!a->retry || !a->hb_timer)
		return -1;
	int ms = a->cfg->heartbeat_interval_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(a->hb_timer, &tv);
	try_connect(a);
	return 0;
}

void agent_stop(struct agent *a)
{
	if (a->c) {
		struct evconn *c = a->c;
		a->c = NULL;
		evconn_close(c, "agent stopping");
	}
	if (a->retry)
		event_free(a->retry);
	if (a->hb_timer)
		event_free(a->hb_timer);
	a->retry = a->hb_timer = NULL;
}
