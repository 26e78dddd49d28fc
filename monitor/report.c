/* The monitor's links to every manager: HELLO, then a report at every
 * report interval and at once on a liveness change or a utilization move
 * beyond the threshold; heartbeats keep a quiet link alive. A lost manager
 * is reconnected with exponential backoff. */
#include "monitor.h"

#include "clock.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void link_connect(struct monitor *m, int i);

void report_send(struct monitor *m)
{
	struct fw_report_replica reps[m->n_reps > 0 ? m->n_reps : 1];
	struct fw_msg msg = {.type = FW_REPORT};
	struct fw_report *r = &msg.u.report;
	snprintf(r->host, sizeof(r->host), "%s", m->cfg->hosts[m->host].name);
	r->seq = ++m->seq;
	r->util_ppm = flare_ppm(m->utilization);
	r->n_replicas = (uint32_t)m->n_reps;
	r->replicas = reps;
	for (int i = 0; i < m->n_reps; i++) {
		const struct mon_replica *p = &m->reps[i];
		memset(&reps[i], 0, sizeof(reps[i]));
		snprintf(reps[i].name, sizeof(reps[i].name), "%s", m->cfg->replicas[p->cfg].name);
		reps[i].alive = (uint8_t)p->alive;
		reps[i].registered = p->registrations > 0;
		reps[i].pid = p->pid;
		reps[i].load_ppm = p->load < 0 ? FW_LOAD_UNKNOWN : flare_ppm(p->load);
	}
	struct fw_buf b = {0};
	if (fw_encode_report(&b, r) == 0)
		for (int i = 0; i < m->cfg->n_managers; i++)
			if (m->links[i].up)
				evconn_send_raw(m->links[i].c, b.data, b.len);
	fw_buf_free(&b);
	m->reported_util = m->utilization;
	m->last_report_ns = flare_monotonic_ns();
	m->liveness_dirty = 0;
}

static struct manager_link *link_of(struct monitor *m, struct evconn *c)
{
	for (int i = 0; i < m->cfg->n_managers; i++)
		if (m->links[i].c == c)
			return &m->links[i];
	return NULL;
}

static void on_connect(struct evconn *c)
{
	struct monitor *m = c->owner;
	struct manager_link *l = link_of(m, c);
	struct fw_msg hello = {.type = FW_HELLO};
	hello.u.hello.role = FW_ROLE_MONITOR;
	hello.u.hello.pid = (uint32_t)getpid();
	snprintf(hello.u.hello.name, sizeof(hello.u.hello.name), "%s", m->cfg->hosts[m->host].name);
	evconn_send(c, &hello);
	l->up = 1;
	l->backoff_ms = m->cfg->reconnect_min_ms;
	log_info("%s: connected", c->peer);
	report_send(m);
}

static void on_msg(struct evconn *c, struct fw_msg *msg)
{
	if (msg->type == FW_ERROR) {
		log_error("%s: manager refused us: %s", c->peer, msg->u.text.text);
		return;
	}
	if (msg->type != FW_HEARTBEAT)
		log_debug("%s: ignoring %s frame", c->peer, fw_type_name(msg->type));
}

static void on_retry(evutil_socket_t fd, short what, void *arg);

static void on_close(struct evconn *c, const char *why)
{
	struct monitor *m = c->owner;
	struct manager_link *l = link_of(m, c);
	if (!l)
		return;
	if (l->up)
		log_warn("%s: lost (%s), reconnecting", c->peer, why);
	else
		log_debug("%s: %s, retrying in %d ms", c->peer, why, l->backoff_ms);
	l->c = NULL;
	l->up = 0;
	struct timeval tv = {l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000};
	event_add(l->retry, &tv);
	l->backoff_ms = l->backoff_ms * 2 > m->cfg->reconnect_max_ms ? m->cfg->reconnect_max_ms
								     : l->backoff_ms * 2;
}

static const struct evconn_ops ops = {
    .on_connect = on_connect, .on_msg = on_msg, .on_close = on_close};

static void link_connect(struct monitor *m, int i)
{
	struct manager_link *l = &m->links[i];
	struct sockaddr_storage ss;
	char peer[96], a[FLARE_ADDR_STRLEN];
	socklen_t len = flare_addr_to_sockaddr(&l->addr, &ss);
	snprintf(peer, sizeof(peer), "manager %s", flare_addr_format(&l->addr, a, sizeof(a)));
	l->c = evconn_connect(m->base, (struct sockaddr *)&ss, (int)len, peer,
			      m->cfg->heartbeat_timeout_ms, &ops, m);
	if (!l->c) {
		struct timeval tv = {l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000};
		event_add(l->retry, &tv);
	}
}

