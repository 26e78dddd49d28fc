/* The manager's connections: monitors report, agents subscribe, flarectl
 * asks for status. Every connection must say HELLO first and is closed
 * when silent past the heartbeat timeout. */
#include "clock.h"
#include "manager.h"

#include "auth.h"
#include "daemon.h"
#include "log.h"
#include "table.h"

#include <stdlib.h>
#include <string.h>

static void conn_unlink(struct manager *m, struct evconn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (m->conns == c)
		m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

static int host_of(struct evconn *c) { return (int)(intptr_t)c->data - 1; }

static void on_close(struct evconn *c, const char *why)
{
	struct manager *m = c->owner;
	conn_unlink(m, c);
	limits_closed(m, c->tag);
	if (c->auth_rejected)
		m->auth_rejected++;
	if (c->role == FW_ROLE_MONITOR && host_of(c) >= 0) {
		int h = host_of(c);
		if (m->hosts[h].monitor == c) {
			m->hosts[h].monitor = NULL;
			state_host_lost(m, h, why);
		}
	} else if (c->role == FW_ROLE_AGENT) {
		m->n_agents--;
		log_info("%s: agent gone (%s)", c->peer, why);
	} else if (c->role != FW_ROLE_CTL) {
		log_debug("%s: %s", c->peer, why);
	}
}

static void send_error(struct evconn *c, const char *text)
{
	struct fw_msg e = {.type = FW_ERROR};
	e.u.text.text = (char *)text;
	evconn_send(c, &e);
}

/* An agent's connection carries 1 in c->data once its full table went out:
 * deltas and heartbeats go to those only. */
static int subscribed(const struct evconn *c) { return c->role == FW_ROLE_AGENT && c->data; }

static void subscribe(struct manager *m, struct evconn *c)
{
	struct fw_buf b = {0};
	if (state_encode_full(m, &b) == 0 && evconn_send_raw(c, b.data, b.len) == 0) {
		c->data = (void *)1;
		log_info("%s: subscribed, full table sent (gen %llu)", c->peer,
			 (unsigned long long)m->gen);
	}
	state_buf_free(&b);
}

/* A manager that just started has every host dead until its monitors
 * report: publishing that would mark every replica dead in the agents'
 * tables (an agent moves here when the manager it followed dies). So it
 * serves subscriptions once every host's monitor has reported, or two
 * heartbeat timeouts after it started (a host whose monitor is gone
 * stays dead). Managers that heard the same reports rank the same. */
static void check_warm(struct manager *m, uint64_t now)
{
	if (m->warm)
		return;
	int all = 1;
	for (int h = 0; h < m->cfg->n_hosts && all; h++)
		all = m->hosts[h].reports > 0;
	if (!all && now - m->start_ns < 2ull * (uint64_t)m->cfg->heartbeat_timeout_ms * 1000000ull)
		return;
	m->warm = 1;
	log_info("caught up (%s): serving agents", all ? "every monitor reported" : "timeout");
	state_rerank(m, "caught up");
	for (struct evconn *c = m->conns; c; c = c->next)
		if (c->role == FW_ROLE_AGENT && !c->data)
			subscribe(m, c);
}

static void on_hello(struct manager *m, struct evconn *c, const struct fw_hello *h)
{
	if (c->role) {
		log_warn("%s: second HELLO, closing", c->peer);
		evconn_close(c, "protocol error");
		return;
	}
	/* a key is one role's (and a monitor's, one host's): the HELLO must
	 * be what the key was made for */
	if (c->auth && (h->role != c->auth->role ||
			(h->role == FW_ROLE_MONITOR && strcmp(h->name, c->auth->name) != 0))) {
		log_warn("%s: HELLO as %s%s%s with the key of %s%s%s, closing", c->peer,
			 auth_role_name(h->role), h->role == FW_ROLE_MONITOR ? " " : "",
			 h->role == FW_ROLE_MONITOR ? h->name : "", auth_role_name(c->auth->role),
			 c->auth->name[0] ? " " : "", c->auth->name);
		m->frames_rejected++;
		send_error(c, "not what this key is for");
		evconn_close(c, "role refused");
		return;
	}
	limits_established(m, c);
	switch (h->role) {
	case FW_ROLE_MONITOR: {
		int host = flare_config_host_index(m->cfg, h->name);
		if (host < 0) {
			log_warn("%s: monitor for unknown host '%s', closing", c->peer, h->name);
			send_error(c, "unknown host");
			evconn_close(c, "unknown host");
			return;
		}
		c->role = FW_ROLE_MONITOR;
		c->data = (void *)(intptr_t)(host + 1);
		snprintf(c->peer + strlen(c->peer), sizeof(c->peer) - strlen(c->peer),
			 " (monitor %s)", h->name);
		if (m->hosts[host].monitor) {
			log_warn("%s: replaces the previous monitor of %s", c->peer, h->name);
			struct evconn *old = m->hosts[host].monitor;
			m->hosts[host].monitor = NULL;
			evconn_close(old, "replaced");
		}
		m->hosts[host].monitor = c;
		log_info("%s: connected", c->peer);
		break;
	}
	case FW_ROLE_AGENT:
		c->role = FW_ROLE_AGENT;
		m->n_agents++;
		snprintf(c->peer + strlen(c->peer), sizeof(c->peer) - strlen(c->peer), " (agent)");
		if (m->warm)
			subscribe(m, c);
		else
			log_info("%s: subscription held until this manager has heard its monitors",
				 c->peer);
		break;
	case FW_ROLE_CTL: c->role = FW_ROLE_CTL; break;
	default:
		log_warn("%s: role %d cannot talk to a manager, closing", c->peer, h->role);
		evconn_close(c, "bad role");
	}
}

/* A death goes out at once; what may wait, once per debounce */
static void on_report(struct manager *m, int host, const struct fw_report *r)
{
	int what = state_apply_report(m, host, r);
	if ((what & STATE_URGENT) | balance_plan(m, flare_monotonic_ns()))
		state_rerank(m, "report");
	else if (what)
		state_rerank_soon(m);
}
static void on_msg(struct evconn *c, struct fw_msg *msg)
{
	struct manager *m = c->owner;
	if (msg->type == FW_HELLO) {
		on_hello(m, c, &msg->u.hello);
		return;
	}
	if (!c->role) {
		log_warn("%s: %s before HELLO, closing", c->peer, fw_type_name(msg->type));
		m->frames_rejected++;
		evconn_close(c, "protocol error");
		return;
	}
	switch (msg->type) {
	case FW_HEARTBEAT: break; /* receiving it reset the idle timer */
	case FW_REPORT:
		if (c->role != FW_ROLE_MONITOR)
			goto unexpected;
		if (strcmp(msg->u.report.host, m->cfg->hosts[host_of(c)].name) != 0) {
			log_warn(
			    "%s: report for host '%s' on the connection of another host, ignored",
			    c->peer, msg->u.report.host);
			break;
		}
		on_report(m, host_of(c), &msg->u.report);
		check_warm(m, flare_monotonic_ns());
		break;
	case FW_STATUS_REQ: {
		if (c->role != FW_ROLE_CTL)
			goto unexpected;
		struct fw_msg r = {.type = FW_STATUS_RESP};
		r.u.text.format = msg->u.text.format;
		r.u.text.text = status_render(m, msg->u.text.format == 1);
		if (!r.u.text.text) {
			evconn_close(c, "out of memory");
			break;
		}
		evconn_send(c, &r);
		size_t len = strlen(r.u.text.text);
		free(r.u.text.text);
		state_trim_after(len); /* a big deployment's status is megabytes */
		break;
	}
	case FW_COMMAND: {
		if (c->role != FW_ROLE_CTL)
			goto unexpected;
		int ok = 0;
		struct fw_msg r = {.type = FW_STATUS_RESP};
		r.u.text.text = command_run(m, msg->u.text.text, &ok);
		if (!r.u.text.text) {
			evconn_close(c, "out of memory");
			break;
		}
		if (!ok)
			r.type = FW_ERROR;
		evconn_send(c, &r);
		free(r.u.text.text);
		break;
	}
	case FW_QUERY_REQ: {
		if (c->role != FW_ROLE_AGENT && c->role != FW_ROLE_CTL)
			goto unexpected;
		struct fw_msg r = {.type = FW_QUERY_RESP};
		r.u.query = msg->u.query;
		state_query(m, &r.u.query);
		evconn_send(c, &r);
		break;
	}
	case FW_ERROR: log_warn("%s: says '%s'", c->peer, msg->u.text.text); break;
	default:
	unexpected:
		m->frames_rejected++;
		log_warn("%s: unexpected %s frame, closing", c->peer, fw_type_name(msg->type));
		evconn_close(c, "protocol error");
	}
}

static const struct evconn_ops ops = {.on_msg = on_msg, .on_close = on_close};

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct manager *m = arg;
	char peer[64];
	(void)l;
	describe_peer(sa, len, peer, sizeof(peer));
	void *tag = limits_admit(m, sa, len);
	if (!tag) {
		evutil_closesocket(fd); /* over a bound: nothing made for it */
		return;
	}
	struct evconn *c = evconn_accept(m->base, fd, peer, 0, &ops, m);
	if (!c) {
		log_error("%s: cannot set up the connection", peer);
		limits_closed(m, tag);
		return;
	}
	c->tag = tag;
	c->next = m->conns;
	if (m->conns)
		m->conns->prev = c;
	m->conns = c;
	if (evconn_guard(c, m->cfg->handshake_timeout_ms, m->cfg->heartbeat_timeout_ms) < 0) {
		log_error("%s: cannot set up the connection", peer);
		evconn_close(c, "no timer");
		return;
	}
	if (m->cfg->auth && evconn_auth(c, m->cfg->auth, 0) < 0) {
		log_error("%s: cannot start authentication", peer);
		evconn_close(c, "no authentication");
	}
}

