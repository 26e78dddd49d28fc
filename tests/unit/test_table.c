/* Shared table: lookups, deltas, staleness, re-publishing under a new
 * layout, rejection of corrupt segments, and a writer racing readers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "clock.h"
#include "table_writer.h"

#define NS 4 /* services */
#define NR 3 /* replicas each */

static char shm_name[64];

struct model {
	struct fw_rank_host hosts[NR];
	struct fw_rank_service svcs[NS];
	struct fw_rank_replica reps[NS * NR];
	struct fw_rank rank;
};

static void build_model(struct model *m, int n_services)
{
	memset(m, 0, sizeof(*m));
	for (int h = 0; h < NR; h++) {
		m->hosts[h].idx = (uint32_t)h;
		snprintf(m->hosts[h].name, sizeof(m->hosts[h].name), "host%d", h);
		snprintf(m->hosts[h].monitor_socket, sizeof(m->hosts[h].monitor_socket), "@mon-%d",
			 h);
		m->hosts[h].alive = 1;
	}
	for (int s = 0; s < n_services; s++) {
		struct fw_rank_service *sv = &m->svcs[s];
		sv->idx = (uint32_t)s;
		snprintf(sv->name, sizeof(sv->name), "S%d", s);
		char a[64];
		snprintf(a, sizeof(a), "127.0.0.1:%d", 9000 + s);
		flare_addr_parse(a, &sv->addr, NULL);
		sv->first_replica = (uint32_t)(s * NR);
		sv->n_replicas = NR;
		sv->primary = 0;
		sv->n_order = NR;
		for (int r = 0; r < NR; r++) {
			struct fw_rank_replica *p = &m->reps[s * NR + r];
			sv->order[r] = (uint8_t)r;
			p->idx = (uint32_t)(s * NR + r);
			snprintf(p->name, sizeof(p->name), "S%d-%d", s, r);
			/* replica 0 is the primary: same address as the service */
			snprintf(a, sizeof(a), "127.0.0.1:%d",
				 r == 0 ? 9000 + s : 9100 + s * NR + r);
			flare_addr_parse(a, &p->addr, NULL);
			p->service = (uint32_t)s;
			p->host = (uint32_t)r;
			p->alive = 1;
			p->n_failover = NR - 1;
			for (int k = 0, j = 0; k < NR; k++)
				if (k != r)
					p->failover[j++] = (uint8_t)k;
		}
	}
	m->rank = (struct fw_rank){.full = 1,
				   .gen = 1,
				   .n_hosts = NR,
				   .n_services = (uint32_t)n_services,
				   .n_replicas = (uint32_t)(n_services * NR),
				   .hosts = m->hosts,
				   .services = m->svcs,
				   .replicas = m->reps};
}

static int setup(void **state)
{
	(void)state;
	snprintf(shm_name, sizeof(shm_name), "/flare-test-%d", (int)getpid());
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	shm_unlink(shm_name);
	return 0;
}

static void test_lookup(void **state)
{
	(void)state;
	struct model m;
	struct flare_tbl_writer w;
	struct flare_tbl_reader r;
	struct flare_route route;
	struct flare_replica_info info;
	struct flare_addr a;
	const char *why = NULL;

	build_model(&m, NS);
	assert_int_equal(flare_tbl_writer_init(&w, shm_name, 5000), 0);
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, &why), 0);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_OK);

	flare_addr_parse("127.0.0.1:9002", &a, NULL);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_OK);
	assert_string_equal(route.svc.name, "S2");
	assert_int_equal(route.svc.n_replicas, NR);
	assert_string_equal(route.reps[1].name, "S2-1");
	assert_int_equal(route.reps[1].n_failover, NR - 1);

	/* the primary's address is found as a replica too, with its host */
	assert_int_equal(flare_tbl_lookup_replica(&r, &a, &info), FLARE_TBL_OK);
	assert_string_equal(info.rep.name, "S2-0");
	assert_string_equal(info.host.monitor_socket, "@mon-0");

	flare_addr_parse("127.0.0.1:9999", &a, NULL);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_NOTFOUND);
	flare_addr_parse("[::1]:9002", &a, NULL);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_NOTFOUND);

	/* a v4-mapped IPv6 sockaddr finds the IPv4 service */
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(9001)};
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &s6.sin6_addr);
	flare_addr_from_sockaddr((struct sockaddr *)&s6, sizeof(s6), &a);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_OK);
	assert_string_equal(route.svc.name, "S1");

	/* a delta marks a replica dead and reorders */
	struct fw_rank_replica dead = m.reps[NR + 1];
	dead.alive = 0;
	struct fw_rank_service svc = m.svcs[1];
	svc.order[0] = 2;
	svc.order[2] = 0;
	struct fw_rank delta = {.full = 0,
				.gen = 2,
				.n_services = 1,
				.services = &svc,
				.n_replicas = 1,
				.replicas = &dead};
	assert_int_equal(flare_tbl_write_delta(&w, &delta, &why), 0);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_OK);
	assert_int_equal(route.reps[1].alive, 0);
	assert_int_equal(route.svc.order[0], 2);
	assert_int_equal(route.gen, 2);
	assert_int_equal(flare_tbl_read_route(&r, 1, &route), FLARE_TBL_OK);
	assert_int_equal(route.reps[1].alive, 0);

	/* deltas that would break the table are refused, nothing changes */
	dead.failover[0] = 9;
	assert_int_equal(flare_tbl_write_delta(&w, &delta, &why), -1);
	dead.failover[0] = 0;
	dead.idx = 1000;
	assert_int_equal(flare_tbl_write_delta(&w, &delta, &why), -1);
	assert_string_equal(why, "delta names a replica out of range");
	dead.idx = NR + 1;
	dead.service = 0;
	assert_int_equal(flare_tbl_write_delta(&w, &delta, &why), -1);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_OK);
	assert_int_equal(route.gen, 2);

	flare_tbl_reader_close(&r);
	flare_tbl_writer_close(&w, 1);
}

