/* Which live replica a new binding goes to, under the service's balance
 * policy (docs/DESIGN.md "Load balancing"). Pure functions of a route and
 * the random bits and round-robin ticket given, so the unit tests drive
 * them; balance_random and usershm_rr_ticket supply those.
 *
 * Adaptive decisions are jittered: least-loaded takes at random among the
 * replicas whose smoothed rate is within the service's band of the lowest,
 * and headroom draws at random weighted by spare capacity, so many clients
 * reading one table do not all pick the same replica. A replica in slow
 * start is taken only with the probability of its ramp. */
#include "clock.h"
#include "flare.h"
#include "table.h"

#include "route/route.h"

#include <unistd.h>

static uint64_t mix(uint64_t x)
{
	/* splitmix64's finalizer */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t balance_random(void)
{
	static uint64_t state;
	/* splitmix64: a Weyl sequence through the finalizer; seeded from the
	 * clock and pid on first use (a race seeds it twice: harmless) */
	if (!__atomic_load_n(&state, __ATOMIC_RELAXED))
		__atomic_store_n(&state, (flare_monotonic_ns() ^ (uint64_t)getpid() << 32) | 1,
				 __ATOMIC_RELAXED);
	return mix(__atomic_add_fetch(&state, 0x9e3779b97f4a7c15ull, __ATOMIC_RELAXED));
}

/* One draw among n weights; uniform when they are all zero. */
static int draw(const uint64_t *w, int n, uint64_t rnd)
{
	uint64_t total = 0;
	for (int i = 0; i < n; i++)
		total += w[i];
	if (total == 0)
		return (int)(rnd % (uint64_t)n);
	uint64_t x = rnd % total;
	for (int i = 0; i < n; i++) {
		if (x < w[i])
			return i;
		x -= w[i];
	}
	return n - 1;
}

int balance_pick(const struct flare_route *rt, uint64_t rnd, uint64_t ticket, int exclude)
{
	const struct flare_tbl_service *s = &rt->svc;
	uint8_t live[FLARE_MAX_REPLICAS];
	uint64_t w[FLARE_MAX_REPLICAS];
	int n = 0;
	if (s->balance == FLARE_BALANCE_PRIMARY || s->balance > FLARE_BALANCE_HEADROOM)
		return -1;
	for (uint32_t i = 0; i < s->n_replicas && i < FLARE_MAX_REPLICAS; i++)
		if (rt->reps[i].alive && !(rt->reps[i].flags & FLARE_REP_DRAINED) &&
		    (int)i != exclude)
			live[n++] = (uint8_t)i;
	if (n == 0)
		return -1;
	const struct flare_tbl_replica *r = rt->reps;
	/* ramps count relative to the furthest along: replicas that came up
	 * together (a deployment starting) are not held back against each other */
	uint32_t ramp[FLARE_MAX_REPLICAS], top = 0;
	for (int k = 0; k < n; k++)
		top = r[live[k]].ramp_ppm > top ? r[live[k]].ramp_ppm : top;
	for (int k = 0; k < n; k++)
		ramp[live[k]] =
		    top ? (uint32_t)((uint64_t)r[live[k]].ramp_ppm * FLARE_PPM / top) : FLARE_PPM;
	switch (s->balance) {
	case FLARE_BALANCE_ROUND_ROBIN:
		/* a replica in slow start lets its turn pass with 1 - ramp */
		for (int k = 0; k < n; k++) {
			int i = live[(ticket + (uint64_t)k) % (uint64_t)n];
			if ((rnd >> (k & 31)) % FLARE_PPM < ramp[i])
				return i;
		}
		return live[ticket % (uint64_t)n];
	case FLARE_BALANCE_RANDOM:
		for (int k = 0; k < n; k++)
			w[k] = ramp[live[k]];
		return live[draw(w, n, rnd)];
	case FLARE_BALANCE_LEAST_LOADED: {
		uint64_t least = UINT64_MAX, sum = 0;
		for (int k = 0; k < n; k++) {
			sum += r[live[k]].rate_milli;
			if (r[live[k]].rate_milli < least)
				least = r[live[k]].rate_milli;
		}
		/* ties: within band x the mean rate of the lowest (and 1 request/s) */
		uint64_t band = sum / (uint64_t)n * s->band_ppm / FLARE_PPM;
		if (band < 1000)
			band = 1000;
		for (int k = 0; k < n; k++)
			w[k] = r[live[k]].rate_milli <= least + band ? ramp[live[k]] + 1 : 0;
		return live[draw(w, n, rnd)];
	}
	default: /* HEADROOM */
		for (int k = 0; k < n; k++)
			w[k] = r[live[k]].weight_ppm;
		return live[draw(w, n, rnd)];
	}
}

int order_balanced(const struct flare_route *rt, int pick, uint8_t *out)
{
	uint8_t all[FLARE_MAX_REPLICAS];
	int n = order_connect(rt, all), k = 0;
	if (pick >= 0)
		out[k++] = (uint8_t)pick;
	for (int i = 0; i < n; i++)
		if (all[i] != pick)
			out[k++] = all[i];
	return k;
}
