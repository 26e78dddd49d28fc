/* The protocol framers (shim/core/frame/frame*.c): where each request and reply
 * ends and what it is, for real protocol samples, the same whether the
 * bytes come whole, one at a time or in random splits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame/frame.h"

#define MAX_ENDS 64

struct result {
	int n; /* messages ended */
	long end[MAX_ENDS];
	unsigned flags[MAX_ENDS];
	long failed_at; /* -1: framed to the end */
};

/* Feeds s in pieces of split() bytes (0: whole). rq: request flags each
 * reply answers, in order (replies only). */
static struct result frame(int proto, int reply, const char *s, size_t len, unsigned seed, int mode,
			   const uint16_t *rq)
{
	struct result r = {.failed_at = -1};
	struct fr_req q;
	struct fr_rep p;
	fr_req_init(&q, proto);
	fr_rep_init(&p, proto);
	p.rq = rq ? rq[0] : 0;
	size_t off = 0;
	while (off < len) {
		size_t piece = len - off;
		if (mode == 1)
			piece = 1;
		else if (mode == 2) {
			seed = seed * 1103515245u + 12345u;
			piece = 1 + (seed >> 16) % 7;
			if (piece > len - off)
				piece = len - off;
		}
		size_t end = off + piece;
		while (off < end) {
			int ended = 0;
			uint16_t qf = 0;
			uint8_t pf = 0;
			long used =
			    reply
				? fr_rep_step(&p, (const uint8_t *)s + off, end - off, &ended, &pf)
				: fr_req_step(&q, (const uint8_t *)s + off, end - off, &ended, &qf);
			if (used < 0) {
				r.failed_at = (long)off;
				return r;
			}
			off += (size_t)used;
			if (ended && r.n < MAX_ENDS) {
				r.end[r.n] = (long)off;
				r.flags[r.n] = reply ? pf : qf;
				r.n++;
				if (reply && rq)
					p.rq = rq[r.n];
			}
		}
	}
	return r;
}

/* Frames s whole, byte by byte and in random splits: all must agree. */
static struct result check_splits(int proto, int reply, const char *s, const uint16_t *rq)
{
	size_t len = strlen(s);
	struct result whole = frame(proto, reply, s, len, 0, 0, rq);
	for (int mode = 1; mode <= 2; mode++)
		for (unsigned seed = 1; seed < (mode == 2 ? 20u : 2u); seed++) {
			struct result r = frame(proto, reply, s, len, seed, mode, rq);
			assert_int_equal(r.n, whole.n);
			assert_int_equal(r.failed_at >= 0, whole.failed_at >= 0);
			for (int i = 0; i < r.n; i++) {
				assert_int_equal(r.end[i], whole.end[i]);
				assert_int_equal(r.flags[i], whole.flags[i]);
			}
		}
	return whole;
}

static void test_redis_requests(void **state)
{
	(void)state;
	struct result r =
	    check_splits(PROTO_REDIS, 0,
			 "*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
			 "*3\r\n$6\r\nclient\r\n$7\r\nsetname\r\n$2\r\nme\r\n*1\r\n$5\r\nMULTI\r\n"
			 "*1\r\n$4\r\nEXEC\r\nPING\r\n\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n"
			 "*2\r\n$4\r\nAUTH\r\n$0\r\n\r\n",
			 NULL);
	assert_int_equal(r.failed_at, -1);
	assert_int_equal(r.n, 8);
	unsigned want[] = {RQ_SESSION, 0, RQ_SESSION, RQ_TXN_BEGIN,
			   RQ_TXN_END, 0, RQ_ENDS,    RQ_SESSION};
	for (int i = 0; i < 8; i++)
		assert_int_equal(r.flags[i], want[i]);
	assert_int_equal(r.end[0], 23);
	/* not RESP: a bulk without its '$' */
	r = check_splits(PROTO_REDIS, 0, "*1\r\nGET\r\n", NULL);
	assert_true(r.failed_at >= 0);
}

