/* The manager's model and the ranking/publication cycle. */
#include "clock.h"
#include "manager.h"

#include "log.h"
#include "table.h"

#include <event2/event.h>
#include <math.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>

#define CALLOC(p, n) ((p) = calloc((size_t)(n) + 1, sizeof(*(p))))

int state_init(struct manager *m)
{
	struct flare_config *c = m->cfg;
	if (!CALLOC(m->hosts, c->n_hosts) || !CALLOC(m->reps, c->n_replicas) ||
	    !CALLOC(m->rh, c->n_hosts) || !CALLOC(m->rr, c->n_replicas) ||
	    !CALLOC(m->rs, c->n_services) || !CALLOC(m->failover, c->n_replicas) ||
	    !CALLOC(m->order, c->n_services) || !CALLOC(m->util_at_rank, c->n_hosts) ||
	    !CALLOC(m->pub_hosts, c->n_hosts) || !CALLOC(m->pub_svcs, c->n_services) ||
	    !CALLOC(m->pub_reps, c->n_replicas) || !CALLOC(m->plan_ns, c->n_services) ||
	    balance_init(m) < 0 || rank_scratch_init(&m->scratch, c->n_hosts, c->n_replicas) < 0)
		return -1;
	for (int i = 0; i < c->n_replicas; i++)
		m->reps[i].measured = -1;
	/* the static part of the published table comes from the config */
	for (int i = 0; i < c->n_hosts; i++) {
		struct fw_rank_host *h = &m->pub_hosts[i];
		h->idx = (uint32_t)i;
		memcpy(h->name, c->hosts[i].name, sizeof(h->name));
		memcpy(h->monitor_socket, c->hosts[i].monitor_socket, sizeof(h->monitor_socket));
	}
	for (int i = 0; i < c->n_services; i++) {
		const struct flare_service_cfg *s = &c->services[i];
		struct fw_rank_service *p = &m->pub_svcs[i];
		p->idx = (uint32_t)i;
		memcpy(p->name, s->name, sizeof(p->name));
		p->addr = s->addr;
		p->strategy = (uint8_t)s->strategy;
		p->failover = (uint8_t)s->failover;
		p->replay = (uint8_t)s->replay;
		p->protocol = (uint8_t)s->protocol;
		p->replay_unsafe = (uint8_t)s->replay_unsafe;
		p->connect_timeout_ms = (uint32_t)s->connect_timeout_ms;
		p->user_timeout_ms = (uint32_t)s->user_timeout_ms;
		p->replay_buffer = (uint32_t)s->replay_buffer;
		p->request_timeout_ms = (uint32_t)s->request_timeout_ms;
		p->keepalive_idle_s = (uint16_t)s->keepalive_idle_s;
		p->keepalive_interval_s = (uint16_t)s->keepalive_interval_s;
		p->keepalive_count = (uint16_t)s->keepalive_count;
		p->first_replica = (uint32_t)s->first_replica;
		p->n_replicas = (uint32_t)s->n_replicas;
		p->primary = s->primary < 0 ? -1 : s->primary - s->first_replica;
		p->balance = (uint8_t)s->balance;
		p->binding = (uint8_t)s->binding;
		p->rebind_interval_ms = (uint32_t)s->rebind_interval_ms;
		p->band_ppm = (uint32_t)(s->balance_band * FLARE_PPM);
		m->rs[i] =
		    (struct rank_service){s->first_replica, s->n_replicas, s->strategy, p->primary};
	}
	for (int i = 0; i < c->n_replicas; i++) {
		const struct flare_replica_cfg *r = &c->replicas[i];
		struct fw_rank_replica *p = &m->pub_reps[i];
		p->idx = (uint32_t)i;
		memcpy(p->name, r->name, sizeof(p->name));
		p->addr = r->addr;
		p->service = (uint32_t)r->service;
		p->host = (uint32_t)r->host;
		p->weight_ppm = p->ramp_ppm = FLARE_PPM;
	}
	return 0;
}

void state_free(struct manager *m)
{
	balance_free(m);
	for (int i = 0; m->hosts && i < m->cfg->n_hosts; i++)
		free(m->hosts[i].seen);
	free(m->hosts);
	free(m->reps);
	free(m->rh);
	free(m->rr);
	free(m->rs);
	free(m->failover);
	free(m->order);
	free(m->util_at_rank);
	free(m->pub_hosts);
	free(m->pub_svcs);
	free(m->pub_reps);
	free(m->delta_hosts);
	free(m->delta_svcs);
	free(m->delta_reps);
	rank_scratch_free(&m->scratch);
}