static void test_relayout_retires_old_segment(void **state)
{
	(void)state;
	struct model m;
	struct flare_tbl_writer w;
	struct flare_tbl_reader r;
	struct flare_route route;
	struct flare_addr a;
	build_model(&m, 2);
	flare_tbl_writer_init(&w, shm_name, 5000);
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, NULL), 0);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, NULL), FLARE_TBL_OK);
	build_model(&m, NS); /* two more services: a new layout */
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, NULL), 0);
	flare_addr_parse("127.0.0.1:9003", &a, NULL);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_RETIRED);
	flare_tbl_reader_close(&r);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, NULL), FLARE_TBL_OK);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_OK);
	flare_tbl_reader_close(&r);
	flare_tbl_writer_close(&w, 1);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, NULL), FLARE_TBL_ABSENT);
}

static void test_stale(void **state)
{
	(void)state;
	struct model m;
	struct flare_tbl_writer w;
	struct flare_tbl_reader r;
	struct flare_route route;
	struct flare_replica_info info;
	struct flare_addr a;
	build_model(&m, NS);
	flare_tbl_writer_init(&w, shm_name, 100); /* stale after 100 ms */
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, NULL), 0);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, NULL), FLARE_TBL_OK);
	flare_addr_parse("127.0.0.1:9000", &a, NULL);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_OK);
	usleep(150 * 1000);
	memset(&route, 0, sizeof(route));
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_STALE);
	/* stale, but read: readers keep the last ranking (fail-static) */
	assert_int_equal(route.svc.n_replicas, NR);
	assert_true(flare_addr_equal(&route.svc.addr, &a));
	memset(&route, 0, sizeof(route));
	assert_int_equal(flare_tbl_read_route(&r, 1, &route), FLARE_TBL_STALE);
	assert_int_equal(route.svc.n_replicas, NR);
	/* the server side still finds its monitor */
	assert_int_equal(flare_tbl_lookup_replica(&r, &a, &info), FLARE_TBL_OK);
	flare_tbl_touch(&w);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_OK);
	flare_tbl_reader_close(&r);
	flare_tbl_writer_close(&w, 1);
}

/* Whether blocked readers are woken: the agent stamps the table with the
 * fine clock, the library reads it with the coarse one, up to a tick
 * behind; a stamp that far ahead is fresh, one further ahead is not. */
static void test_wakes_within_the_coarse_clock_slack(void **state)
{
	(void)state;
	struct model m;
	struct flare_tbl_writer w;
	struct flare_tbl_reader r;
	build_model(&m, NS);
	flare_tbl_writer_init(&w, shm_name, 5000);
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, NULL), 0);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, NULL), FLARE_TBL_OK);
	uint64_t t = ((const struct flare_tbl_hdr *)r.base)->updated_ns;
	assert_false(flare_tbl_wakes(&r, t)); /* the flag is not set */
	flare_tbl_writer_flags(&w, FLARE_TBL_FLAG_WAKE, 1);
	t = ((const struct flare_tbl_hdr *)r.base)->updated_ns;
	assert_true(flare_tbl_wakes(&r, t));
	assert_true(flare_tbl_wakes(&r, t - 10 * 1000000ull)); /* a coarse clock, a tick behind */
	assert_true(flare_tbl_wakes(&r, t + (FLARE_WAKE_FRESH_MS - 1) * 1000000ull));
	assert_false(flare_tbl_wakes(&r, t + (FLARE_WAKE_FRESH_MS + 1) * 1000000ull));
	assert_false(flare_tbl_wakes(&r, t - 1000 * 1000000ull)); /* a stamp from the future */
	assert_true(flare_tbl_wakes(&r, flare_coarse_ns()));
	flare_tbl_reader_close(&r);
	flare_tbl_writer_close(&w, 1);
}

