/* rankcost HOSTS OBJECTS REPLICAS RUNS: time of a full Algorithm 1 ranking
 * (every replica's failover order and every service's order) over a
 * synthetic deployment; prints the median and the minimum in ms. */
#include "rank.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int nh = argc > 1 ? atoi(argv[1]) : 1000, no = argc > 2 ? atoi(argv[2]) : 10000;
	int k = argc > 3 ? atoi(argv[3]) : 3, runs = argc > 4 ? atoi(argv[4]) : 11;
	if (nh < 1 || no < 1 || k < 1 || k > FLARE_MAX_REPLICAS || runs < 1 || runs > 1000)
		return 2;
	int nr = no * k;
	struct rank_host *h = calloc((size_t)nh, sizeof(*h));
	struct rank_service *s = calloc((size_t)no, sizeof(*s));
	struct rank_replica *r = calloc((size_t)nr, sizeof(*r));
	struct rank_order *fo = calloc((size_t)nr, sizeof(*fo)),
			  *order = calloc((size_t)no, sizeof(*order));
	double *t = calloc((size_t)runs, sizeof(*t));
	srand(7);
	for (int i = 0; i < nh; i++)
		h[i] = (struct rank_host){(double)(rand() % 1000) / 1000.0, 1};
	for (int o = 0; o < no; o++) {
		s[o] = (struct rank_service){o * k, k, FLARE_STRATEGY_LEAST_LOADED, 0};
		for (int j = 0; j < k; j++)
			r[o * k + j] = (struct rank_replica){o, (o + j * 7919) % nh, 1,
							     (double)(rand() % 500) / 1000.0};
	}
	struct rank_input in = {h, nh, s, no, r, nr};
	struct rank_scratch sc;
	if (rank_scratch_init(&sc, nh, nr) < 0)
		return 1;
	for (int i = 0; i < runs; i++) {
		double a = now_ms();
		rank_all(&in, &sc, fo, order);
		t[i] = now_ms() - a;
	}
	qsort(t, (size_t)runs, sizeof(double), cmp);
	printf("hosts=%d objects=%d replicas=%d runs=%d median_ms=%.2f min_ms=%.2f\n", nh, no, nr,
	       runs, t[runs / 2], t[0]);
	return 0;
}
