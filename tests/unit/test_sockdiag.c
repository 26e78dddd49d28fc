/* sockdiag's port filter against the running kernel: two loopback
 * listeners, a connection to each, and dumps that name one port, both,
 * or neither of them. The kernel audits the bytecode (inet_diag_bc_audit):
 * a filter it refused would come back as a whole dump, which these
 * counts tell apart. */
#include "sockdiag.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define TCP_ESTABLISHED_BIT (1u << 1)

struct pair {
	int listener, client, server;
	uint16_t port;
};

static void open_pair(struct pair *p)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	p->listener = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(p->listener >= 0);
	assert_int_equal(bind(p->listener, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(p->listener, 4), 0);
	assert_int_equal(getsockname(p->listener, (struct sockaddr *)&a, &l), 0);
	p->port = ntohs(a.sin_port);
	p->client = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(p->client, (struct sockaddr *)&a, sizeof(a)), 0);
	p->server = accept(p->listener, NULL, NULL);
	assert_true(p->server >= 0);
}

static void close_pair(struct pair *p)
{
	close(p->client);
	close(p->server);
	close(p->listener);
}

struct count {
	uint16_t a, b;
	int with_a, with_b, others;
};

static void counted(void *arg, const struct inet_diag_msg *d, const struct tcp_info *ti,
		    size_t ti_len)
{
	(void)ti;
	(void)ti_len;
	struct count *c = arg;
	uint16_t sport = ntohs(d->id.idiag_sport);
	if (sport == c->a)
		c->with_a++;
	else if (sport == c->b)
		c->with_b++;
	else
		c->others++;
}

static struct count dump(const struct pair *x, const struct pair *y, const uint16_t *ports, int n,
			 int peer)
{
	struct count c = {.a = x->port, .b = y->port};
	assert_int_equal(
	    sockdiag_dump_ports(AF_INET, TCP_ESTABLISHED_BIT, ports, n, peer, counted, &c), 0);
	return c;
}

static void test_filter_keeps_the_ports_named(void **state)
{
	(void)state;
	struct pair x, y;
	open_pair(&x);
	open_pair(&y);
	/* an unused port first: the match is found past a miss and a jump */
	uint16_t one[] = {1, x.port}, both[] = {x.port, 2, y.port}, none[] = {3};
	struct count c = dump(&x, &y, one, 2, 0);
	assert_int_equal(c.with_a, 1); /* the accepted side; the client's sport is its own */
	assert_int_equal(c.with_b, 0);
	assert_int_equal(c.others, 0);
	c = dump(&x, &y, both, 3, 0);
	assert_int_equal(c.with_a, 1);
	assert_int_equal(c.with_b, 1);
	assert_int_equal(c.others, 0);
	c = dump(&x, &y, none, 1, 0);
	assert_int_equal(c.with_a + c.with_b + c.others, 0);
	c = dump(&x, &y, NULL, 0, 0);
	assert_int_equal(c.with_a + c.with_b + c.others, 0);
	/* by the peer's port: the clients' ends (their own ports are others) */
	c = dump(&x, &y, both, 3, 1);
	assert_int_equal(c.with_a + c.with_b, 0);
	assert_int_equal(c.others, 2);
	/* the whole dump sees both connections' four ends (and the rest) */
	struct count all = {.a = x.port, .b = y.port};
	assert_int_equal(sockdiag_dump(AF_INET, TCP_ESTABLISHED_BIT, counted, &all), 0);
	assert_true(all.with_a == 1 && all.with_b == 1 && all.others >= 2);
	close_pair(&x);
	close_pair(&y);
}

static void test_filter_sizes(void **state)
{
	(void)state;
	uint16_t ports[SOCKDIAG_MAX_PORTS + 1] = {0};
	uint8_t bc[(SOCKDIAG_MAX_PORTS + 1) * 12];
	assert_int_equal(sockdiag_ports_filter(ports, 0, 0, bc, sizeof(bc)), 0);
	assert_int_equal(sockdiag_ports_filter(ports, 1, 0, bc, sizeof(bc)), 8);
	assert_int_equal(sockdiag_ports_filter(ports, 3, 0, bc, sizeof(bc)), 32);
	assert_int_equal(sockdiag_ports_filter(ports, SOCKDIAG_MAX_PORTS, 0, bc, sizeof(bc)),
			 SOCKDIAG_MAX_PORTS * 12 - 4);
	assert_int_equal(sockdiag_ports_filter(ports, SOCKDIAG_MAX_PORTS + 1, 0, bc, sizeof(bc)), 0);
	assert_int_equal(sockdiag_ports_filter(ports, 3, 0, bc, 16), 0); /* does not fit */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_filter_keeps_the_ports_named),
	    cmocka_unit_test(test_filter_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