static void test_full_rank_validation(void **state)
{
	(void)state;
	struct model m;
	struct flare_tbl_writer w;
	const char *why = NULL;
	flare_tbl_writer_init(&w, shm_name, 5000);
	build_model(&m, NS);
	m.reps[4].addr = m.reps[5].addr;
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, &why), -1);
	assert_string_equal(why, "two replicas with one address");
	build_model(&m, NS);
	m.svcs[1].first_replica = 11;
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, &why), -1);
	build_model(&m, NS);
	m.reps[0].host = 7;
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, &why), -1);
	assert_string_equal(why, "replica names a service or host out of range");
	flare_tbl_writer_close(&w, 1);
}

/* Writes a raw segment for the reader to judge. */
static void put_segment(const void *mem, size_t size)
{
	shm_unlink(shm_name);
	int fd = shm_open(shm_name, O_CREAT | O_RDWR, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, mem, size), (ssize_t)size);
	close(fd);
}

static void test_corrupt_segments(void **state)
{
	(void)state;
	struct model m;
	struct flare_tbl_writer w;
	struct flare_tbl_reader r;
	struct flare_route route;
	struct flare_addr a;
	const char *why = NULL;
	build_model(&m, NS);
	flare_tbl_writer_init(&w, shm_name, 5000);
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, NULL), 0);
	size_t size = w.size;
	uint8_t *good = malloc(size), *bad = malloc(size);
	memcpy(good, w.img, size);
	flare_tbl_writer_close(&w, 1);
	struct flare_tbl_hdr *h = (struct flare_tbl_hdr *)bad;

	memcpy(bad, good, size);
	h->magic = 0xdeadbeef;
	put_segment(bad, size);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_CORRUPT);
	assert_string_equal(why, "bad magic");

	memcpy(bad, good, size);
	h->version = 99;
	put_segment(bad, size);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_CORRUPT);
	assert_string_equal(why, "unsupported layout version");

	put_segment(good, size - 64); /* truncated */
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_CORRUPT);
	put_segment(good, 16);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_CORRUPT);

	memcpy(bad, good, size);
	h->off_replicas = (uint32_t)size - 8;
	put_segment(bad, size);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_CORRUPT);
	assert_string_equal(why, "a section lies outside the segment");

	memcpy(bad, good, size);
	h->n_slots = 3;
	put_segment(bad, size);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_CORRUPT);

	/* out-of-range indexes inside records: the layout is fine, lookups
	 * report corruption instead of reading out of bounds */
	flare_addr_parse("127.0.0.1:9001", &a, NULL);
	memcpy(bad, good, size);
	((struct flare_tbl_service *)(bad + h->off_services))[1].first_replica = 1u << 30;
	put_segment(bad, size);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_OK);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_CORRUPT);
	flare_tbl_reader_close(&r);

	memcpy(bad, good, size);
	((struct flare_tbl_replica *)(bad + h->off_replicas))[4].failover[0] = 200;
	put_segment(bad, size);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_OK);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_CORRUPT);
	flare_tbl_reader_close(&r);

	memcpy(bad, good, size);
	uint32_t *slots = (uint32_t *)(bad + h->off_svc_slots);
	for (uint32_t i = 0; i < h->n_slots; i++)
		if (slots[i])
			slots[i] = 0x7fffffff;
	put_segment(bad, size);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_OK);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_CORRUPT);
	flare_tbl_reader_close(&r);

	/* a writer that died inside the seqlock: readers give up, never spin forever */
	memcpy(bad, good, size);
	h->seq = 7;
	put_segment(bad, size);
	assert_int_equal(flare_tbl_reader_open(&r, shm_name, &why), FLARE_TBL_OK);
	assert_int_equal(flare_tbl_lookup_service(&r, &a, &route), FLARE_TBL_BUSY);
	flare_tbl_reader_close(&r);

	free(good);
	free(bad);
}

/* ---- a writer republishing while readers look up ---- */

#define RACE_SERVICE 1

struct race {
	struct flare_tbl_writer *w;
	struct model *m;
	int stop;
	unsigned long reads, torn, generations_seen;
};

/* Everything a snapshot of generation g must hold, and a checksum over it. */
static uint32_t mark_weight(uint32_t g, int i)
{
	return (g * 2654435761u + (uint32_t)i) % 1000001u;
}

