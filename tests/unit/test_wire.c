/* Wire codec: every message type round-trips; truncated, oversized and
 * garbage input is an error, never a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

/* Encodes m, checks the frame header, decodes it back into out. */
static void roundtrip(const struct fw_msg *m, struct fw_msg *out)
{
	struct fw_buf b = {0};
	struct fw_hdr h;
	const char *why = NULL;
	assert_int_equal(fw_encode(&b, m), 0);
	long n = fw_frame_check(b.data, b.len, &h, &why);
	assert_int_equal(n, (long)b.len);
	assert_int_equal(h.type, m->type);
	/* every strict prefix is "need more", never an error or a frame */
	for (size_t i = 0; i < b.len; i++)
		assert_int_equal(fw_frame_check(b.data, i, &h, &why), 0);
	if (fw_decode(h.type, b.data + FW_HDR_LEN, h.len, out, &why) != 0)
		fail_msg("decode: %s", why);
	/* every truncated payload is rejected */
	for (size_t i = 0; i < h.len; i++) {
		struct fw_msg t;
		assert_int_equal(fw_decode(h.type, b.data + FW_HDR_LEN, i, &t, &why), -1);
		fw_msg_free(&t);
	}
	fw_buf_free(&b);
}

static void addr(struct flare_addr *a, const char *s)
{
	assert_int_equal(flare_addr_parse(s, a, NULL), 0);
}

static void test_hello_heartbeat(void **state)
{
	(void)state;
	struct fw_msg m = {.type = FW_HELLO}, out;
	m.u.hello = (struct fw_hello){.role = FW_ROLE_MONITOR, .pid = 4242, .name = "tango"};
	roundtrip(&m, &out);
	assert_int_equal(out.u.hello.role, FW_ROLE_MONITOR);
	assert_int_equal(out.u.hello.pid, 4242);
	assert_string_equal(out.u.hello.name, "tango");
	fw_msg_free(&out);

	m.type = FW_HEARTBEAT;
	m.u.heartbeat = (struct fw_heartbeat){.seq = 1ull << 40, .time_ns = 123456789012345ull};
	roundtrip(&m, &out);
	assert_true(out.u.heartbeat.seq == 1ull << 40);
	assert_true(out.u.heartbeat.time_ns == 123456789012345ull);
	fw_msg_free(&out);
}

static void test_register(void **state)
{
	(void)state;
	struct fw_msg m = {.type = FW_REGISTER}, out;
	m.u.reg.pid = 77;
	m.u.reg.n_addrs = 2;
	addr(&m.u.reg.addrs[0], "127.0.0.1:9101");
	addr(&m.u.reg.addrs[1], "[::1]:9102");
	roundtrip(&m, &out);
	assert_int_equal(out.u.reg.n_addrs, 2);
	assert_true(flare_addr_equal(&out.u.reg.addrs[1], &m.u.reg.addrs[1]));
	fw_msg_free(&out);
}

static void test_report(void **state)
{
	(void)state;
	struct fw_report_replica reps[2] = {
	    {.name = "A-1", .alive = 1, .registered = 1, .pid = 10, .load_ppm = 400000},
	    {.name = "B-1", .alive = 0, .registered = 0, .pid = 0, .load_ppm = FW_LOAD_UNKNOWN}};
	struct fw_msg m = {.type = FW_REPORT}, out;
	m.u.report = (struct fw_report){
	    .host = "tango", .seq = 9, .util_ppm = 550000, .n_replicas = 2, .replicas = reps};
	roundtrip(&m, &out);
	assert_string_equal(out.u.report.host, "tango");
	assert_int_equal(out.u.report.util_ppm, 550000);
	assert_int_equal(out.u.report.n_replicas, 2);
	assert_string_equal(out.u.report.replicas[1].name, "B-1");
	assert_int_equal(out.u.report.replicas[1].load_ppm, FW_LOAD_UNKNOWN);
	assert_int_equal(out.u.report.replicas[0].alive, 1);
	fw_msg_free(&out);
}

static void test_rank(void **state)
{
	(void)state;
	struct fw_rank_host hosts[1] = {
	    {.idx = 0, .name = "alpha", .monitor_socket = "@m", .alive = 1, .util_ppm = 1}};
	struct fw_rank_service svcs[1] = {{.idx = 0,
					   .name = "A",
					   .strategy = 1,
					   .connect_timeout_ms = 250,
					   .n_replicas = 2,
					   .primary = -1,
					   .n_order = 2,
					   .order = {1, 0}}};
	struct fw_rank_replica reps[2] = {
	    {.idx = 0, .name = "A-1", .alive = 1, .n_failover = 1, .failover = {1}},
	    {.idx = 1, .name = "A-2", .alive = 0, .load_ppm = 1000000, .n_failover = 1}};
	addr(&svcs[0].addr, "127.0.0.1:9001");
	addr(&reps[0].addr, "127.0.0.1:9101");
	addr(&reps[1].addr, "[::1]:9102");
	struct fw_msg m = {.type = FW_RANK}, out;
	m.u.rank = (struct fw_rank){.full = 1,
				    .gen = 5,
				    .n_hosts = 1,
				    .n_services = 1,
				    .n_replicas = 2,
				    .hosts = hosts,
				    .services = svcs,
				    .replicas = reps};
	roundtrip(&m, &out);
	assert_int_equal(out.u.rank.n_replicas, 2);
	assert_int_equal(out.u.rank.services[0].primary, -1);
	assert_int_equal(out.u.rank.services[0].order[0], 1);
	assert_int_equal(out.u.rank.services[0].connect_timeout_ms, 250);
	assert_true(flare_addr_equal(&out.u.rank.replicas[1].addr, &reps[1].addr));
	assert_string_equal(out.u.rank.hosts[0].monitor_socket, "@m");
	fw_msg_free(&out);

	/* an order naming a replica the service does not have is rejected */
	svcs[0].order[0] = 7;
	struct fw_buf b = {0};
	struct fw_hdr h;
	const char *why;
	fw_encode(&b, &m);
	assert_true(fw_frame_check(b.data, b.len, &h, &why) > 0);
	assert_int_equal(fw_decode(h.type, b.data + FW_HDR_LEN, h.len, &out, &why), -1);
	assert_string_equal(why, "ranking names a replica out of range");
	fw_msg_free(&out);
	fw_buf_free(&b);
}

