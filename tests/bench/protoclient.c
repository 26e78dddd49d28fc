/* protoclient redis|http|redis-blocking SVC_PORT REPLICA_PORT PIPELINE PAIRS PER_BATCH
 *
 * The protocols benchmark's paired client, run under flare-run. Two
 * processes, one keep-alive connection each to the same server: this one
 * to the service address (managed by the library, framing on), and a
 * child it starts without the library straight to the replica's port
 * (direct). They take turns: batches of PER_BATCH requests, the order
 * flipping every pair, each driven the way event-loop clients do it
 * (PIPELINE requests in one write, epoll_wait, reads until every reply is
 * whole, each reply checked), or with redis-blocking the way a blocking
 * client does it (read blocks until the reply comes: the library's sliced
 * wait). Neighbours on a shared machine change its
 * speed over seconds, not between two batches a few milliseconds apart,
 * so the ratio of each pair's times is the managed overhead with the
 * noise taken out; the median of PAIRS of them is printed, with each
 * side's requests/s:
 *   "ratio=X direct_rps=Y managed_rps=Z"
 * (ratio: managed throughput / direct). Redis: GET of a key SET first;
 * HTTP: GET /index.html, HTTP/1.1 keep-alive, a 200 with a body. Exits 1
 * naming the first wrong reply or failed call. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PIPELINE 64
#define BUF_CAP (1 << 16)
#define VALUE "flare-protocols-benchmark-value!" /* 32 bytes */

static const char REDIS_GET[] = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
static const char REDIS_REPLY[] = "$32\r\n" VALUE "\r\n";
static const char HTTP_GET[] = "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n"
			       "User-Agent: flare-protoclient\r\nAccept: */*\r\n\r\n";

struct conn {
	int fd;
	char buf[BUF_CAP];
	size_t have;
};

static int http, blocking;
static int ep;

static void die(const char *what)
{
	fprintf(stderr, "protoclient: %s%s%s\n", what, errno ? ": " : "",
		errno ? strerror(errno) : "");
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void dial(struct conn *c, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	if (!blocking && epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
		die("epoll_ctl");
	c->have = 0;
}

/* The length of the whole reply at the start of c->buf, 0 when it is not
 * all there yet; a reply that is not the expected one exits. */
static size_t whole_reply(struct conn *c)
{
	if (!http) {
		size_t n = sizeof(REDIS_REPLY) - 1;
		if (c->have < n)
			return 0;
		if (memcmp(c->buf, REDIS_REPLY, n) != 0)
			die("a Redis reply that is not the value SET");
		return n;
	}
	char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
	if (!end)
		return 0;
	size_t head = (size_t)(end - c->buf) + 4;
	if (c->have < 12 || memcmp(c->buf, "HTTP/1.1 200", 12) != 0)
		die("an HTTP reply that is not a 200");
	long body = -1;
	for (char *l = memchr(c->buf, '\n', head); l && l < end; l = memchr(l + 1, '\n', head))
		if (strncasecmp(l + 1, "Content-Length:", 15) == 0)
			body = strtol(l + 16, NULL, 10);
	if (body <= 0)
		die("an HTTP reply without a body length");
	return head + (size_t)body <= c->have ? head + (size_t)body : 0;
}

static void write_all(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(c->fd, p, n);
		if (w <= 0)
			die("write");
		p += w;
		n -= (size_t)w;
	}
}

/* pipeline requests out, their replies read and checked */
static void round_trip(struct conn *c, const char *batch, size_t len, int pipeline)
{
	write_all(c, batch, len);
	for (int got = 0; got < pipeline;) {
		struct epoll_event ev[2];
		if (!blocking && epoll_wait(ep, ev, 2, 5000) <= 0)
			die("epoll_wait: no reply in 5 s");
		ssize_t r = read(c->fd, c->buf + c->have, BUF_CAP - c->have);
		if (r < 0 && errno == EAGAIN)
			continue;
		if (r <= 0)
			die("read");
		c->have += (size_t)r;
		size_t used;
		while ((used = whole_reply(c)) > 0) {
			memmove(c->buf, c->buf + used, c->have - used);
			c->have -= used;
			got++;
		}
	}
	if (c->have)
		die("bytes nobody asked for");
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* PER_BATCH requests on c: its time in seconds */
static double batch(struct conn *c, const char *reqs, size_t len, int pipeline, int trips)
{
	double t0 = now_s();
	for (int i = 0; i < trips; i++)
		round_trip(c, reqs, len, pipeline);
	return now_s() - t0;
}

/* The direct side: a batch for every 'g' on the control socket (fd 3),
 * its time written back; 'q' or EOF ends it. */
static int direct_worker(int port, const char *reqs, size_t len, int pipeline, int trips)
{
	static struct conn c;
	dial(&c, port);
	char cmd;
	while (read(3, &cmd, 1) == 1 && cmd == 'g') {
		double t = batch(&c, reqs, len, pipeline, trips);
		if (write(3, &t, sizeof(t)) != (ssize_t)sizeof(t))
			die("control write");
	}
	return 0;
}

static pid_t start_direct(int *ctl, char **argv)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		dup2(sv[1], 3);
		unsetenv("LD_PRELOAD"); /* the direct side runs without the library */
		char *args[] = {argv[0], "--direct", argv[1], argv[2], argv[3],
				argv[4], argv[5],    argv[6], NULL};
		char self[4096];
		ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (k > 0) {
			self[k] = '\0';
			execv(self, args);
		}
		_exit(127);
	}
	close(sv[1]);
	*ctl = sv[0];
	return pid;
}