int state_apply_report(struct manager *m, int host, const struct fw_report *r)
{
	struct mhost *h = &m->hosts[host];
	const struct flare_config *c = m->cfg;
	uint64_t now = flare_monotonic_ns();
	int changed = !h->alive, urgent = 0, first_report = h->reports == 0;
	h->alive = 1;
	h->util = (double)r->util_ppm / FLARE_PPM;
	h->last_report_ns = now;
	h->reports++;
	if (fabs(h->util - m->util_at_rank[host]) > c->rank_threshold)
		changed = 1;
	if (h->n_seen != r->n_replicas) {
		int *seen = realloc(h->seen, (r->n_replicas + 1) * sizeof(int));
		if (seen) {
			h->seen = seen;
			h->n_seen = r->n_replicas;
			for (uint32_t i = 0; i < r->n_replicas; i++)
				h->seen[i] = -1;
		}
	}
	for (uint32_t i = 0; i < r->n_replicas; i++) {
		const struct fw_report_replica *rr = &r->replicas[i];
		int idx = i < h->n_seen ? h->seen[i] : -1;
		if (idx < 0 || strcmp(c->replicas[idx].name, rr->name) != 0) {
			idx = flare_config_replica_index(c, rr->name);
			if (i < h->n_seen)
				h->seen[i] = idx;
		}
		if (idx < 0 || c->replicas[idx].host != host) {
			log_warn(
			    "report from host '%s' names replica '%s', which is not on it: ignored",
			    c->hosts[host].name, rr->name);
			continue;
		}
		struct mreplica *p = &m->reps[idx];
		if (p->alive != rr->alive || (!rr->alive && p->reason != rr->reason)) {
			log_info("replica %s on %s: %s%s%s", rr->name, c->hosts[host].name,
				 rr->alive ? "alive" : "dead", rr->alive ? "" : ", ",
				 flare_death_name(rr->reason));
			balance_liveness(m, idx, p->alive, rr->alive, first_report);
			changed = 1;
			urgent |= !rr->alive; /* a death, or a dead one's new reason */
		}
		p->alive = rr->alive;
		p->reason = rr->alive ? FLARE_DEATH_NONE : rr->reason;
		p->registered = rr->registered;
		p->pid = rr->pid;
		double measured =
		    rr->load_ppm == FW_LOAD_UNKNOWN ? -1 : (double)rr->load_ppm / FLARE_PPM;
		if ((measured < 0) != (p->measured < 0) ||
		    fabs(measured - p->measured) > c->rank_threshold)
			changed = 1;
		p->measured = measured;
		changed |= balance_replica_report(m, idx, r, i, now);
	}
	if (balance_moves_done(m, now))
		urgent = 1; /* as before the debounce: moves go out at once */
	return urgent ? STATE_CHANGED | STATE_URGENT : changed ? STATE_CHANGED : 0;
}

void state_host_lost(struct manager *m, int host, const char *why)
{
	struct mhost *h = &m->hosts[host];
	if (!h->alive)
		return;
	log_warn("host %s is dead: its monitor %s", m->cfg->hosts[host].name, why);
	h->alive = 0;
	for (int i = 0; i < m->cfg->n_replicas; i++)
		if (m->cfg->replicas[i].host == host) {
			balance_liveness(m, i, m->reps[i].alive, 0, 0);
			m->reps[i].alive = 0;
		}
	balance_moves_done(m, flare_monotonic_ns());
	state_rerank(m, "host lost");
}

double state_object_load(const struct manager *m, int r)
{
	/* the measured CPU share when the monitor has one, else the config's */
	double measured = m->reps[r].measured;
	return measured > 0 ? measured : m->cfg->replicas[r].load;
}

static void fill_inputs(struct manager *m)
{
	const struct flare_config *c = m->cfg;
	for (int i = 0; i < c->n_hosts; i++) {
		m->rh[i].util = m->hosts[i].util;
		m->rh[i].alive = m->hosts[i].alive;
		m->util_at_rank[i] = m->hosts[i].util;
	}
	for (int i = 0; i < c->n_replicas; i++)
		m->rr[i] = (struct rank_replica){c->replicas[i].service, c->replicas[i].host,
						 m->reps[i].alive, state_object_load(m, i)};
}

