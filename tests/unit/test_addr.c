/* Address parsing, formatting and matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "addr.h"
#include "log.h"

static void test_parse_and_format(void **state)
{
	(void)state;
	struct flare_addr a;
	char buf[FLARE_ADDR_STRLEN];
	assert_int_equal(flare_addr_parse("10.1.2.3:80", &a, NULL), 0);
	assert_int_equal(a.family, AF_INET);
	assert_int_equal(a.port, 80);
	assert_string_equal(flare_addr_format(&a, buf, sizeof(buf)), "10.1.2.3:80");
	assert_int_equal(flare_addr_parse("[fe80::1]:65535", &a, NULL), 0);
	assert_int_equal(a.family, AF_INET6);
	assert_string_equal(flare_addr_format(&a, buf, sizeof(buf)), "[fe80::1]:65535");
	/* v4-mapped folds to v4 */
	assert_int_equal(flare_addr_parse("[::ffff:127.0.0.1]:9", &a, NULL), 0);
	assert_int_equal(a.family, AF_INET);
	const char *bad[] = {"",           ":80",          "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536",
			     "1.2.3.4:8x", "host:80",      "[::1]",    "[::1]80",   "::1:80",
			     "1.2.3:80",   "[1.2.3.4]:80x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;
		if (flare_addr_parse(bad[i], &a, &why) == 0)
			fail_msg("'%s' parsed", bad[i]);
		assert_non_null(why);
	}
}

static void test_parse_ip_alone(void **state)
{
	(void)state;
	struct flare_addr a;
	assert_int_equal(flare_addr_parse_ip("198.18.0.7", &a), 0);
	assert_int_equal(a.family, AF_INET);
	assert_int_equal(a.port, 0);
	assert_int_equal(flare_addr_parse_ip("::ffff:198.18.0.7", &a), 0);
	assert_int_equal(a.family, AF_INET); /* v4-mapped: the IPv4 address */
	assert_int_equal(flare_addr_parse_ip("::1", &a), 0);
	assert_int_equal(a.family, AF_INET6);
	assert_int_equal(flare_addr_parse_ip("198.18.0.7:80", &a), -1);
	assert_int_equal(flare_addr_parse_ip("", &a), -1);
}

static void test_sockaddr_roundtrip(void **state)
{
	(void)state;
	struct flare_addr a, b;
	struct sockaddr_storage ss;
	flare_addr_parse("127.0.0.1:9001", &a, NULL);
	socklen_t n = flare_addr_to_sockaddr(&a, &ss);
	assert_int_equal(n, sizeof(struct sockaddr_in));
	assert_int_equal(flare_addr_from_sockaddr((struct sockaddr *)&ss, n, &b), 0);
	assert_true(flare_addr_equal(&a, &b));
	assert_int_equal(flare_addr_hash(&a), flare_addr_hash(&b));
	/* to a v6 socket, an IPv4 replica is written v4-mapped */
	n = flare_addr_to_sockaddr_family(&a, AF_INET6, &ss);
	assert_int_equal(n, sizeof(struct sockaddr_in6));
	assert_true(IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&ss)->sin6_addr));
	assert_int_equal(flare_addr_from_sockaddr((struct sockaddr *)&ss, n, &b), 0);
	assert_true(flare_addr_equal(&a, &b));
	/* a v6 replica cannot be reached from a v4 socket */
	flare_addr_parse("[::1]:9001", &b, NULL);
	assert_int_equal(flare_addr_to_sockaddr_family(&b, AF_INET, &ss), 0);
	assert_false(flare_addr_equal(&a, &b));
	/* short or foreign sockaddrs are not managed */
	struct sockaddr_in in = {.sin_family = AF_INET};
	assert_int_equal(flare_addr_from_sockaddr((struct sockaddr *)&in, 4, &b), -1);
	struct sockaddr un = {.sa_family = AF_UNIX};
	assert_int_equal(flare_addr_from_sockaddr(&un, sizeof(un), &b), -1);
}

static void test_log_levels(void **state)
{
	(void)state;
	assert_int_equal(flare_log_level_parse("debug"), FLARE_LOG_DEBUG);
	assert_int_equal(flare_log_level_parse("warn"), FLARE_LOG_WARN);
	assert_int_equal(flare_log_level_parse("loud"), -1);
	assert_int_equal(flare_log_level_parse(NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_and_format),
	    cmocka_unit_test(test_parse_ip_alone),
	    cmocka_unit_test(test_sockaddr_roundtrip),
	    cmocka_unit_test(test_log_levels),
	};
	return cmocka_run_group_tests_name("addr", tests, NULL, NULL);
}
