/* Config loader: a valid file loads into the right structs, and each class
 * of mistake is reported as FILE:LINE: reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "config_keys.h"

#include <stdlib.h>

static const char *const good =
    "manager = { addresses = [ \"127.0.0.1:7400\", \"[::1]:7401\" ]; report_interval_ms = 50; };\n"
    "hosts = (\n"
    "  { name = \"tango\"; utilization = \"cgroup:flare/tango\"; },\n"
    "  { name = \"alpha\"; utilization = \"proc\"; },\n"
    "  { name = \"beta\";  utilization = \"file:/tmp/beta.util\"; monitor_socket = "
    "\"/tmp/b.sock\"; }\n"
    ");\n"
    "services = (\n"
    "  { name = \"A\"; address = \"127.0.0.1:9001\"; strategy = \"least-loaded\";\n"
    "    failover = \"proactive\"; replay = \"request-reply\";\n"
    "    replicas = (\n"
    "      { name = \"A-1\"; host = \"tango\"; address = \"127.0.0.1:9101\"; load = 0.40; },\n"
    "      { name = \"A-2\"; host = \"alpha\"; address = \"127.0.0.1:9102\"; load = 0.40; },\n"
    "      { name = \"A-3\"; host = \"beta\";  address = \"[::1]:9103\"; load = 1; } ); },\n"
    "  { name = \"B\"; address = \"127.0.0.1:9201\"; strategy = \"static\"; replay = \"none\";\n"
    "    protocol = \"http\"; replay_unsafe = true; balance = \"headroom\";\n"
    "    binding = \"request\";\n"
    "    replicas = ( { name = \"B-1\"; host = \"beta\"; address = \"127.0.0.1:9201\";\n"
    "                   capacity = 2500; } ); }\n"
    ");\n";

static void test_good_config_loads(void **state)
{
	(void)state;
	struct flare_config c;
	char err[256] = "";
	assert_int_equal(flare_config_load_string(good, "good.conf", &c, err, sizeof(err)), 0);
	assert_int_equal(c.n_managers, 2);
	assert_int_equal(c.managers[1].family, AF_INET6);
	assert_int_equal(c.report_interval_ms, 50);
	assert_int_equal(c.heartbeat_timeout_ms, 500);
	assert_int_equal(c.n_hosts, 3);
	assert_int_equal(c.hosts[0].util_kind, FLARE_UTIL_CGROUP);
	assert_string_equal(c.hosts[0].util_arg, "flare/tango");
	assert_int_equal(c.hosts[1].util_kind, FLARE_UTIL_PROC);
	/* the deployment's table is in the default name: two deployments on one
	 * machine with the same host names never share a monitor socket */
	assert_string_equal(c.hosts[1].monitor_socket, "@flare-monitor/flare-alpha");
	assert_string_equal(c.hosts[2].monitor_socket, "/tmp/b.sock");
	assert_int_equal(c.n_services, 2);
	assert_int_equal(c.n_replicas, 4);
	assert_int_equal(c.services[0].strategy, FLARE_STRATEGY_LEAST_LOADED);
	assert_int_equal(c.services[0].first_replica, 0);
	assert_int_equal(c.services[0].n_replicas, 3);
	assert_int_equal(c.services[0].primary, -1);
	assert_int_equal(c.services[1].replay, FLARE_REPLAY_NONE);
	assert_int_equal(c.services[0].protocol, FLARE_PROTO_AUTO);
	assert_int_equal(c.services[1].protocol, FLARE_PROTO_HTTP);
	assert_int_equal(c.services[0].replay_unsafe, 0);
	assert_int_equal(c.services[1].replay_unsafe, 1);
	assert_int_equal(c.services[0].balance, FLARE_BALANCE_PRIMARY);
	assert_int_equal(c.services[0].binding, FLARE_BINDING_SESSION);
	assert_int_equal(c.services[1].balance, FLARE_BALANCE_HEADROOM);
	assert_int_equal(c.services[1].binding, FLARE_BINDING_REQUEST);
	assert_true(c.replicas[3].capacity > 2499 && c.replicas[3].capacity < 2501);
	assert_true(c.replicas[0].capacity == 0);
	assert_int_equal(c.services[1].failover, FLARE_FAILOVER_PROACTIVE);
	assert_int_equal(c.services[1].primary, 3);
	assert_int_equal(c.replicas[2].host, 2);
	assert_int_equal(c.replicas[2].addr.family, AF_INET6);
	assert_true(c.replicas[0].load > 0.39 && c.replicas[0].load < 0.41);
	assert_int_equal(c.replicas[3].service, 1);
	assert_int_equal(flare_config_replica_index(&c, "A-3"), 2);
	flare_config_free(&c);
}