static void *writer_thread(void *arg)
{
	struct race *rc = arg;
	struct model *m = rc->m;
	/* at least 300 ms of publishing, so readers on a busy machine see many
	 * generations; bounded in count too */
	uint64_t end = flare_monotonic_ns() + 300000000ull;
	for (uint32_t g = 1; (g <= 60000 || flare_monotonic_ns() < end) && g < 50000000 &&
			     !__atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE);
	     g++) {
		struct fw_rank_service sv = m->svcs[RACE_SERVICE];
		struct fw_rank_replica reps[NR];
		for (int i = 0; i < NR; i++) {
			reps[i] = m->reps[RACE_SERVICE * NR + i];
			reps[i].load_ppm = g % 1000000u;
			reps[i].weight_ppm = mark_weight(g, i);
			reps[i].alive = (uint8_t)(g & 1);
		}
		for (int i = 0; i < NR; i++)
			sv.order[i] = (uint8_t)((g + (uint32_t)i) % NR);
		if (g % 1000 == 0) {
			/* a full republish with the same layout goes through the same lock */
			m->svcs[RACE_SERVICE] = sv;
			memcpy(&m->reps[RACE_SERVICE * NR], reps, sizeof(reps));
			m->rank.gen = g;
			assert_int_equal(flare_tbl_write_full(rc->w, &m->rank, NULL), 0);
			continue;
		}
		struct fw_rank d = {.full = 0,
				    .gen = g,
				    .n_services = 1,
				    .services = &sv,
				    .n_replicas = NR,
				    .replicas = reps};
		if (flare_tbl_write_delta(rc->w, &d, NULL) != 0)
			__atomic_add_fetch(&rc->torn, 1, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&rc->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *reader_thread(void *arg)
{
	struct race *rc = arg;
	struct flare_tbl_reader r;
	struct flare_route route;
	struct flare_addr a;
	uint32_t last = 0;
	unsigned long reads = 0, torn = 0, seen = 0;
	flare_addr_parse("127.0.0.1:9001", &a, NULL);
	if (flare_tbl_reader_open(&r, shm_name, NULL) != FLARE_TBL_OK) {
		__atomic_add_fetch(&rc->torn, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	while (!__atomic_load_n(&rc->stop, __ATOMIC_RELAXED)) {
		int res = flare_tbl_lookup_service(&r, &a, &route);
		if (res == FLARE_TBL_BUSY)
			continue;
		if (res != FLARE_TBL_OK) {
			torn++;
			break;
		}
		reads++;
		uint32_t g = route.reps[0].load_ppm;
		int ok = route.gen % 1000000u == g || route.gen == 1;
		for (int i = 0; i < NR; i++) {
			ok &= route.reps[i].load_ppm == g;
			ok &= g == 0 ||
			      route.reps[i].weight_ppm == mark_weight((uint32_t)route.gen, i);
			ok &= route.reps[i].alive == (uint8_t)(route.gen & 1) || route.gen == 1;
			ok &= g == 0 ||
			      route.svc.order[i] == (uint8_t)((route.gen + (uint32_t)i) % NR);
		}
		if (!ok)
			torn++;
		if (g != last)
			seen++;
		last = g;
	}
	flare_tbl_reader_close(&r);
	__atomic_add_fetch(&rc->reads, reads, __ATOMIC_RELAXED);
	__atomic_add_fetch(&rc->torn, torn, __ATOMIC_RELAXED);
	__atomic_add_fetch(&rc->generations_seen, seen, __ATOMIC_RELAXED);
	return NULL;
}

static void test_writer_races_readers(void **state)
{
	(void)state;
	static struct model m;
	struct flare_tbl_writer w;
	build_model(&m, NS);
	/* generation 1: every replica carries load 0 and weight 0 */
	flare_tbl_writer_init(&w, shm_name, 60000);
	assert_int_equal(flare_tbl_write_full(&w, &m.rank, NULL), 0);
	struct race rc = {.w = &w, .m = &m};
	pthread_t wt, rt[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&rt[i], NULL, reader_thread, &rc);
	pthread_create(&wt, NULL, writer_thread, &rc);
	pthread_join(wt, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(rt[i], NULL);
	flare_tbl_writer_close(&w, 1);
	print_message("%lu consistent reads, %lu generations observed, %lu torn\n", rc.reads,
		      rc.generations_seen, rc.torn);
	assert_int_equal(rc.torn, 0);
	assert_true(rc.reads > 1000);
	assert_true(rc.generations_seen > 10); /* the race really happened */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_relayout_retires_old_segment, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wakes_within_the_coarse_clock_slack, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_full_rank_validation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_segments, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writer_races_readers, setup, teardown),
	};
	return cmocka_run_group_tests_name("table", tests, NULL, NULL);
}
