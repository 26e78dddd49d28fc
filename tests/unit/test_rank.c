/* FLARe Algorithm 1, including the paper's own scenario (Table 1 and its
 * failover experiment). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rank.h"

enum { TANGO, ALPHA, BETA, LAMBADA, CHARLIE, N_HOSTS };
/* replicas: A-1 A-2 A-3 | B-1 B-2 B-3 | C-1 | D-1 | DY-1 | DY-2 */
enum { A1, A2, A3, B1, B2, B3, C1, D1, DY1, DY2, N_REPS };

static struct rank_host hosts[N_HOSTS];
static struct rank_replica reps[N_REPS];
static struct rank_service svcs[6];
static struct rank_input in;

/* The paper's placement; host utilization = sum of the primaries it runs.
 * `swap` lists A-3/B-3 before A-2/B-2, as the paper's static deployment
 * chose them. */
static void paper(int strategy, int swap)
{
	static const struct {
		int svc, host;
		double load;
	} place[N_REPS] = {{0, TANGO, .4},   {0, ALPHA, .4},   {0, LAMBADA, .4}, {1, TANGO, .3},
			   {1, BETA, .3},    {1, CHARLIE, .3}, {2, ALPHA, .2},   {3, BETA, .1},
			   {4, LAMBADA, .5}, {5, CHARLIE, .5}};
	for (int r = 0; r < N_REPS; r++)
		reps[r] = (struct rank_replica){place[r].svc, place[r].host, 1, place[r].load};
	if (swap) {
		struct rank_replica t = reps[A2];
		reps[A2] = reps[A3];
		reps[A3] = t;
		t = reps[B2];
		reps[B2] = reps[B3];
		reps[B3] = t;
	}
	static const int first[6] = {0, 3, 6, 7, 8, 9}, n[6] = {3, 3, 1, 1, 1, 1};
	for (int s = 0; s < 6; s++)
		svcs[s] = (struct rank_service){first[s], n[s], strategy, 0};
	memset(hosts, 0, sizeof(hosts));
	for (int h = 0; h < N_HOSTS; h++)
		hosts[h].alive = 1;
	/* measured utilization: the primaries (first replica of each service) */
	for (int s = 0; s < 6; s++)
		hosts[reps[first[s]].host].util += reps[first[s]].load;
	in = (struct rank_input){hosts, N_HOSTS, svcs, 6, reps, N_REPS};
}

static void test_paper_least_loaded(void **state)
{
	(void)state;
	struct rank_scratch s;
	struct rank_order fo[N_REPS];
	double expected[N_HOSTS];
	paper(FLARE_STRATEGY_LEAST_LOADED, 0);
	assert_int_equal(rank_scratch_init(&s, N_HOSTS, N_REPS), 0);
	memset(fo, 0, sizeof(fo));
	rank_host_failure(&in, TANGO, &s, fo, expected);
	/* A fails over to A-2 (ALPHA), B to B-2 (BETA): the paper's result */
	assert_int_equal(fo[A1].idx[0], A2 - A1);
	assert_int_equal(fo[B1].idx[0], B2 - B1);
	assert_int_equal(fo[A1].n, 2);
	assert_int_equal(fo[A1].idx[1], A3 - A1);
	assert_true(expected[ALPHA] > 0.59 && expected[ALPHA] < 0.61);
	assert_true(expected[BETA] > 0.39 && expected[BETA] < 0.41);
	assert_true(expected[LAMBADA] > 0.49 && expected[LAMBADA] < 0.51);
	assert_true(expected[CHARLIE] > 0.49 && expected[CHARLIE] < 0.51);
	rank_scratch_free(&s);
}

