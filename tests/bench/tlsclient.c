/* tlsclient blocking|nonblocking CA_FILE SNI SVC_PORT REPLICA_PORT PAIRS PER_BATCH
 *
 * The TLS benchmark's paired client, run under flare-run: protoclient's
 * method over OpenSSL. Two processes, one TLS session each to the same
 * Redis server (TLS port): this one to the service address (managed, its
 * session linked: the SSL hooks feed the framer), and a child it starts
 * without the library straight to the replica's port (direct). They take
 * turns: batches of PER_BATCH GETs, each written with SSL_write and its
 * reply read whole with SSL_read, on a blocking socket (the read waits in
 * the kernel: under the library, in its poll(2) slices) or a non-blocking
 * one (an event loop's way: SSL_ERROR_WANT_READ, then the client's own
 * poll), the order flipping every pair; the median of PAIRS ratios of the pairs' times is printed,
 * with each side's requests/s:
 *   "ratio=X direct_rps=Y managed_rps=Z"
 * (ratio: managed throughput / direct). Exits 1 naming the first wrong
 * reply or failed call. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VALUE "flare-protocols-benchmark-value!" /* 32 bytes */

static const char GET[] = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
static const char REPLY[] = "$32\r\n" VALUE "\r\n";
static int nonblocking;

static void die(const char *what)
{
	fprintf(stderr, "tlsclient: %s%s%s\n", what, errno ? ": " : "",
		errno ? strerror(errno) : "");
	ERR_print_errors_fp(stderr);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static SSL *dial(const char *ca, const char *sni, int port)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		die("SSL_CTX");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	SSL *s = SSL_new(ctx);
	if (!s || !SSL_set_fd(s, fd) || !SSL_set_tlsext_host_name(s, sni) ||
	    !SSL_set1_host(s, sni) || SSL_connect(s) != 1)
		die("TLS handshake");
	if (nonblocking)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return s;
}

/* an event loop's wait: for what OpenSSL asked */
static void await(SSL *s, int r, const char *what)
{
	int e = SSL_get_error(s, r);
	struct pollfd p = {.fd = SSL_get_fd(s),
			   .events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
	if (!nonblocking || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
	    poll(&p, 1, 10000) != 1)
		die(what);
}

static void request(SSL *s, const char *req, size_t len, const char *want, size_t want_len)
{
	int w;
	while ((w = SSL_write(s, req, (int)len)) <= 0)
		await(s, w, "SSL_write");
	if (w != (int)len)
		die("SSL_write: a partial write");
	char buf[256];
	size_t have = 0;
	while (have < want_len) {
		int n = SSL_read(s, buf + have, (int)(sizeof(buf) - have));
		if (n <= 0) {
			await(s, n, "SSL_read");
			continue;
		}
		have += (size_t)n;
	}
	if (have != want_len || memcmp(buf, want, want_len) != 0)
		die("a wrong reply");
}

static double batch(SSL *s, int per)
{
	double t0 = now_s();
	for (int i = 0; i < per; i++)
		request(s, GET, sizeof(GET) - 1, REPLY, sizeof(REPLY) - 1);
	return now_s() - t0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* the direct side: a batch each time the parent asks ("g"), its time back */
static int direct_worker(SSL *s, int per)
{
	char c;
	while (read(3, &c, 1) == 1 && c == 'g') {
		double t = batch(s, per);
		if (write(3, &t, sizeof(t)) != (ssize_t)sizeof(t))
			return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int worker = argc == 9 && strcmp(argv[1], "--direct") == 0;
	char **a = argv + worker;
	if (argc != 8 + worker || (strcmp(a[1], "blocking") && strcmp(a[1], "nonblocking"))) {
		fprintf(stderr, "usage: tlsclient blocking|nonblocking CA_FILE SNI SVC_PORT "
				"REPLICA_PORT PAIRS PER_BATCH\n");
		return 2;
	}
	nonblocking = strcmp(a[1], "nonblocking") == 0;
	a++; /* from here a[1] is the CA file */
	int pairs = atoi(a[5]), per = atoi(a[6]);
	if (pairs < 1 || per < 1)
		return 2;
	if (worker)
		return direct_worker(dial(a[1], a[2], atoi(a[4])), per);
	SSL *managed = dial(a[1], a[2], atoi(a[3]));
	static const char set[] = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$32\r\n" VALUE "\r\n";
	request(managed, set, sizeof(set) - 1, "+OK\r\n", 5);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		dup2(sv[1], 3);
		unsetenv("LD_PRELOAD"); /* the direct side runs without the library */
		char *args[] = {argv[0], "--direct", argv[1], argv[2], argv[3],
				argv[4], argv[5],    argv[6], argv[7], NULL};
		char self[4096];
		ssize_t k = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (k > 0) {
			self[k] = '\0';
			execv(self, args);
		}
		_exit(127);
	}
	close(sv[1]);
	int ctl = sv[0];
	double *ratio = malloc(sizeof(double) * (size_t)pairs), total[2] = {0, 0};
	if (!ratio)
		die("malloc");
	for (int k = -2; k < pairs; k++) { /* two pairs to warm up */
		double t[2];
		for (int side = 0; side < 2; side++) {
			int which = (k & 1) ? 1 - side : side; /* the order flips every pair */
			if (which == 1) {
				t[1] = batch(managed, per);
			} else if (write(ctl, "g", 1) != 1 ||
				   read(ctl, &t[0], sizeof(t[0])) != (ssize_t)sizeof(t[0])) {
				die("the direct side stopped");
			}
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
	double n = (double)pairs * per;
	printf("ratio=%.4f direct_rps=%.0f managed_rps=%.0f\n", ratio[pairs / 2], n / total[0],
	       n / total[1]);
	return 0;
}