void state_rerank_soon(struct manager *m)
{
	if (m->rerank_due)
		return;
	struct timeval tv = {0, FLARE_PUSH_DEBOUNCE_MS * 1000};
	if (!m->debounce || event_add(m->debounce, &tv) < 0) {
		state_rerank(m, "report");
		return;
	}
	m->rerank_due = 1;
}

void state_rerank(struct manager *m, const char *reason)
{
	const struct flare_config *c = m->cfg;
	uint64_t t0 = flare_monotonic_ns();
	if (m->rerank_due) { /* this one covers what was waiting */
		m->rerank_due = 0;
		event_del(m->debounce);
	}
	struct rank_input in = {m->rh, c->n_hosts, m->rs, c->n_services, m->rr, c->n_replicas};
	fill_inputs(m);
	rank_all(&in, &m->scratch, m->failover, m->order);
	m->last_rank_ns = flare_monotonic_ns();
	m->last_rank_us = (double)(m->last_rank_ns - t0) / 1000.0;
	m->rank_count++;

	struct fw_rank d;
	state_delta(m, &d);
	if (d.n_hosts + d.n_services + d.n_replicas == 0 && !d.has_moves && !m->delta_oom)
		return;
	d.gen = ++m->gen;
	if (m->reloading)
		return; /* the new layout goes out whole (reload.c), not as a delta */
	struct fw_buf b = {0};
	if (m->delta_oom) { /* a change could not be kept: the whole table */
		m->delta_oom = 0;
		log_warn("out of memory for a delta: pushing the whole table");
		if (state_encode_full(m, &b) == 0)
			server_broadcast_agents(m, b.data, b.len);
		state_buf_free(&b);
		return;
	}
	if (fw_encode_rank(&b, &d) == 0) {
		server_broadcast_agents(m, b.data, b.len);
		m->push_count++;
		log_debug("gen %llu (%s): pushed %u hosts, %u services, %u replicas in %.0f us",
			  (unsigned long long)m->gen, reason, d.n_hosts, d.n_services, d.n_replicas,
			  (double)(flare_monotonic_ns() - t0) / 1000.0);
	} else {
		log_error("cannot encode a ranking delta");
	}
	state_buf_free(&b);
}

void state_trim_after(size_t bytes)
{
	/* what grew by realloc lay in the heap: its pages go back now, not
	 * when the heap's top happens to be free */
	if (bytes >= (1u << 20))
		malloc_trim(0);
}

void state_buf_free(struct fw_buf *b)
{
	size_t cap = b->cap;
	fw_buf_free(b);
	state_trim_after(cap);
}

int state_encode_full(struct manager *m, struct fw_buf *b)
{
	struct fw_rank f = {.full = 1,
			    .gen = m->gen,
			    .n_hosts = (uint32_t)m->cfg->n_hosts,
			    .n_services = (uint32_t)m->cfg->n_services,
			    .n_replicas = (uint32_t)m->cfg->n_replicas,
			    .hosts = m->pub_hosts,
			    .services = m->pub_svcs,
			    .replicas = m->pub_reps,
			    .has_moves = 1,
			    .n_moves = (uint32_t)m->n_moves,
			    .moves = m->moves};
	return fw_encode_rank(b, &f);
}

void state_query(struct manager *m, struct fw_query *q)
{
	const struct flare_config *c = m->cfg;
	q->n_addrs = 0;
	for (int s = 0; s < c->n_services; s++) {
		if (!flare_addr_equal(&c->services[s].addr, &q->service))
			continue;
		const struct fw_rank_service *ps = &m->pub_svcs[s];
		const struct rank_order *o = &m->order[s];
		for (uint32_t r = 0; r < ps->n_replicas; r++)
			if (flare_addr_equal(&m->pub_reps[ps->first_replica + r].addr, &q->failed))
				o = &m->failover[ps->first_replica + r];
		/* live targets first, in ranking order */
		for (int pass = 0; pass < 2; pass++)
			for (int k = 0; k < o->n; k++) {
				const struct fw_rank_replica *p =
				    &m->pub_reps[ps->first_replica + o->idx[k]];
				if ((p->alive != 0) != pass)
					q->addrs[q->n_addrs++] = p->addr;
			}
		return;
	}
}
