/* framecost: the framers' cost per request/reply pair, in ns, for a Redis
 * GET and a small HTTP/1.1 GET over keep-alive: the request through the
 * request framer and the reply through the reply framer, as the library
 * does on every write and read of a framed connection. Prints
 * "redis_ns=X http_ns=Y" (the median of 7 runs of N pairs). */
#include "frame/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile unsigned sink;

static double pair_ns(int proto, const char *req, const char *rep, long n)
{
	struct fr_req q;
	struct fr_rep p;
	size_t ql = strlen(req), pl = strlen(rep);
	fr_req_init(&q, proto);
	fr_rep_init(&p, proto);
	double t = now_ns();
	for (long i = 0; i < n; i++) {
		int ended;
		uint16_t qf;
		uint8_t pf;
		long a = fr_req_step(&q, (const uint8_t *)req, ql, &ended, &qf);
		p.rq = qf;
		long b = fr_rep_step(&p, (const uint8_t *)rep, pl, &ended, &pf);
		sink += (unsigned)(a + b + ended);
	}
	return (now_ns() - t) / (double)n;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(int proto, const char *req, const char *rep, long n)
{
	double v[7];
	for (int i = 0; i < 7; i++)
		v[i] = pair_ns(proto, req, rep, n);
	qsort(v, 7, sizeof(v[0]), cmp);
	return v[3];
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	double r = median(PROTO_REDIS, "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", "$5\r\nhello\r\n", n);
	double h = median(PROTO_HTTP,
			  "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: "
			  "ApacheBench/2.3\r\nAccept: */*\r\nConnection: Keep-Alive\r\n\r\n",
			  "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 01 Dec 2026 05:00:00 GMT\r\n"
			  "Content-Type: text/html\r\nContent-Length: 12\r\nConnection: keep-alive\r\n"
			  "\r\nhello world\n",
			  n);
	printf("redis_ns=%.1f http_ns=%.1f\n", r, h);
	return 0;
}
