/* Load balancing inputs and on-demand rebinding (TAO's strategies, done at
 * the socket level; docs/DESIGN.md "Load balancing").
 *
 * Dampening: every replica's request rate and every client connection's
 * are smoothed here (an exponential moving average with time constant
 * manager.load_smoothing_ms), so decisions follow load, not samples.
 *
 * Published per replica: the smoothed rate (least-loaded picks the lowest),
 * a headroom weight (spare capacity: capacity minus rate when the replica's
 * capacity is configured, else its host's idle CPU) and a slow-start ramp
 * (a replica that comes back is given new bindings gradually).
 *
 * On-demand rebinding: TAO's clients were told to re-bind one at a time by
 * a balancer that saw only per-replica load, and took several rounds of
 * oscillation to settle. The manager here sees every client connection and
 * its own rate (the monitors read them from the kernel), so it plans whole
 * moves: repeatedly the replica furthest above its fair share gives a
 * connection to the one furthest below, or they swap two, whichever brings
 * both closest to their shares, until no move helps. The moves are
 * published; each client library moves its own connection at its next
 * request boundary. A new plan waits until those moves happened and the
 * moved connections were measured, so nothing is planned on a picture that
 * does not include the last plan: it settles in one round, without
 * oscillation, and hysteresis (services[].balance_band) keeps it still. */
#include "manager.h"

#include "clock.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PLAN_STEPS 64

static double ewma(double old, double sample, uint64_t dt_ns, int tau_ms)
{
	if (tau_ms <= 0)
		return sample;
	double a = 1.0 - exp(-(double)dt_ns / 1e6 / tau_ms);
	return old + a * (sample - old);
}

/* A connection is young until two sock_diag passes measured it whole */
static int young(const struct manager *m, const struct mconn *c, uint64_t now)
{
	return now - c->first_ns < 2ull * (uint64_t)m->cfg->probe_interval_ms * 1000000ull;
}

static void take_conns(struct manager *m, int rep, const struct fw_report *r, uint32_t ri,
		       uint64_t dt, uint64_t now)
{
	struct mreplica *p = &m->reps[rep];
	int n = 0;
	for (uint32_t k = 0; k < r->n_conns; k++)
		n += r->conns[k].replica == ri;
	struct mconn *next = n ? calloc((size_t)n, sizeof(*next)) : NULL;
	if (n && !next)
		return; /* out of memory: keep the old picture */
	int j = 0;
	for (uint32_t k = 0; k < r->n_conns; k++) {
		const struct fw_report_conn *c = &r->conns[k];
		if (c->replica != ri)
			continue;
		double raw = c->rate_milli / 1000.0;
		struct mconn *old = NULL;
		for (int o = 0; o < p->n_conns && !old; o++)
			if (flare_addr_equal(&p->conns[o].peer, &c->peer))
				old = &p->conns[o];
		next[j] = (struct mconn){c->peer, raw, old ? old->first_ns : now};
		if (old && !young(m, old, now))
			next[j].rate = ewma(old->rate, raw, dt, m->cfg->load_smoothing_ms);
		j++;
	}
	free(p->conns);
	p->conns = next;
	p->n_conns = n;
}

/* What is published for a replica, quantized so that noise is not pushed */
static void publishable(struct manager *m, int i, uint64_t now, uint32_t *rate, uint32_t *ramp,
			uint32_t *weight)
{
	const struct flare_config *c = m->cfg;
	const struct flare_replica_cfg *rc = &c->replicas[i];
	const struct mreplica *p = &m->reps[i];
	int slow = c->services[rc->service].slow_start_ms;
	double r = 1.0;
	if (p->ramp_from_ns && slow > 0 && now - p->ramp_from_ns < (uint64_t)slow * 1000000ull)
		r = floor((double)(now - p->ramp_from_ns) / 1e6 / slow * 10) / 10;
	double spare = rc->capacity > 0 ? (rc->capacity - p->rate) / rc->capacity
					: 1.0 - m->hosts[rc->host].util;
	spare = floor(spare * 100) / 100;
	*rate = p->rate * 1000 > 4e9 ? 4000000000u : (uint32_t)(p->rate * 1000);
	*ramp = flare_ppm(r);
	*weight = flare_ppm((spare < 0.01 ? 0.01 : spare) * r);
}

