/* What a re-rank changed: the entries of the new picture that differ from
 * what agents hold (the last published table), so only those are pushed.
 * Host utilization counts as changed only beyond manager.rank_threshold;
 * liveness, loads and orders on any difference. */
#include "clock.h"
#include "manager.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

static int order_equal(uint8_t na, const uint8_t *a, uint8_t nb, const uint8_t *b)
{
	return na == nb && memcmp(a, b, na) == 0;
}

/* The changed entries are copied into arrays that grow with the delta
 * (a few entries at a time, usually) and are given back after a large one:
 * three arrays of the whole table's size would be most of a big
 * deployment's manager. */
#define DELTA_KEEP 256

static void *room(void *arr, uint32_t n, uint32_t *cap, size_t size, int *oom)
{
	if (n < *cap)
		return arr;
	uint32_t want = *cap ? *cap * 2 : 16;
	void *p = realloc(arr, (size_t)want * size);
	if (!p) {
		*oom = 1;
		return NULL;
	}
	*cap = want;
	return p;
}

static void shrink(void **arr, uint32_t *cap)
{
	if (*cap > DELTA_KEEP) {
		free(*arr);
		*arr = NULL;
		*cap = 0;
		/* grown by realloc, it lay in the heap: give the pages back now
		 * (after a start, a reload or a mass death, not on the usual
		 * few-entry deltas) */
		malloc_trim(0);
	}
}

/* Appends e (of type T) to the manager's delta array A */
#define APPEND(A, N, CAP, e)                                                                       \
	do {                                                                                       \
		void *grown_ = room(m->A, d->N, &m->CAP, sizeof(*m->A), &m->delta_oom);            \
		if (grown_) {                                                                      \
			m->A = grown_;                                                             \
			m->A[d->N++] = (e);                                                        \
		}                                                                                  \
	} while (0)

int state_delta(struct manager *m, struct fw_rank *d)
{
	uint64_t now = flare_monotonic_ns(); /* one clock for every replica's ramp */
	const struct flare_config *c = m->cfg;
	*d = (struct fw_rank){.full = 0};
	shrink((void **)&m->delta_hosts, &m->cap_delta_hosts);
	shrink((void **)&m->delta_svcs, &m->cap_delta_svcs);
	shrink((void **)&m->delta_reps, &m->cap_delta_reps);
	for (int i = 0; i < c->n_hosts; i++) {
		struct fw_rank_host *p = &m->pub_hosts[i];
		uint32_t u = flare_ppm(m->hosts[i].util);
		uint32_t diff = u > p->util_ppm ? u - p->util_ppm : p->util_ppm - u;
		if (p->alive != m->hosts[i].alive || diff > flare_ppm(c->rank_threshold)) {
			p->alive = (uint8_t)m->hosts[i].alive;
			p->util_ppm = u;
			APPEND(delta_hosts, n_hosts, cap_delta_hosts, *p);
		}
	}
	for (int i = 0; i < c->n_services; i++) {
		struct fw_rank_service *p = &m->pub_svcs[i];
		if (!order_equal(p->n_order, p->order, m->order[i].n, m->order[i].idx)) {
			p->n_order = m->order[i].n;
			memcpy(p->order, m->order[i].idx, p->n_order);
			APPEND(delta_svcs, n_services, cap_delta_svcs, *p);
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
			APPEND(delta_reps, n_replicas, cap_delta_reps, *p);
		}
	}
	d->hosts = m->delta_hosts;
	d->services = m->delta_svcs;
	d->replicas = m->delta_reps;
	if (m->moves_dirty) {
		d->has_moves = 1;
		d->n_moves = (uint32_t)m->n_moves;
		d->moves = m->moves;
		m->moves_dirty = 0;
	}
	return (int)(d->n_hosts + d->n_services + d->n_replicas);
}
