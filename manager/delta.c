/* What a re-rank changed: the entries of the new picture that differ from
 * what agents hold (the last published table), so only those are pushed.
 * Host utilization counts as changed only beyond manager.rank_threshold;
 * liveness, loads and orders on any difference. */
#include "clock.h"
#include "manager.h"

#include <string.h>

static int order_equal(uint8_t na, const uint8_t *a, uint8_t nb, const uint8_t *b)
{
	return na == nb && memcmp(a, b, na) == 0;
}

int state_delta(struct manager *m, struct fw_rank *d)
{
	uint64_t now = flare_monotonic_ns(); /* one clock for every replica's ramp */
	const struct flare_config *c = m->cfg;
	*d = (struct fw_rank){.full = 0,
			      .hosts = m->delta_hosts,
			      .services = m->delta_svcs,
			      .replicas = m->delta_reps};
	for (int i = 0; i < c->n_hosts; i++) {
		struct fw_rank_host *p = &m->pub_hosts[i];
		uint32_t u = flare_ppm(m->hosts[i].util);
		uint32_t diff = u > p->util_ppm ? u - p->util_ppm : p->util_ppm - u;
		if (p->alive != m->hosts[i].alive || diff > flare_ppm(c->rank_threshold)) {
			p->alive = (uint8_t)m->hosts[i].alive;
			p->util_ppm = u;
			d->hosts[d->n_hosts++] = *p;
		}
	}
	for (int i = 0; i < c->n_services; i++) {
		struct fw_rank_service *p = &m->pub_svcs[i];
		if (!order_equal(p->n_order, p->order, m->order[i].n, m->order[i].idx)) {
			p->n_order = m->order[i].n;
			memcpy(p->order, m->order[i].idx, p->n_order);
			d->services[d->n_services++] = *p;
		}
	}
	for (int i = 0; i < c->n_replicas; i++) {
		struct fw_rank_replica *p = &m->pub_reps[i];
		uint8_t alive = (uint8_t)(m->reps[i].alive && m->hosts[c->replicas[i].host].alive);
		uint32_t load = flare_ppm(state_object_load(m, i));
		struct fw_rank_replica bal = *p;
		balance_fill(m, i, now, &bal);
		uint8_t flags = m->reps[i].drained ? FLARE_REP_DRAINED : 0;
		/* a lost host's replicas are dead for that reason, whatever their
		 * monitor said last (a host never heard from gives none) */
		const struct mhost *h = &m->hosts[c->replicas[i].host];
		uint8_t reason = alive       ? FLARE_DEATH_NONE
				 : !h->alive ? (h->reports ? FLARE_DEATH_HOST : FLARE_DEATH_NONE)
					     : (uint8_t)m->reps[i].reason;
		if (p->alive != alive || p->reason != reason || p->load_ppm != load ||
		    p->flags != flags || p->rate_milli != bal.rate_milli ||
		    p->ramp_ppm != bal.ramp_ppm || p->weight_ppm != bal.weight_ppm ||
		    !order_equal(p->n_failover, p->failover, m->failover[i].n,
				 m->failover[i].idx)) {
			if (p->alive != alive || p->reason != reason)
				m->reps[i].changed_ns = now;
			p->alive = alive;
			p->reason = reason;
			p->load_ppm = load;
			p->flags = flags;
			p->rate_milli = bal.rate_milli;
			p->ramp_ppm = bal.ramp_ppm;
			p->weight_ppm = bal.weight_ppm;
			p->n_failover = m->failover[i].n;
			memcpy(p->failover, m->failover[i].idx, p->n_failover);
			d->replicas[d->n_replicas++] = *p;
		}
	}
	if (m->moves_dirty) {
		d->has_moves = 1;
		d->n_moves = (uint32_t)m->n_moves;
		d->moves = m->moves;
		m->moves_dirty = 0;
	}
	return (int)(d->n_hosts + d->n_services + d->n_replicas);
}