int balance_replica_report(struct manager *m, int idx, const struct fw_report *r, uint32_t ri,
			   uint64_t now)
{
	const struct flare_config *c = m->cfg;
	if (!flare_service_balances(&c->services[c->replicas[idx].service]))
		return 0; /* nothing to smooth or publish: no cost per report */
	struct mreplica *p = &m->reps[idx];
	double raw = r->replicas[ri].rate_milli / 1000.0;
	uint64_t dt = p->rate_ns ? now - p->rate_ns : 0;
	p->rate = p->rate_ns ? ewma(p->rate, raw, dt, c->load_smoothing_ms) : raw;
	p->rate_ns = now;
	if (c->services[c->replicas[idx].service].binding == FLARE_BINDING_ON_DEMAND)
		take_conns(m, idx, r, ri, dt, now);
	uint32_t rate, ramp, weight;
	publishable(m, idx, now, &rate, &ramp, &weight);
	const struct fw_rank_replica *q = &m->pub_reps[idx];
	uint32_t d = rate > q->rate_milli ? rate - q->rate_milli : q->rate_milli - rate;
	return (d > 1000 && d > q->rate_milli / 20) || ramp != q->ramp_ppm ||
	       weight != q->weight_ppm;
}

void balance_fill(struct manager *m, int i, uint64_t now, struct fw_rank_replica *q)
{
	if (!flare_service_balances(&m->cfg->services[m->cfg->replicas[i].service])) {
		q->rate_milli = 0;
		q->ramp_ppm = q->weight_ppm = FLARE_PPM;
		return;
	}
	publishable(m, i, now, &q->rate_milli, &q->ramp_ppm, &q->weight_ppm);
}

void balance_liveness(struct manager *m, int i, int was_alive, int alive, int first_report)
{
	/* a replica found alive by the host's first report was serving before
	 * this manager knew it (a manager restart): no slow start for it */
	if (alive && !was_alive && !first_report)
		m->reps[i].ramp_from_ns = flare_monotonic_ns();
	if (!alive) {
		free(m->reps[i].conns);
		m->reps[i].conns = NULL;
		m->reps[i].n_conns = 0;
	}
}

/* ---- on-demand rebinding ---- */

static int conn_present(const struct mreplica *p, const struct flare_addr *a)
{
	for (int k = 0; k < p->n_conns; k++)
		if (flare_addr_equal(&p->conns[k].peer, a))
			return 1;
	return 0;
}

int balance_moves_done(struct manager *m, uint64_t now)
{
	int changed = 0, j = 0;
	for (int i = 0; i < m->n_moves; i++) {
		const struct fw_move *mv = &m->moves[i];
		const struct mreplica *from = &m->reps[mv->from];
		uint64_t limit = 3ull *
				 (uint64_t)m->cfg->services[m->cfg->replicas[mv->from].service]
				     .rebind_interval_ms *
				 1000000ull;
		if (!from->alive || !conn_present(from, &mv->client) ||
		    now - m->move_ns[i] > limit) {
			changed = 1;
			continue;
		}
		m->move_ns[j] = m->move_ns[i];
		m->moves[j++] = *mv;
	}
	m->n_moves = j;
	if (changed)
		m->moves_dirty = 1;
	return changed;
}

struct plan {
	int n;                       /* live replicas in the plan */
	int rep[FLARE_MAX_REPLICAS]; /* their global indexes */
	double load[FLARE_MAX_REPLICAS], share[FLARE_MAX_REPLICAS];
	struct mconn *conns[FLARE_MAX_REPLICAS];
	int n_conns[FLARE_MAX_REPLICAS];
	int *home[FLARE_MAX_REPLICAS]; /* per connection: where the plan puts it */
	struct fw_move steps[MAX_PLAN_STEPS * 2];
	int n_steps;
};

