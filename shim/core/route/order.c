/* Which replicas to try, in which order: for a new connection and after a
 * failure. Pure functions of a route read from the table (no system
 * calls), so the unit tests drive them directly. */
#include "flare.h"
#include "table.h"

#include "route/route.h"

int order_live_first(const struct flare_route *rt, const uint8_t *base, int nb, uint8_t *seen,
		     uint8_t *out)
{
	int n = 0;
	/* live ones, then live but drained (an operator took them out: only
	 * when nothing else lives), then dead ones */
	for (int pass = 0; pass < 3; pass++)
		for (int i = 0; i < nb; i++) {
			int r = base[i];
			if (r >= (int)rt->svc.n_replicas || seen[r])
				continue;
			int drained = (rt->reps[r].flags & FLARE_REP_DRAINED) != 0;
			int cls = !rt->reps[r].alive ? 2 : drained ? 1 : 0;
			if (cls != pass)
				continue;
			seen[r] = 1;
			out[n++] = (uint8_t)r;
		}
	return n;
}

int order_connect(const struct flare_route *rt, uint8_t *out)
{
	const struct flare_tbl_service *s = &rt->svc;
	uint8_t base[2 * FLARE_MAX_REPLICAS + 1], seen[FLARE_MAX_REPLICAS] = {0};
	int nb = 0;
	if (s->failover == FLARE_FAILOVER_STATIC) {
		if (s->primary >= 0 && s->primary < FLARE_MAX_REPLICAS)
			base[nb++] = (uint8_t)s->primary;
	} else {
		for (int i = 0; i < s->n_order && i < FLARE_MAX_REPLICAS; i++)
			base[nb++] = s->order[i];
	}
	for (uint32_t i = 0; i < s->n_replicas && i < FLARE_MAX_REPLICAS; i++)
		base[nb++] = (uint8_t)i;
	return order_live_first(rt, base, nb, seen, out);
}

int order_failover(const struct flare_route *rt, int cur, int failover, const uint8_t *asked,
		   int n_asked, uint32_t exclude, uint8_t *out)
{
	const struct flare_tbl_replica *me = &rt->reps[cur];
	uint8_t base[3 * FLARE_MAX_REPLICAS], seen[FLARE_MAX_REPLICAS] = {0};
	int nb = 0;
	if (n_asked >= 0)
		for (int k = 0; k < n_asked && k < FLARE_MAX_REPLICAS; k++)
			base[nb++] = asked[k];
	else if (failover != FLARE_FAILOVER_STATIC)
		for (int k = 0; k < me->n_failover && k < FLARE_MAX_REPLICAS; k++)
			base[nb++] = me->failover[k];
	for (uint32_t i = 0; i < rt->svc.n_replicas && i < FLARE_MAX_REPLICAS; i++)
		base[nb++] = (uint8_t)i;
	for (int i = 0; i < FLARE_MAX_REPLICAS; i++)
		if (exclude >> i & 1u)
			seen[i] = 1;
	seen[cur] = 1;
	int n = order_live_first(rt, base, nb, seen, out);
	if (!(exclude >> cur & 1u))
		out[n++] = (uint8_t)cur;
	return n;
}
