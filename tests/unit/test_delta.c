/* The manager's delta computation: after a re-rank, exactly the published
 * entries that changed are pushed, utilization only beyond the threshold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "manager_fixture.h"

static const char *conf_text =
    "manager = { addresses = [ \"127.0.0.1:1\" ]; rank_threshold = 0.05; };\n"
    "hosts = ( { name = \"h0\"; utilization = \"file:/nonexistent\"; },\n"
    "          { name = \"h1\"; utilization = \"file:/nonexistent\"; } );\n"
    "services = ( { name = \"A\"; address = \"127.0.0.1:2\"; replicas = (\n"
    "  { name = \"A-1\"; host = \"h0\"; address = \"127.0.0.1:3\"; load = 0.2; },\n"
    "  { name = \"A-2\"; host = \"h1\"; address = \"127.0.0.1:4\"; load = 0.2; } ); } );\n";

static void test_nothing_changed_nothing_pushed(void **state)
{
	struct fixture *f = *state;
	struct fw_rank d;
	assert_int_equal(state_delta(&f->m, &d), 0);
	uint64_t gen = f->m.gen;
	state_rerank(&f->m, "again");
	assert_int_equal(f->m.gen, gen); /* no push, no new generation */
}

static void test_hosts_beyond_threshold(void **state)
{
	struct fixture *f = *state;
	struct manager *m = &f->m;
	struct fw_rank d;
	m->hosts[0].alive = 1;
	m->hosts[0].util = 0.30;
	assert_int_equal(state_delta(m, &d), 1);
	assert_int_equal(d.n_hosts, 1);
	assert_int_equal(d.hosts[0].idx, 0);
	assert_int_equal(d.hosts[0].alive, 1);
	assert_int_equal(d.hosts[0].util_ppm, 300000);
	assert_int_equal(state_delta(m, &d), 0); /* published now */
	m->hosts[0].util = 0.34;                 /* within the threshold */
	assert_int_equal(state_delta(m, &d), 0);
	m->hosts[0].util = 0.36; /* beyond it */
	assert_int_equal(state_delta(m, &d), 1);
	assert_int_equal(d.hosts[0].util_ppm, 360000);
	m->hosts[0].util = 2.0; /* clamped, never more than all of a host */
	assert_int_equal(state_delta(m, &d), 1);
	assert_int_equal(d.hosts[0].util_ppm, FLARE_PPM);
}

static void test_replica_liveness_needs_its_host(void **state)
{
	struct fixture *f = *state;
	struct manager *m = &f->m;
	struct fw_rank d;
	m->hosts[0].alive = 1;
	state_delta(m, &d);
	m->reps[1].alive = 1; /* A-2 registered, but its host h1 is dead */
	assert_int_equal(state_delta(m, &d), 0);
	m->hosts[1].alive = 1;
	assert_int_equal(state_delta(m, &d), 2); /* h1, and A-2 with it */
	assert_int_equal(d.n_hosts, 1);
	assert_int_equal(d.n_replicas, 1);
	assert_int_equal(d.replicas[0].idx, 1);
	assert_int_equal(d.replicas[0].alive, 1);
	/* a measured load replaces the configured one */
	m->reps[1].measured = 0.5;
	assert_int_equal(state_delta(m, &d), 1);
	assert_int_equal(d.replicas[0].load_ppm, 500000);
}

static void test_rerank_pushes_new_orders(void **state)
{
	struct fixture *f = *state;
	struct manager *m = &f->m;
	for (int h = 0; h < 2; h++)
		m->hosts[h].alive = 1;
	for (int r = 0; r < 2; r++)
		m->reps[r].alive = 1;
	m->hosts[0].util = 0.9; /* A-1's host loaded: A-2 first */
	m->hosts[1].util = 0.1;
	uint64_t gen = m->gen;
	state_rerank(m, "loads");
	assert_int_equal(m->gen, gen + 1);
	const struct fw_rank_service *s = &m->pub_svcs[0];
	assert_int_equal(s->n_order, m->order[0].n);
	assert_memory_equal(s->order, m->order[0].idx, s->n_order);
	assert_int_equal(s->order[0], 1);
	/* the loads swap: the order follows, in one more generation */
	m->hosts[0].util = 0.1;
	m->hosts[1].util = 0.9;
	state_rerank(m, "loads");
	assert_int_equal(m->gen, gen + 2);
	assert_int_equal(m->pub_svcs[0].order[0], 0);
}

/* host h0's report: its utilization, A-1 alive or dead for a reason */
static int report_h0(struct manager *m, double util, int alive, int reason)
{
	struct fw_report_replica rep = {.alive = (uint8_t)alive,
					.reason = (uint8_t)reason,
					.registered = 1,
					.pid = 1,
					.load_ppm = FW_LOAD_UNKNOWN};
	snprintf(rep.name, sizeof(rep.name), "A-1");
	struct fw_report r = {
	    .seq = 1, .util_ppm = (uint32_t)(util * FLARE_PPM), .n_replicas = 1, .replicas = &rep};
	snprintf(r.host, sizeof(r.host), "h0");
	int what = state_apply_report(m, 0, &r);
	if (what)
		state_rerank(m, "report"); /* as the manager does, sooner or later */
	return what;
}

/* What a report changed decides when it is pushed: a death at once, a
 * birth or a utilization with the next debounced re-rank */
static void test_only_a_death_is_urgent(void **state)
{
	struct fixture *f = *state;
	struct manager *m = &f->m;
	assert_int_equal(report_h0(m, 0.3, 1, FLARE_DEATH_NONE), STATE_CHANGED); /* births */
	assert_int_equal(report_h0(m, 0.3, 1, FLARE_DEATH_NONE), 0);
	assert_int_equal(report_h0(m, 0.32, 1, FLARE_DEATH_NONE), 0); /* within the threshold */
	assert_int_equal(report_h0(m, 0.5, 1, FLARE_DEATH_NONE), STATE_CHANGED);
	assert_int_equal(report_h0(m, 0.5, 0, FLARE_DEATH_EXITED), STATE_CHANGED | STATE_URGENT);
	assert_int_equal(report_h0(m, 0.5, 0, FLARE_DEATH_EXITED), 0);
	assert_int_equal(report_h0(m, 0.5, 0, FLARE_DEATH_HUNG),
			 STATE_CHANGED | STATE_URGENT);                          /* a new reason */
	assert_int_equal(report_h0(m, 0.5, 1, FLARE_DEATH_NONE), STATE_CHANGED); /* back */
	/* without an event loop, a re-rank that may wait is made at once */
	uint64_t gen = m->gen;
	m->hosts[1].alive = 1;
	state_rerank_soon(m);
	assert_true(m->gen > gen);
	assert_int_equal(m->rerank_due, 0);
}

int main(void)
{
	conf = conf_text;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_nothing_changed_nothing_pushed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hosts_beyond_threshold, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replica_liveness_needs_its_host, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rerank_pushes_new_orders, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_only_a_death_is_urgent, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
