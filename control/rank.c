#include "rank.h"

#include <stdlib.h>
#include <string.h>

int rank_scratch_init(struct rank_scratch *s, int n_hosts, int n_replicas)
{
	memset(s, 0, sizeof(*s));
	s->expected = calloc((size_t)n_hosts + 1, sizeof(*s->expected));
	s->touched = calloc((size_t)n_hosts + 1, sizeof(*s->touched));
	s->is_touched = calloc((size_t)n_hosts + 1, 1);
	s->objects = calloc((size_t)n_replicas + 1, sizeof(*s->objects));
	s->cap_hosts = n_hosts;
	s->cap_objects = n_replicas;
	if (!s->expected || !s->touched || !s->is_touched || !s->objects) {
		rank_scratch_free(s);
		return -1;
	}
	return 0;
}

void rank_scratch_free(struct rank_scratch *s)
{
	free(s->expected);
	free(s->touched);
	free(s->is_touched);
	free(s->objects);
	memset(s, 0, sizeof(*s));
}

static int replica_live(const struct rank_input *in, int r)
{
	const struct rank_replica *p = &in->replicas[r];
	return p->alive && p->host >= 0 && p->host < in->n_hosts && in->hosts[p->host].alive;
}

/* Expected utilization, lazily reset to the measured value the first time a
 * host is touched for this failing host: the reset is O(touched), not
 * O(n_hosts), which matters when ranking 1,000 hosts. */
static double *expected_of(const struct rank_input *in, struct rank_scratch *s, int h,
			   int *n_touched)
{
	if (!s->is_touched[h]) {
		s->is_touched[h] = 1;
		s->expected[h] = in->hosts[h].util;
		s->touched[(*n_touched)++] = h;
	}
	return &s->expected[h];
}

/* The rest of a service's replicas after `first`, live by expected
 * utilization (ties: configured order), then dead ones in configured order. */
static void order_rest(const struct rank_input *in, struct rank_scratch *s, int *n_touched,
		       const struct rank_service *sv, int exclude, int first, int by_load,
		       struct rank_order *out)
{
	int cand[FLARE_MAX_REPLICAS], nc = 0;
	double key[FLARE_MAX_REPLICAS];
	out->n = 0;
	if (first >= 0)
		out->idx[out->n++] = (uint8_t)first;
	for (int pass = 0; pass < 2; pass++) {
		nc = 0;
		for (int i = 0; i < sv->n; i++) {
			int r = sv->first + i;
			if (i == exclude || i == first || replica_live(in, r) != !pass)
				continue;
			cand[nc] = i;
			key[nc] = pass == 0 && by_load
				      ? *expected_of(in, s, in->replicas[r].host, n_touched)
				      : (double)i;
			nc++;
		}
		/* insertion sort: at most 16 entries, stable for ties */
		for (int a = 1; a < nc; a++) {
			int c = cand[a];
			double k = key[a];
			int b = a - 1;
			while (b >= 0 && key[b] > k) {
				cand[b + 1] = cand[b];
				key[b + 1] = key[b];
				b--;
			}
			cand[b + 1] = c;
			key[b + 1] = k;
		}
		for (int a = 0; a < nc; a++)
			out->idx[out->n++] = (uint8_t)cand[a];
	}
}

static int cmp_load_desc(const void *a, const void *b, void *arg)
{
	const struct rank_input *in = arg;
	int x = *(const int *)a, y = *(const int *)b;
	double lx = in->replicas[x].load, ly = in->replicas[y].load;
	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x - y;
}

static void finish(const struct rank_input *in, struct rank_scratch *s, int n_touched,
		   double *expected_out)
{
	if (expected_out)
		for (int h = 0; h < in->n_hosts; h++)
			expected_out[h] = s->is_touched[h] ? s->expected[h] : in->hosts[h].util;
	for (int i = 0; i < n_touched; i++)
		s->is_touched[s->touched[i]] = 0;
}