/* How far the plan is from the fair shares: the worst deviation first,
 * then the sum of squares (which a step that only shifts the worst
 * elsewhere does not improve) */
struct score {
	double worst, sse;
};

static struct score score_with(const struct plan *p, int a, double la, int b, double lb)
{
	struct score sc = {0, 0};
	for (int i = 0; i < p->n; i++) {
		double d = (i == a ? la : i == b ? lb : p->load[i]) - p->share[i];
		sc.worst = fabs(d) > sc.worst ? fabs(d) : sc.worst;
		sc.sse += d * d;
	}
	return sc;
}

static int better(struct score x, struct score y, double eps)
{
	return x.worst < y.worst - eps || (x.worst <= y.worst + eps && x.sse < y.sse - eps * eps);
}

static int movable(const struct manager *m, const struct plan *p, int r, int c, uint64_t now)
{
	return p->home[r][c] == r && !young(m, &p->conns[r][c], now);
}

/* One step: among the pairs of replicas that involve the most or the least
 * loaded one, the single move or swap of connections (each moved once per
 * plan at most) that leaves the plan closest to the fair shares. A step
 * that only keeps the score (a swap that shifts the worst replica) is
 * taken too: the next may then improve, and the plan keeps only the best
 * prefix of its steps. Returns 0 when every step makes things worse. */
static int plan_step(struct manager *m, struct plan *p, uint64_t now, double eps)
{
	int hi = 0, lo = 0;
	for (int i = 1; i < p->n; i++) {
		if (p->load[i] - p->share[i] > p->load[hi] - p->share[hi])
			hi = i;
		if (p->load[i] - p->share[i] < p->load[lo] - p->share[lo])
			lo = i;
	}
	struct score cur = score_with(p, -1, 0, -1, 0), best = cur;
	int bi = -1, bj = -1, bc = -1, bd = -1, found = 0;
	for (int i = 0; i < p->n; i++)
		for (int j = 0; j < p->n; j++) {
			if (i == j || (i != hi && j != lo))
				continue;
			for (int c = 0; c < p->n_conns[i]; c++) {
				if (!movable(m, p, i, c, now))
					continue;
				double x = p->conns[i][c].rate;
				for (int d = -1; d < p->n_conns[j]; d++) {
					if (d >= 0 && !movable(m, p, j, d, now))
						continue;
					double delta = x - (d >= 0 ? p->conns[j][d].rate : 0);
					if (delta <= eps)
						continue; /* load must flow from i to j */
					struct score sc = score_with(p, i, p->load[i] - delta, j,
								     p->load[j] + delta);
					if (better(cur, sc, eps) ||
					    (found && !better(sc, best, eps)))
						continue;
					best = sc;
					bi = i, bj = j, bc = c, bd = d;
					found = 1;
				}
			}
		}
	if (!found || p->n_steps + 2 > (int)(sizeof(p->steps) / sizeof(p->steps[0])))
		return 0;
	double delta = p->conns[bi][bc].rate - (bd >= 0 ? p->conns[bj][bd].rate : 0);
	p->load[bi] -= delta;
	p->load[bj] += delta;
	p->home[bi][bc] = bj;
	p->steps[p->n_steps++] =
	    (struct fw_move){p->conns[bi][bc].peer, (uint32_t)p->rep[bi], (uint32_t)p->rep[bj]};
	if (bd >= 0) {
		p->home[bj][bd] = bi;
		p->steps[p->n_steps++] = (struct fw_move){
		    p->conns[bj][bd].peer, (uint32_t)p->rep[bj], (uint32_t)p->rep[bi]};
	}
	return 1;
}

static int service_settled(struct manager *m, int s, uint64_t now)
{
	const struct flare_service_cfg *sv = &m->cfg->services[s];
	for (int i = 0; i < m->n_moves; i++)
		if (m->cfg->replicas[m->moves[i].from].service == s)
			return 0; /* the last plan is not carried out yet */
	for (int r = sv->first_replica; r < sv->first_replica + sv->n_replicas; r++)
		for (int k = 0; k < m->reps[r].n_conns; k++)
			if (young(m, &m->reps[r].conns[k], now))
				return 0; /* a connection not measured whole yet */
	return now - m->plan_ns[s] >= (uint64_t)sv->rebind_interval_ms * 1000000ull;
}

