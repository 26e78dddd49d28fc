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
		reps[i].reason = (uint8_t)p->reason;
		reps[i].pid = p->pid;
		reps[i].load_ppm = p->load < 0 ? FW_LOAD_UNKNOWN : flare_ppm(p->load);
		reps[i].rate_milli =
		    p->rate * 1000 > 4e9 ? 4000000000u : (uint32_t)(p->rate * 1000);
	}
	r->n_conns = (uint32_t)m->n_conns;
	r->conns = m->conns;
	struct fw_buf b = {0};
	if (fw_encode_report(&b, r) == 0)
		for (int i = 0; i < m->cfg->n_managers; i++)
			mlink_send_raw(&m->links[i], b.data, b.len);
	fw_buf_free(&b);
	m->reported_util = m->utilization;
	m->last_report_ns = flare_monotonic_ns();
	m->liveness_dirty = 0;
}

static void on_up(struct mlink *l)
{
	struct monitor *m = l->owner;
	mlink_good(l);
	log_info("%s: connected", mlink_peer(l));
	report_send(m);
}

static void on_msg(struct mlink *l, struct fw_msg *msg)
{
	if (msg->type == FW_ERROR)
		log_error("%s: manager refused us: %s", mlink_peer(l), msg->u.text.text);
	else if (msg->type != FW_HEARTBEAT)
		log_debug("%s: ignoring %s frame", mlink_peer(l), fw_type_name(msg->type));
}

static void on_down(struct mlink *l, const char *why, int was_up)
{
	if (was_up)
		log_warn("%s: lost (%s), reconnecting", mlink_peer(l), why);
	else
		log_debug("%s: %s, retrying in %d ms", mlink_peer(l), why, l->backoff_ms);
}

static const struct mlink_ops ops = {.on_up = on_up, .on_msg = on_msg, .on_down = on_down};

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
	double u;
	util_sample(&m->util, &u); /* prime the deltas */
	liveness_probe_all(m);
	for (int i = 0; i < c->n_managers; i++) {
		struct mlink *l = &m->links[i];
		l->base = m->base;
		l->cfg = c;
		l->addrs = &c->managers[i];
		l->n_addrs = 1;
		l->source = &m->source;
		l->hello = (struct fw_hello){.role = FW_ROLE_MONITOR, .pid = (uint32_t)getpid()};
		snprintf(l->hello.name, sizeof(l->hello.name), "%s", c->hosts[m->host].name);
		l->hb_seq = &m->seq;
		l->ops = &ops;
		l->owner = m;
		if (mlink_start(l) < 0)
			return -1;
	}
	return m->sample_timer && m->probe_timer ? 0 : -1;
}

void report_stop(struct monitor *m)
{
	struct event *evs[] = {m->sample_timer, m->probe_timer};
	for (size_t i = 0; i < 2; i++)
		if (evs[i])
			event_free(evs[i]);
	for (int i = 0; i < m->cfg->n_managers; i++)
		mlink_stop(&m->links[i]);
}
