/* rr-server: the request/response server of the examples, tests, demo and
 * benchmarks. One thread per connection; every request is echoed with the
 * server's tag after an optional CPU cost.
 *
 *   rr-server -l ADDR:PORT [--tag NAME] [--size N] [--lp] [--cpu-us N]
 *             [--crash-after N] [--hang-after N] [--ready-file PATH]
 *
 * --crash-after N: SIGKILLs itself on request N+1 (a crash);
 * --hang-after N: after N requests, stops reading its connections for
 * good, alive and running (a deadlock): requests sit unread. */
#include "rr-proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static size_t msg_size = 64;
static int length_prefixed;
static long cpu_us;
static long crash_after = -1, hang_after = -1;
static long served;
static char tag[RR_TAG_LEN] = "rr-server";

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	uint8_t *buf = malloc(RR_MAX_SIZE + 4);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (buf) {
		size_t n = msg_size;
		while (hang_after >= 0 && __atomic_load_n(&served, __ATOMIC_RELAXED) >= hang_after)
			pause(); /* stuck for good, the next request unread */
		uint32_t be;
		if (length_prefixed) {
			if (rr_read_full(fd, &be, 4) != 0)
				break;
			n = ntohl(be);
			if (n < RR_MIN_SIZE || n > RR_MAX_SIZE)
				break;
		}
		if (rr_read_full(fd, buf + 4, n) != 0)
			break;
		rr_burn_cpu_us(cpu_us);
		long nth = __atomic_add_fetch(&served, 1, __ATOMIC_RELAXED);
		if (crash_after >= 0 && nth > crash_after)
			raise(SIGKILL); /* a crash, as abrupt as it gets */
		rr_set_tag(buf + 4, tag);
		memcpy(buf, &be, 4);
		if (rr_write_full(fd, length_prefixed ? buf : buf + 4,
				  n + (length_prefixed ? 4 : 0)) < 0)
			break;
	}
	free(buf);
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
					     {"tag", required_argument, NULL, 't'},
					     {"size", required_argument, NULL, 's'},
					     {"lp", no_argument, NULL, 'p'},
					     {"cpu-us", required_argument, NULL, 'u'},
					     {"crash-after", required_argument, NULL, 'k'},
					     {"hang-after", required_argument, NULL, 'H'},
					     {"ready-file", required_argument, NULL, 'r'},
					     {NULL, 0, NULL, 0}};
	const char *listen_at = NULL, *ready = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "l:t:s:", opts, NULL)) != -1) {
		switch (o) {
		case 'l': listen_at = optarg; break;
		case 't': snprintf(tag, sizeof(tag), "%s", optarg); break;
		case 's': msg_size = (size_t)atol(optarg); break;
		case 'p': length_prefixed = 1; break;
		case 'u': cpu_us = atol(optarg); break;
		case 'k': crash_after = atol(optarg); break;
		case 'H': hang_after = atol(optarg); break;
		case 'r': ready = optarg; break;
		default:
			fprintf(stderr,
				"usage: rr-server -l ADDR:PORT [--tag NAME] [--size N] [--lp] "
				"[--cpu-us N] [--crash-after N] [--hang-after N] [--ready-file PATH]\n");
			return 2;
		}
	}
	struct sockaddr_storage ss;
	unsigned len;
	if (!listen_at || rr_parse_addr(listen_at, &ss, &len) < 0 || msg_size < RR_MIN_SIZE ||
	    msg_size > RR_MAX_SIZE) {
		fprintf(stderr, "rr-server: need -l ADDR:PORT and %d <= --size <= %d\n",
			RR_MIN_SIZE, RR_MAX_SIZE);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int ls = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 || bind(ls, (struct sockaddr *)&ss, len) < 0 || listen(ls, 128) < 0) {
		fprintf(stderr, "rr-server: %s: %s\n", listen_at, strerror(errno));
		return 1;
	}
	if (ready) {
		FILE *f = fopen(ready, "w");
		if (f)
			fclose(f);
	}
	for (;;) {
		int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE)
				continue;
			return 1;
		}
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&at, 256 * 1024);
		if (pthread_create(&t, &at, serve, (void *)(intptr_t)fd) != 0)
			close(fd);
		pthread_attr_destroy(&at);
	}
}