/* Objects are processed in a given list (replicas on the failing host),
 * largest load first so big objects get the emptiest hosts. */
static void rank_objects(const struct rank_input *in, struct rank_scratch *s, int *objects,
			 int n_objects, struct rank_order *failover, int *n_touched)
{
	qsort_r(objects, (size_t)n_objects, sizeof(int), cmp_load_desc, (void *)in);
	for (int o = 0; o < n_objects; o++) {
		int r = objects[o];
		const struct rank_replica *p = &in->replicas[r];
		const struct rank_service *sv = &in->services[p->service];
		int self = r - sv->first, best = -1;
		if (sv->strategy == FLARE_STRATEGY_LEAST_LOADED) {
			double best_u = 0;
			for (int i = 0; i < sv->n; i++) {
				int q = sv->first + i;
				if (i == self || !replica_live(in, q) ||
				    in->replicas[q].host == p->host)
					continue;
				double u = *expected_of(in, s, in->replicas[q].host, n_touched);
				if (best < 0 || u < best_u) {
					best = i;
					best_u = u;
				}
			}
		} else {
			for (int i = 0; i < sv->n && best < 0; i++)
				if (i != self && replica_live(in, sv->first + i) &&
				    in->replicas[sv->first + i].host != p->host)
					best = i;
		}
		if (best >= 0)
			*expected_of(in, s, in->replicas[sv->first + best].host, n_touched) +=
			    p->load;
		order_rest(in, s, n_touched, sv, self, best,
			   sv->strategy == FLARE_STRATEGY_LEAST_LOADED, &failover[r]);
	}
}

void rank_host_failure(const struct rank_input *in, int failing_host, struct rank_scratch *s,
		       struct rank_order *failover, double *expected_out)
{
	int n_objects = 0, n_touched = 0;
	for (int r = 0; r < in->n_replicas; r++)
		if (in->replicas[r].host == failing_host)
			s->objects[n_objects++] = r;
	rank_objects(in, s, s->objects, n_objects, failover, &n_touched);
	finish(in, s, n_touched, expected_out);
}

static int cmp_host(const void *a, const void *b, void *arg)
{
	const struct rank_input *in = arg;
	int x = *(const int *)a, y = *(const int *)b;
	if (in->replicas[x].host != in->replicas[y].host)
		return in->replicas[x].host - in->replicas[y].host;
	return x - y;
}

void rank_all(const struct rank_input *in, struct rank_scratch *s, struct rank_order *failover,
	      struct rank_order *order)
{
	/* group replicas by host once (O(R log R)) instead of scanning all
	 * replicas per host (O(H * R)) */
	for (int r = 0; r < in->n_replicas; r++)
		s->objects[r] = r;
	qsort_r(s->objects, (size_t)in->n_replicas, sizeof(int), cmp_host, (void *)in);
	for (int a = 0; a < in->n_replicas;) {
		int b = a, n_touched = 0;
		while (b < in->n_replicas &&
		       in->replicas[s->objects[b]].host == in->replicas[s->objects[a]].host)
			b++;
		rank_objects(in, s, s->objects + a, b - a, failover, &n_touched);
		finish(in, s, n_touched, NULL);
		a = b;
	}
	for (int i = 0; i < in->n_services; i++) {
		const struct rank_service *sv = &in->services[i];
		int n_touched = 0;
		if (sv->primary >= 0 && replica_live(in, sv->first + sv->primary)) {
			/* dialing the primary: the primary, then where it would fail over */
			const struct rank_order *f = &failover[sv->first + sv->primary];
			order[i].n = 0;
			order[i].idx[order[i].n++] = (uint8_t)sv->primary;
			for (int k = 0; k < f->n; k++)
				order[i].idx[order[i].n++] = f->idx[k];
		} else {
			order_rest(in, s, &n_touched, sv, -1, -1,
				   sv->strategy == FLARE_STRATEGY_LEAST_LOADED, &order[i]);
			finish(in, s, n_touched, NULL);
		}
	}
}