static void test_redis_replies(void **state)
{
	(void)state;
	struct result r = check_splits(
	    PROTO_REDIS, 1,
	    "+OK\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n*2\r\n*1\r\n+a\r\n%1\r\n+k\r\n+"
	    "v\r\n"
	    "|1\r\n+key\r\n+val\r\n:5\r\n>2\r\n+message\r\n+x\r\n-ERR no\r\n*0\r\n_\r\n"
	    "*-1\r\n=7\r\ntxt:abc\r\n",
	    NULL);
	assert_int_equal(r.failed_at, -1);
	assert_int_equal(r.n, 12);
	assert_int_equal(r.flags[6], RP_PUSH);
	assert_int_equal(r.flags[7], RP_ERROR);
	assert_int_equal(r.end[0], 5);
	assert_int_equal(r.end[5],
			 (long)strlen("+OK\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n"
				      "*2\r\n*1\r\n+a\r\n%1\r\n+k\r\n+v\r\n"
				      "|1\r\n+key\r\n+val\r\n:5\r\n"));
	r = check_splits(PROTO_REDIS, 1, "+OK\r\n?x\r\n", NULL); /* streamed: not framed */
	assert_int_equal(r.n, 1);
	assert_true(r.failed_at >= 0);
}

static void test_http_requests(void **state)
{
	(void)state;
	struct result r = check_splits(
	    PROTO_HTTP, 0,
	    "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	    "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
	    "POST /y HTTP/1.1\r\nIdempotency-Key: 42\r\ncontent-length:  2 \r\n\r\nhi"
	    "PUT /z HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;ext=1\r\nabc\r\n"
	    "10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n"
	    "HEAD / HTTP/1.1\r\n\r\nPATCH / HTTP/1.1\r\n\r\nCONNECT h:443 HTTP/1.1\r\n\r\n",
	    NULL);
	assert_int_equal(r.failed_at, -1);
	assert_int_equal(r.n, 7);
	unsigned want[] = {0, RQ_UNSAFE, 0, 0, RQ_HEAD, RQ_UNSAFE, RQ_UNSAFE | RQ_ENDS};
	for (int i = 0; i < 7; i++)
		assert_int_equal(r.flags[i], want[i]);
	/* two lengths that differ: not framed */
	r = check_splits(PROTO_HTTP, 0,
			 "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
			 NULL);
	assert_true(r.failed_at >= 0);
}

static void test_http_replies(void **state)
{
	(void)state;
	static const uint16_t rq[] = {0, RQ_HEAD, 0, 0, 0, 0, 0, 0, 0}; /* one past the last */
	struct result r =
	    check_splits(PROTO_HTTP, 1,
			 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
			 "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" /* HEAD: no body */
			 "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: "
			 "chunked\r\n\r\n"
			 "5\r\nhello\r\n0\r\n\r\n"
			 "HTTP/1.1 204 No Content\r\n\r\n"
			 "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
			 "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
			 "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"
			 "HTTP/1.1 200 OK\r\n\r\nuntil the end",
			 rq);
	assert_int_equal(r.failed_at, -1);
	assert_int_equal(r.n, 8);
	/* the last one's body ends with the connection: framing ends there */
	unsigned want[] = {0, 0, 0, 0, 0, RP_CLOSE, RP_CLOSE, RP_ENDS | RP_CLOSE};
	for (int i = 0; i < 8; i++)
		assert_int_equal(r.flags[i], want[i]);
	r = check_splits(PROTO_HTTP, 1, "HTTP/1.1 200 OK\r\n\r\nuntil the end", NULL);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.flags[0], RP_ENDS | RP_CLOSE);
	r = check_splits(PROTO_HTTP, 1,
			 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", NULL);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.flags[0], RP_ENDS);
	r = check_splits(PROTO_HTTP, 1, "SSH-2.0-OpenSSH\r\n", NULL);
	assert_true(r.failed_at >= 0);
}