static void test_text_and_query(void **state)
{
	(void)state;
	struct fw_msg m = {.type = FW_STATUS_RESP}, out;
	m.u.text.format = 1;
	m.u.text.text = "{\"hosts\":[]}";
	roundtrip(&m, &out);
	assert_string_equal(out.u.text.text, "{\"hosts\":[]}");
	fw_msg_free(&out);

	m.type = FW_QUERY_RESP;
	memset(&m.u.query, 0, sizeof(m.u.query));
	addr(&m.u.query.service, "127.0.0.1:9001");
	addr(&m.u.query.failed, "127.0.0.1:9101");
	m.u.query.n_addrs = 1;
	addr(&m.u.query.addrs[0], "127.0.0.1:9102");
	roundtrip(&m, &out);
	assert_int_equal(out.u.query.n_addrs, 1);
	assert_int_equal(out.u.query.addrs[0].port, 9102);
	fw_msg_free(&out);
}

static void test_bad_headers(void **state)
{
	(void)state;
	struct fw_hdr h;
	const char *why = NULL;
	uint8_t bad_magic[8] = {0x12, 0x34, 1, 1, 0, 0, 0, 0};
	uint8_t bad_version[8] = {0xF1, 0xA3, 9, 1, 0, 0, 0, 0};
	uint8_t bad_type[8] = {0xF1, 0xA3, 1, 99, 0, 0, 0, 0};
	uint8_t oversized[8] = {0xF1, 0xA3, 1, FW_RANK, 0x7f, 0xff, 0xff, 0xff};
	assert_int_equal(fw_frame_check(bad_magic, 8, &h, &why), -1);
	assert_string_equal(why, "bad magic");
	assert_int_equal(fw_frame_check(bad_magic, 2, &h, &why), -1);
	assert_int_equal(fw_frame_check(bad_version, 8, &h, &why), -1);
	assert_int_equal(fw_frame_check(bad_type, 8, &h, &why), -1);
	assert_int_equal(fw_frame_check(oversized, 8, &h, &why), -1);
	assert_string_equal(why, "frame larger than the protocol allows");
}

static void test_lying_counts_and_garbage(void **state)
{
	(void)state;
	struct fw_msg out;
	const char *why = NULL;
	/* a report claiming 2^32-1 replicas in 20 bytes must not allocate them */
	uint8_t rep[] = {0, 1, 'h', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(fw_decode(FW_REPORT, rep, sizeof(rep), &out, &why), -1);
	assert_string_equal(why, "element count larger than the payload");
	fw_msg_free(&out);
	/* trailing bytes */
	uint8_t hb[17] = {0};
	assert_int_equal(fw_decode(FW_HEARTBEAT, hb, 17, &out, &why), -1);
	assert_string_equal(why, "trailing bytes after the message");
	/* NUL inside a string, bad role */
	uint8_t hello[] = {FW_ROLE_AGENT, 0, 0, 0, 1, 0, 2, 'a', 0};
	assert_int_equal(fw_decode(FW_HELLO, hello, sizeof(hello), &out, &why), -1);
	hello[0] = 9;
	hello[8] = 'b';
	assert_int_equal(fw_decode(FW_HELLO, hello, sizeof(hello), &out, &why), -1);
	assert_string_equal(why, "unknown peer role");
	/* random garbage through every decoder: no crash, no leak (asan) */
	srand(1);
	uint8_t junk[512];
	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)rand() % sizeof(junk);
		for (size_t i = 0; i < n; i++)
			junk[i] = (uint8_t)rand();
		uint8_t type = (uint8_t)(1 + rand() % FW_TYPE_MAX);
		if (fw_decode(type, junk, n, &out, &why) == 0)
			assert_int_equal(out.type, type);
		fw_msg_free(&out);
	}
}

static void test_fixed_buffer_overflow(void **state)
{
	(void)state;
	uint8_t mem[16];
	struct fw_buf b;
	fw_buf_init_fixed(&b, mem, sizeof(mem));
	struct fw_register reg = {.pid = 1, .n_addrs = 2};
	addr(&reg.addrs[0], "127.0.0.1:1");
	addr(&reg.addrs[1], "127.0.0.1:2");
	assert_int_equal(fw_encode_register(&b, &reg), -1);
	assert_int_equal(b.err, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hello_heartbeat),
	    cmocka_unit_test(test_register),
	    cmocka_unit_test(test_report),
	    cmocka_unit_test(test_rank),
	    cmocka_unit_test(test_text_and_query),
	    cmocka_unit_test(test_bad_headers),
	    cmocka_unit_test(test_lying_counts_and_garbage),
	    cmocka_unit_test(test_fixed_buffer_overflow),
	};
	return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