static void test_paper_static(void **state)
{
	(void)state;
	struct rank_scratch s;
	struct rank_order fo[N_REPS];
	double expected[N_HOSTS];
	paper(FLARE_STRATEGY_STATIC, 1);
	rank_scratch_init(&s, N_HOSTS, N_REPS);
	rank_host_failure(&in, TANGO, &s, fo, expected);
	/* static keeps the deployed order: A-3 on LAMBADA, B-3 on CHARLIE */
	assert_int_equal(reps[svcs[0].first + fo[A1].idx[0]].host, LAMBADA);
	assert_int_equal(reps[svcs[1].first + fo[B1].idx[0]].host, CHARLIE);
	assert_true(expected[LAMBADA] > 0.89 && expected[LAMBADA] < 0.91);
	assert_true(expected[CHARLIE] > 0.79 && expected[CHARLIE] < 0.81);
	/* the same deployment ranked least-loaded still picks ALPHA and BETA */
	paper(FLARE_STRATEGY_LEAST_LOADED, 1);
	rank_host_failure(&in, TANGO, &s, fo, expected);
	assert_int_equal(reps[svcs[0].first + fo[A1].idx[0]].host, ALPHA);
	assert_int_equal(reps[svcs[1].first + fo[B1].idx[0]].host, BETA);
	rank_scratch_free(&s);
}

/* Two objects on one failing host whose best target is the same host: the
 * second one sees the first one's load and goes elsewhere. */
static void test_expected_load_accumulates(void **state)
{
	(void)state;
	static struct rank_host h[3] = {{0.5, 1}, {0.1, 1}, {0.3, 1}};
	static struct rank_replica r[6] = {{0, 0, 1, .4}, {0, 1, 1, .4}, {0, 2, 1, .4},
					   {1, 0, 1, .3}, {1, 1, 1, .3}, {1, 2, 1, .3}};
	static struct rank_service sv[2] = {{0, 3, FLARE_STRATEGY_LEAST_LOADED, 0},
					    {3, 3, FLARE_STRATEGY_LEAST_LOADED, 0}};
	struct rank_input x = {h, 3, sv, 2, r, 6};
	struct rank_scratch s;
	struct rank_order fo[6];
	rank_scratch_init(&s, 3, 6);
	rank_host_failure(&x, 0, &s, fo, NULL);
	assert_int_equal(fo[0].idx[0], 1); /* .4 -> host 1 (0.1 -> 0.5) */
	assert_int_equal(fo[3].idx[0], 2); /* .3 -> host 2 (0.3 < 0.5) */
	/* dead replicas and replicas on dead hosts go last */
	r[1].alive = 0;
	h[2].alive = 0;
	rank_host_failure(&x, 0, &s, fo, NULL);
	assert_int_equal(fo[0].n, 2);
	assert_int_equal(fo[0].idx[0], 1);
	assert_int_equal(fo[0].idx[1], 2);
	rank_scratch_free(&s);
}

static void test_rank_all_orders(void **state)
{
	(void)state;
	struct rank_scratch s;
	struct rank_order fo[N_REPS], order[6];
	paper(FLARE_STRATEGY_LEAST_LOADED, 0);
	rank_scratch_init(&s, N_HOSTS, N_REPS);
	rank_all(&in, &s, fo, order);
	assert_int_equal(fo[A1].idx[0], A2 - A1);
	assert_int_equal(fo[B1].idx[0], B2 - B1);
	/* the service's order starts with its live primary, then its failover */
	assert_int_equal(order[0].idx[0], 0);
	assert_int_equal(order[0].idx[1], 1);
	/* primary dead: the order is by host utilization (ALPHA .2 < LAMBADA .5) */
	reps[A1].alive = 0;
	rank_all(&in, &s, fo, order);
	assert_int_equal(order[0].n, 3);
	assert_int_equal(order[0].idx[0], A2 - A1);
	assert_int_equal(order[0].idx[1], A3 - A1);
	assert_int_equal(order[0].idx[2], 0);
	/* a virtual address: no primary */
	svcs[1].primary = -1;
	hosts[CHARLIE].util = 0.05;
	rank_all(&in, &s, fo, order);
	assert_int_equal(order[1].idx[0], B3 - B1);
	rank_scratch_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_paper_least_loaded),
	    cmocka_unit_test(test_paper_static),
	    cmocka_unit_test(test_expected_load_accumulates),
	    cmocka_unit_test(test_rank_all_orders),
	};
	return cmocka_run_group_tests_name("rank", tests, NULL, NULL);
}
