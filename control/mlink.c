#include "mlink.h"

#include "clock.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static void schedule_retry(struct mlink *l);

static struct mlink *link_of(struct evconn *c) { return c->owner; }

/* A daemon that reaches no manager says so at the default level: at the
 * first failed attempt, then at most every UNREACHED_WARN_NS while it
 * lasts, with how long and how many attempts. */
#define UNREACHED_WARN_NS 30000000000ull

static void note_failure(struct mlink *l, const char *why)
{
	uint64_t now = flare_monotonic_ns();
	if (!l->down_since_ns)
		l->down_since_ns = now;
	l->failures++;
	if (l->warned_ns && now - l->warned_ns < UNREACHED_WARN_NS)
		return;
	l->warned_ns = now;
	log_warn("%s: %s; no manager reached for %.0f s (%d attempt(s) over %d address(es)), "
		 "retrying",
		 l->peer, why, (double)(now - l->down_since_ns) / 1e9, l->failures, l->n_addrs);
}

static void on_connect(struct evconn *c)
{
	struct mlink *l = link_of(c);
	struct fw_msg hello = {.type = FW_HELLO};
	hello.u.hello = l->hello;
	evconn_send(c, &hello);
	l->up = 1;
	if (l->warned_ns)
		log_info("%s: connected, after %d failed attempt(s)", l->peer, l->failures);
	l->down_since_ns = l->warned_ns = 0;
	l->failures = 0;
	if (l->ops->on_up)
		l->ops->on_up(l);
}

static void on_msg(struct evconn *c, struct fw_msg *m)
{
	struct mlink *l = link_of(c);
	l->ops->on_msg(l, m);
}

static void on_close(struct evconn *c, const char *why)
{
	struct mlink *l = link_of(c);
	if (l->c != c)
		return; /* mlink_stop let go of it */
	int was_up = l->up;
	l->c = NULL;
	l->up = 0;
	if (l->ops->on_down)
		l->ops->on_down(l, why, was_up);
	if (!was_up)
		note_failure(l, why);
	l->current = (l->current + 1) % l->n_addrs;
	schedule_retry(l);
}

static const struct evconn_ops ops = {
    .on_connect = on_connect, .on_msg = on_msg, .on_close = on_close};

static void try_connect(struct mlink *l)
{
	struct sockaddr_storage ss;
	char s[FLARE_ADDR_STRLEN];
	const struct flare_addr *addr = &l->addrs[l->current];
	socklen_t len = flare_addr_to_sockaddr(addr, &ss);
	snprintf(l->peer, sizeof(l->peer), "manager %s", flare_addr_format(addr, s, sizeof(s)));
	l->c = evconn_connect(l->base, (struct sockaddr *)&ss, (int)len, l->source, l->peer,
			      l->cfg->heartbeat_timeout_ms, &ops, l);
	if (l->c && l->cfg->auth && evconn_auth(l->c, l->cfg->auth, 1) < 0) {
		log_error("%s: cannot start authentication", l->peer);
		evconn_close(l->c, "no authentication"); /* on_close retries */
		return;
	}
	if (!l->c) {
		note_failure(l, "cannot connect");
		l->current = (l->current + 1) % l->n_addrs;
		schedule_retry(l);
	}
}

/* Every address once without waiting, then exponential backoff. */
static void schedule_retry(struct mlink *l)
{
	int ms = 0;
	if (++l->tries >= l->n_addrs) {
		ms = l->backoff_ms;
		l->backoff_ms = l->backoff_ms * 2 > l->cfg->reconnect_max_ms
				    ? l->cfg->reconnect_max_ms
				    : l->backoff_ms * 2;
	}
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(l->retry, &tv);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	try_connect(arg);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *l = arg;
	(void)fd;
	(void)what;
	if (!l->up)
		return;
	struct fw_msg hb = {.type = FW_HEARTBEAT};
	hb.u.heartbeat.seq = l->hb_seq ? *l->hb_seq : 0;
	hb.u.heartbeat.time_ns = flare_monotonic_ns();
	evconn_send(l->c, &hb);
}

int mlink_start(struct mlink *l)
{
	l->backoff_ms = l->cfg->reconnect_min_ms;
	l->retry = evtimer_new(l->base, on_retry, l);
	l->hb_timer = event_new(l->base, -1, EV_PERSIST, on_heartbeat, l);
	if (!l->retry || !l->hb_timer || l->n_addrs < 1)
		return -1;
	int ms = l->cfg->heartbeat_interval_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(l->hb_timer, &tv);
	try_connect(l);
	return 0;
}

void mlink_stop(struct mlink *l)
{
	if (l->c) {
		struct evconn *c = l->c;
		l->c = NULL; /* on_close finds it let go: no reconnect */
		l->up = 0;
		evconn_close(c, "stopping");
	}
	if (l->retry)
		event_free(l->retry);
	if (l->hb_timer)
		event_free(l->hb_timer);
	l->retry = l->hb_timer = NULL;
}

void mlink_good(struct mlink *l)
{
	l->tries = 0;
	l->backoff_ms = l->cfg->reconnect_min_ms;
}

int mlink_send(struct mlink *l, const struct fw_msg *m)
{
	return l->up ? evconn_send(l->c, m) : -1;
}

int mlink_send_raw(struct mlink *l, const void *data, size_t len)
{
	return l->up ? evconn_send_raw(l->c, data, len) : -1;
}

void mlink_drop(struct mlink *l, const char *why)
{
	if (l->c)
		evconn_close(l->c, why);
}

const char *mlink_peer(const struct mlink *l) { return l->peer[0] ? l->peer : "manager"; }