/* Replaces the first occurrence of `from` in the good config by `to` and
 * expects the load to fail with an error containing `expect`. */
static void expect_error(const char *from, const char *to, const char *expect)
{
	char text[4096], err[256] = "";
	const char *at = strstr(good, from);
	assert_non_null(at);
	snprintf(text, sizeof(text), "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
	struct flare_config c;
	int rc = flare_config_load_string(text, "bad.conf", &c, err, sizeof(err));
	if (rc == 0 || !strstr(err, expect) || strncmp(err, "bad.conf:", 9) != 0)
		fail_msg("replacing '%s' by '%s': rc %d, error '%s', expected '%s'", from, to, rc,
			 err, expect);
	/* a line number, not 0, for everything but I/O */
	assert_true(err[9] >= '1' && err[9] <= '9');
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_error("report_interval_ms = 50;", "report_interval_ms = = 50;", "syntax error");
}

static void test_unknown_key(void **state)
{
	(void)state;
	expect_error("load = 0.40; },", "lod = 0.40; },", "unknown key 'lod' in replica");
	expect_error("hosts = (", "hostz = 1;\nhosts = (", "unknown key 'hostz'");
}

static void test_wrong_type(void **state)
{
	(void)state;
	expect_error("load = 0.40;", "load = \"0.4\";", "'load' in replica must be a number");
	expect_error("report_interval_ms = 50", "report_interval_ms = 5.5", "must be an integer");
	expect_error("{ name = \"alpha\";", "{ name = 7;", "'name' in host must be a string");
}

static void test_missing_key(void **state)
{
	(void)state;
	expect_error("host = \"alpha\"; ", "", "missing required key 'host' in replica");
	expect_error("name = \"B\"; address = \"127.0.0.1:9201\";", "name = \"B\";",
		     "missing required key 'address' in service");
	expect_error("manager = { addresses = [ \"127.0.0.1:7400\", \"[::1]:7401\" ]; ",
		     "manager = { ", "missing required key 'addresses'");
}

static void test_duplicate_names(void **state)
{
	(void)state;
	expect_error("{ name = \"alpha\";", "{ name = \"tango\";", "duplicate host name 'tango'");
	expect_error("{ name = \"B\";", "{ name = \"A\";", "duplicate service name 'A'");
	expect_error("{ name = \"A-2\";", "{ name = \"A-1\";", "duplicate replica name 'A-1'");
}

static void test_undeclared_host(void **state)
{
	(void)state;
	expect_error("host = \"alpha\";", "host = \"omega\";",
		     "replica 'A-2' is on undeclared host 'omega'");
}

static void test_bad_addresses(void **state)
{
	(void)state;
	expect_error("127.0.0.1:9102", "127.0.0.1", "missing :PORT");
	expect_error("127.0.0.1:9102", "127.0.0.1:70000", "port must be");
	expect_error("127.0.0.1:9102", "::1:9102", "IPv6 address must be written [ADDR]:PORT");
	expect_error("127.0.0.1:9102", "300.1.1.1:9102", "malformed IP address");
	expect_error("[::1]:9103", "[::1:9103", "IPv6 address must be written");
	expect_error("127.0.0.1:9102", "127.0.0.1:9101", "duplicate address");
	expect_error("address = \"127.0.0.1:9201\";", "address = \"127.0.0.1:9001\";",
		     "duplicate address: service 'B'");
	expect_error("\"[::1]:7401\"", "\"127.0.0.1:7400\"", "duplicate manager address");
	/* a service dialing another service's replica */
	expect_error("address = \"127.0.0.1:9201\"; strategy",
		     "address = \"127.0.0.1:9102\"; strategy", "of another service");
}

static void test_load_range(void **state)
{
	(void)state;
	expect_error("load = 0.40;", "load = 1.5;", "outside 0..1");
	expect_error("load = 0.40;", "load = -0.1;", "outside 0..1");
}

static void test_unknown_enums(void **state)
{
	(void)state;
	expect_error("strategy = \"least-loaded\"", "strategy = \"fastest\"",
		     "unknown strategy 'fastest'");
	expect_error("failover = \"proactive\"", "failover = \"eventually\"", "unknown failover");
	expect_error("replay = \"none\"", "replay = \"twice\"", "unknown replay");
	expect_error("protocol = \"http\"", "protocol = \"gopher\"", "unknown protocol 'gopher'");
	expect_error("balance = \"headroom\"", "balance = \"fastest\"",
		     "unknown balance 'fastest'");
	expect_error("binding = \"request\"", "binding = \"sticky\"", "unknown binding 'sticky'");
	expect_error("capacity = 2500;", "capacity = -1;", "outside");
	expect_error("replay_unsafe = true", "replay_unsafe = 1", "must be true or false");
	expect_error("utilization = \"proc\"", "utilization = \"sar\"",
		     "unknown utilization source 'sar'");
	expect_error("utilization = \"proc\"", "utilization = \"file:\"", "needs a path");
}

static void test_limits(void **state)
{
	(void)state;
	expect_error("{ name = \"alpha\";", "{ name = \"a name that is far too long for flare\";",
		     "name must be 1..31 characters");
	expect_error("report_interval_ms = 50", "metrics = [ \"nope\" ]; report_interval_ms = 50",
		     "bad metrics address 'nope'");
	expect_error("report_interval_ms = 50",
		     "metrics = [ \"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\" ]; "
		     "report_interval_ms = 50",
		     "3 metrics addresses for 2 managers");
	expect_error(
	    "replicas = ( { name = \"B-1\"; host = \"beta\"; address = \"127.0.0.1:9201\";\n"
	    "                   capacity = 2500; } );",
	    "replicas = ();", "'replicas' in service is empty");
	expect_error("report_interval_ms = 50",
		     "report_interval_ms = 50; heartbeat_timeout_ms = 50",
		     "must be longer than heartbeat_interval_ms");
}

static void collect_warning(void *arg, const char *line)
{
	char *all = arg;
	strncat(all, line, 2047 - strlen(all));
	strncat(all, "\n", 2047 - strlen(all));
}

/* What a valid config cannot do as it says: said, not refused */
static void test_config_warnings(void **state)
{
	(void)state;
	struct flare_config c;
	char err[256] = "", all[2048] = "";
	assert_int_equal(flare_config_load_string(good, "good.conf", &c, err, sizeof(err)), 0);
	/* B is HTTP (framed) and A a session: nothing to say, but beta's
	 * utilization file that is not there */
	unlink("/tmp/beta.util");
	assert_int_equal(flare_config_warnings(&c, collect_warning, all), 1);
	assert_non_null(strstr(all, "host 'beta': utilization file /tmp/beta.util"));
	flare_config_free(&c);
	char text[4096];
	snprintf(text, sizeof(text), "%s", good);
	char *b = strstr(text, "protocol = \"http\";");
	assert_non_null(b);
	memcpy(b, "protocol = \"auto\";", strlen("protocol = \"auto\";"));
	strncat(text, "agent = { user = \"no-such-user-flare\"; };\n",
		sizeof(text) - strlen(text) - 1);
	assert_int_equal(flare_config_load_string(text, "w.conf", &c, err, sizeof(err)), 0);
	all[0] = '\0';
	assert_int_equal(flare_config_warnings(&c, collect_warning, all), 3);
	assert_non_null(strstr(all, "service 'B': binding 'request'"));
	assert_non_null(strstr(all, "agent.user 'no-such-user-flare': no such user"));
	flare_config_free(&c);
}

static void test_missing_file(void **state)
{
	(void)state;
	struct flare_config c;
	char err[256];
	assert_int_equal(flare_config_load("/nonexistent/flare.conf", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/flare.conf:0: no such file");
	/* a directory, and a file that ends inside a group: each says which */
	assert_int_equal(flare_config_load("conf", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "conf:0: a directory, not a file");
	char path[] = "/tmp/flare-unit-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "manager = { addresses = [ \"127.0.0.1:1\" ];\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	int rc = flare_config_load(path, &c, err, sizeof(err));
	unlink(path);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, ":2: the file ends inside a group or list"));
}

static void test_example_config_loads(void **state)
{
	(void)state;
	struct flare_config c;
	char err[256] = "";
	if (flare_config_load("conf/example.conf", &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(c.n_services, 1);
	flare_config_free(&c);
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[1 << 18];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* Every numeric key is documented in the README's reference with the
 * loader's default and range, as the row
 * | `group.name` | default | min..max | meaning | */
static void test_readme_documents_every_key(void **state)
{
	(void)state;
	const char *readme = read_file("README.md");
	assert_non_null(readme);
	int n = 0;
	for (const struct config_key *k = flare_config_keys; k->name; k++, n++) {
		char row[256];
		snprintf(row, sizeof(row), "| `%s.%s` | %g | %.15g..%.15g |", k->group, k->name,
			 k->def, k->min, k->max);
		if (!strstr(readme, row))
			fail_msg("README.md has no row starting '%s'", row);
	}
	assert_true(n >= 18);
}

/* The table's defaults are what a config that sets nothing gets. */
static void test_key_defaults_apply(void **state)
{
	(void)state;
	struct flare_config c;
	char err[256];
	const char *minimal =
	    "manager = { addresses = [ \"127.0.0.1:7400\" ]; };\n"
	    "hosts = ( { name = \"h\"; utilization = \"proc\"; } );\n"
	    "services = ( { name = \"S\"; address = \"127.0.0.1:9000\"; replicas = (\n"
	    "  { name = \"S-1\"; host = \"h\"; address = \"127.0.0.1:9001\"; } ); } );\n";
	assert_int_equal(flare_config_load_string(minimal, "minimal", &c, err, sizeof(err)), 0);
	for (const struct config_key *k = flare_config_keys; k->name; k++) {
		const char *base = strcmp(k->group, "services[]") == 0
				       ? (const char *)&c.services[0]
				       : (const char *)&c;
		double v = k->kind == KEY_INT ? *(const int *)(base + k->offset)
					      : *(const double *)(base + k->offset);
		if (v != k->def)
			fail_msg("%s.%s: %g, default %g", k->group, k->name, v, k->def);
	}
	assert_int_equal(c.services[0].connect_timeout_ms, FLARE_DEFAULT_CONNECT_TIMEOUT_MS);
	flare_config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_config_loads),
	    cmocka_unit_test(test_syntax_error),
	    cmocka_unit_test(test_unknown_key),
	    cmocka_unit_test(test_wrong_type),
	    cmocka_unit_test(test_missing_key),
	    cmocka_unit_test(test_duplicate_names),
	    cmocka_unit_test(test_undeclared_host),
	    cmocka_unit_test(test_bad_addresses),
	    cmocka_unit_test(test_load_range),
	    cmocka_unit_test(test_unknown_enums),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_example_config_loads),
	    cmocka_unit_test(test_config_warnings),
	    cmocka_unit_test(test_readme_documents_every_key),
	    cmocka_unit_test(test_key_defaults_apply),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