static int plan_service(struct manager *m, int s, uint64_t now)
{
	const struct flare_service_cfg *sv = &m->cfg->services[s];
	struct plan p = {0};
	double total = 0, ramps = 0;
	for (int r = sv->first_replica; r < sv->first_replica + sv->n_replicas; r++) {
		const struct mreplica *q = &m->reps[r];
		if (!q->alive || !m->hosts[m->cfg->replicas[r].host].alive)
			continue;
		int i = p.n++;
		uint32_t rate, ramp, weight;
		publishable(m, r, now, &rate, &ramp, &weight);
		p.rep[i] = r;
		p.share[i] = q->drained ? 0 : (double)ramp / FLARE_PPM; /* drained: all move off */
		ramps += p.share[i];
		p.conns[i] = q->conns;
		p.n_conns[i] = q->n_conns;
		p.home[i] = calloc((size_t)q->n_conns + 1, sizeof(int));
		for (int k = 0; k < q->n_conns; k++) {
			p.load[i] += q->conns[k].rate;
			if (p.home[i])
				p.home[i][k] = i;
		}
		total += p.load[i];
	}
	int moved = 0, ok = p.n >= 2 && ramps > 0 && total > 0;
	for (int i = 0; i < p.n; i++)
		ok = ok && p.home[i];
	double mean = p.n ? total / p.n : 0, band = sv->balance_band * mean;
	int over = 0;
	for (int i = 0; ok && i < p.n; i++) {
		p.share[i] = total * p.share[i] / ramps;
		over |= p.load[i] > p.share[i] + band;
	}
	m->plan_ns[s] = now;
	/* the best prefix of the steps: the plan ends where it was closest */
	double eps = 0.01 * mean;
	struct score start = score_with(&p, -1, 0, -1, 0), best = start;
	int keep = 0;
	for (int step = 0; ok && over && step < MAX_PLAN_STEPS; step++) {
		if (!plan_step(m, &p, now, eps))
			break;
		struct score sc = score_with(&p, -1, 0, -1, 0);
		if (better(sc, best, eps)) {
			best = sc;
			keep = p.n_steps;
		}
	}
	for (int k = 0; k < keep && m->n_moves < FLARE_MAX_MOVES; k++) {
		m->move_ns[m->n_moves] = now;
		m->moves[m->n_moves++] = p.steps[k];
	}
	moved = keep;
	for (int i = 0; i < p.n; i++)
		free(p.home[i]);
	if (moved) {
		m->rebinds += (uint64_t)moved;
		log_info("service %s: rebinding %d connection(s) at their next request boundary "
			 "(%.1f requests/s over %d replicas)",
			 sv->name, moved, total, p.n);
	}
	return moved;
}

int balance_plan(struct manager *m, uint64_t now)
{
	int moved = 0;
	for (int k = 0; k < m->n_on_demand; k++)
		if (service_settled(m, m->on_demand[k], now))
			moved += plan_service(m, m->on_demand[k], now);
	if (moved)
		m->moves_dirty = 1;
	return moved;
}

int balance_init(struct manager *m)
{
	/* the services the planner looks at on every report: only these */
	m->on_demand = calloc((size_t)m->cfg->n_services + 1, sizeof(int));
	if (!m->on_demand)
		return -1;
	for (int s = 0; s < m->cfg->n_services; s++)
		if (m->cfg->services[s].binding == FLARE_BINDING_ON_DEMAND)
			m->on_demand[m->n_on_demand++] = s;
	return 0;
}

void balance_free(struct manager *m)
{
	free(m->on_demand);
	for (int i = 0; m->reps && i < m->cfg->n_replicas; i++)
		free(m->reps[i].conns);
	free(m->plan_ns);
}