static double direct_batch(int ctl)
{
	double t;
	if (write(ctl, "g", 1) != 1 || read(ctl, &t, sizeof(t)) != (ssize_t)sizeof(t))
		die("the direct side stopped");
	return t;
}

int main(int argc, char **argv)
{
	int worker = argc == 8 && strcmp(argv[1], "--direct") == 0;
	char **a = argv + worker;
	if (argc != 7 + worker ||
	    (strcmp(a[1], "redis") && strcmp(a[1], "http") && strcmp(a[1], "redis-blocking"))) {
		fprintf(stderr,
			"usage: protoclient redis|http|redis-blocking SVC_PORT REPLICA_PORT "
			"PIPELINE PAIRS PER_BATCH\n");
		return 2;
	}
	http = strcmp(a[1], "http") == 0;
	blocking = strcmp(a[1], "redis-blocking") == 0;
	int pipeline = atoi(a[4]), pairs = atoi(a[5]), per = atoi(a[6]);
	if (pipeline < 1 || pipeline > MAX_PIPELINE || pairs < 1 || per < pipeline) {
		fprintf(stderr, "protoclient: PIPELINE 1..%d, PAIRS >= 1, PER_BATCH >= PIPELINE\n",
			MAX_PIPELINE);
		return 2;
	}
	const char *one = http ? HTTP_GET : REDIS_GET;
	size_t one_len = strlen(one), len = one_len * (size_t)pipeline;
	char *reqs = malloc(len);
	double *ratio = malloc(sizeof(double) * (size_t)pairs);
	if (!reqs || !ratio)
		die("malloc");
	for (int i = 0; i < pipeline; i++)
		memcpy(reqs + one_len * (size_t)i, one, one_len);
	int trips = per / pipeline;
	ep = epoll_create1(0);
	if (ep < 0)
		die("epoll_create1");
	if (worker)
		return direct_worker(atoi(a[3]), reqs, len, pipeline, trips);

	static struct conn managed;
	dial(&managed, atoi(argv[2]));
	if (!http) {
		static const char set[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$32\r\n" VALUE "\r\n";
		char ok[5];
		write_all(&managed, set, sizeof(set) - 1);
		if (recv(managed.fd, ok, sizeof(ok), MSG_WAITALL) != 5 || memcmp(ok, "+OK\r\n", 5))
			die("SET did not answer +OK");
	}
	int ctl;
	pid_t child = start_direct(&ctl, argv);
	double total[2] = {0, 0};          /* 0: direct, 1: managed */
	for (int k = -2; k < pairs; k++) { /* two pairs to warm up */
		double t[2];
		if (k & 1) {
			t[1] = batch(&managed, reqs, len, pipeline, trips);
			t[0] = direct_batch(ctl);
		} else {
			t[0] = direct_batch(ctl);
			t[1] = batch(&managed, reqs, len, pipeline, trips);
		}
		if (k < 0)
			continue;
		ratio[k] = t[0] / t[1];
		total[0] += t[0];
		total[1] += t[1];
	}
	if (write(ctl, "q", 1) != 1)
		die("control write");
	int status;
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		die("the direct side failed");
	qsort(ratio, (size_t)pairs, sizeof(double), cmp);
	double reqs_n = (double)pairs * trips * pipeline;
	printf("ratio=%.4f direct_rps=%.0f managed_rps=%.0f\n", ratio[pairs / 2], reqs_n / total[0],
	       reqs_n / total[1]);
	return 0;
}