void server_broadcast_agents(struct manager *m, const void *frame, size_t len)
{
	for (struct evconn *c = m->conns, *next; c; c = next) {
		next = c->next;
		if (subscribed(c) && evconn_send_raw(c, frame, len) == 0)
			evconn_flush(c);
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct manager *m = arg;
	(void)fd;
	(void)what;
	uint64_t now = flare_monotonic_ns();
	struct fw_msg hb = {.type = FW_HEARTBEAT};
	hb.u.heartbeat.seq = m->gen;
	hb.u.heartbeat.time_ns = now;
	for (struct evconn *c = m->conns, *next; c; c = next) {
		next = c->next;
		if (subscribed(c) || c->role == FW_ROLE_MONITOR)
			evconn_send(c, &hb);
	}
	check_warm(m, now);
	if (now - m->last_rank_ns >= (uint64_t)m->cfg->rank_interval_ms * 1000000ull)
		state_rerank(m, "periodic");
}

static void on_debounce(evutil_socket_t fd, short what, void *arg)
{
	struct manager *m = arg;
	(void)fd;
	(void)what;
	m->rerank_due = 0;
	state_rerank(m, "report");
}

int server_start(struct manager *m)
{
	if (!m->limits && limits_init(m) < 0)
		return -1;
	m->listener = listen_tcp(m->base, &m->addr, on_accept, m);
	if (!m->listener)
		return -1;
	m->tick = event_new(m->base, -1, EV_PERSIST, on_tick, m);
	m->debounce = evtimer_new(m->base, on_debounce, m);
	if (!m->tick || !m->debounce)
		return -1;
	int ms = m->cfg->heartbeat_interval_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(m->tick, &tv);
	return 0;
}

void server_stop(struct manager *m)
{
	if (m->tick)
		event_free(m->tick);
	m->tick = NULL;
	if (m->debounce)
		event_free(m->debounce);
	m->debounce = NULL;
	m->rerank_due = 0;
	if (m->listener)
		evconnlistener_free(m->listener);
	m->listener = NULL;
	while (m->conns) {
		struct evconn *c = m->conns;
		c->role = 0; /* shutting down: no host-lost re-ranking */
		evconn_close(c, "manager stopping");
	}
}