struct retry_arg {
	struct monitor *m;
	int i;
};

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct retry_arg *ra = arg;
	(void)fd;
	(void)what;
	link_connect(ra->m, ra->i);
}

static double smoothed(struct monitor *m, double u)
{
	if (m->util.kind == FLARE_UTIL_FILE || m->window_len <= 1)
		return u; /* a file holds the measurement itself */
	m->window[m->window_pos] = u;
	m->window_pos = (m->window_pos + 1) % m->window_len;
	if (m->window_n < m->window_len)
		m->window_n++;
	double sum = 0;
	for (int i = 0; i < m->window_n; i++)
		sum += m->window[i];
	return sum / m->window_n;
}

static void on_sample(evutil_socket_t fd, short what, void *arg)
{
	struct monitor *m = arg;
	double u;
	(void)fd;
	(void)what;
	uint64_t now = flare_monotonic_ns();
	if (util_sample(&m->util, &u) == 0)
		m->utilization = smoothed(m, u);
	liveness_measure_loads(m, now);
	int due = now - m->last_report_ns >= (uint64_t)m->cfg->report_interval_ms * 1000000ull;
	if (due || m->liveness_dirty ||
	    fabs(m->utilization - m->reported_util) > m->cfg->monitor_util_threshold)
		report_send(m);
}

static void on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	liveness_probe_all(arg);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct monitor *m = arg;
	(void)fd;
	(void)what;
	struct fw_msg hb = {.type = FW_HEARTBEAT};
	hb.u.heartbeat.seq = m->seq;
	hb.u.heartbeat.time_ns = flare_monotonic_ns();
	for (int i = 0; i < m->cfg->n_managers; i++)
		if (m->links[i].up)
			evconn_send(m->links[i].c, &hb);
}

static struct event *timer(struct monitor *m, int ms, event_callback_fn fn)
{
	struct event *ev = event_new(m->base, -1, EV_PERSIST, fn, m);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (ev)
		event_add(ev, &tv);
	return ev;
}

int report_start(struct monitor *m)
{
	const struct flare_config *c = m->cfg;
	/* sample several times per report interval so a jump is reported
	 * without waiting for the next periodic report */
	m->sample_ms = c->report_interval_ms / 4;
	if (m->sample_ms < 10)
		m->sample_ms = c->report_interval_ms < 10 ? c->report_interval_ms : 10;
	m->window_len = c->monitor_util_window_ms / m->sample_ms;
	if (m->window_len > UTIL_WINDOW_MAX)
		m->window_len = UTIL_WINDOW_MAX;
	m->sample_timer = timer(m, m->sample_ms, on_sample);
	m->probe_timer = timer(m, c->probe_interval_ms, on_probe_timer);
	m->hb_timer = timer(m, c->heartbeat_interval_ms, on_heartbeat);
	double u;
	util_sample(&m->util, &u); /* prime the deltas */
	liveness_probe_all(m);
	for (int i = 0; i < c->n_managers; i++) {
		struct retry_arg *ra = malloc(sizeof(*ra));
		if (!ra)
			return -1;
		*ra = (struct retry_arg){m, i};
		m->links[i].addr = c->managers[i];
		m->links[i].backoff_ms = c->reconnect_min_ms;
		m->links[i].retry = evtimer_new(m->base, on_retry, ra);
		link_connect(m, i);
	}
	return m->sample_timer && m->probe_timer && m->hb_timer ? 0 : -1;
}

void report_stop(struct monitor *m)
{
	struct event *evs[] = {m->sample_timer, m->probe_timer, m->hb_timer};
	for (size_t i = 0; i < 3; i++)
		if (evs[i])
			event_free(evs[i]);
	for (int i = 0; i < m->cfg->n_managers; i++) {
		struct manager_link *l = &m->links[i];
		if (l->retry) {
			free(event_get_callback_arg(l->retry));
			event_free(l->retry);
			l->retry = NULL;
		}
		if (l->c) {
			struct evconn *c = l->c;
			l->c = NULL; /* on_close finds no link: no reconnect */
			evconn_close(c, "monitor stopping");
		}
	}
}