static void test_memcached(void **state)
{
	(void)state;
	struct result r =
	    check_splits(PROTO_MEMCACHED, 0,
			 "set k 0 0 5\r\nhello\r\nget a b c\r\ndelete k noreply\r\n"
			 "cas k 1 0 2 99\r\nhi\r\nmg k v\r\nms k 2 T0\r\nhi\r\nstats\r\n"
			 "incr n 1\r\n",
			 NULL);
	assert_int_equal(r.failed_at, -1);
	assert_int_equal(r.n, 8);
	unsigned want[] = {0, RQ_MC_MULTI, RQ_NOREPLY, 0, 0, 0, RQ_MC_MULTI, 0};
	for (int i = 0; i < 8; i++)
		assert_int_equal(r.flags[i], want[i]);
	r = check_splits(PROTO_MEMCACHED, 0, "mg k v q\r\n", NULL); /* quiet mode */
	assert_true(r.failed_at >= 0);
	static const uint16_t rq[] = {0, RQ_MC_MULTI, RQ_MC_MULTI, 0,
				      0, RQ_MC_MULTI, RQ_MC_MULTI, 0, 0};
	r = check_splits(PROTO_MEMCACHED, 1,
			 "STORED\r\nVALUE a 0 2\r\nhi\r\nVALUE b 5 1 77\r\nx\r\nEND\r\nEND\r\n"
			 "VA 2 v\r\nhi\r\nEN\r\nSTAT pid 1\r\nSTAT x y\r\nEND\r\n"
			 "SERVER_ERROR out of memory\r\n4\r\n",
			 rq);
	assert_int_equal(r.failed_at, -1);
	assert_int_equal(r.n, 8);
	assert_int_equal(r.flags[6], RP_ERROR);
	assert_int_equal(r.end[1], (long)strlen("STORED\r\nVALUE a 0 2\r\nhi\r\nVALUE b 5 1 77\r\n"
						"x\r\nEND\r\n"));
}

static void test_detect(void **state)
{
	(void)state;
	assert_int_equal(fr_detect((const uint8_t *)"*1\r\n$4\r\nPING\r\n", 14), PROTO_REDIS);
	assert_int_equal(fr_detect((const uint8_t *)"GET / HTTP/1.1\r\n", 16), PROTO_HTTP);
	assert_int_equal(fr_detect((const uint8_t *)"get k\r\n", 7), PROTO_MEMCACHED);
	assert_int_equal(fr_detect((const uint8_t *)"GETX / HTTP/1.1", 15), PROTO_OPAQUE);
	/* the longest words (9 letters) and what is longer than any */
	assert_int_equal(fr_detect((const uint8_t *)"verbosity 1\r\n", 13), PROTO_MEMCACHED);
	assert_int_equal(fr_detect((const uint8_t *)"flush_all\r\n", 11), PROTO_MEMCACHED);
	assert_int_equal(fr_detect((const uint8_t *)"verbosityx 1\r\n", 14), PROTO_OPAQUE);
	assert_int_equal(fr_detect((const uint8_t *)"OPTIONS", 7), PROTO_OPAQUE); /* no end yet */
	assert_int_equal(fr_detect((const uint8_t *)" GET /", 6), PROTO_OPAQUE);
	assert_int_equal(fr_detect((const uint8_t *)"\x00\x00\x00\x08\x04\xd2\x16\x2f", 8),
			 PROTO_OPAQUE);
	assert_int_equal(flare_protocol_parse("memcached"), PROTO_MEMCACHED);
	assert_int_equal(flare_protocol_parse("gopher"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_redis_requests), cmocka_unit_test(test_redis_replies),
	    cmocka_unit_test(test_http_requests),  cmocka_unit_test(test_http_replies),
	    cmocka_unit_test(test_memcached),      cmocka_unit_test(test_detect),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
