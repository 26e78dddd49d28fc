/* rr-client: the periodic request/response client of the examples, tests,
 * demo and benchmarks. Every request carries an id and a checksum that the
 * reply must echo; any wrong, missing or failed reply ends the run with
 * exit status 1 and a line saying which request and why.
 *
 *   rr-client -c ADDR:PORT [-n COUNT] [-r HZ] [--size N] [--lp] [--threads T]
 *             [--log FILE] [--log-mono] [--alternate ADDR:PORT] [--duration SECONDS]
 *             [--first-id N] [--split-us N] */
#include "rr-proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_storage dst;
static unsigned dst_len;
static long count = 1000, threads = 1, first_id = 1;
static double rate_hz;
static double duration_s;
static size_t msg_size = 64;
static int length_prefixed;
static long split_us = -1; /* >= 0: each request in two writes, this far apart */
static FILE *latency_log;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t t0;
static int log_mono;
static struct sockaddr_storage alt; /* --alternate */
static unsigned alt_len; /* --log-mono: the log's times are CLOCK_MONOTONIC, not since the start */

struct worker {
	long index;
	uint64_t *lat_ns;
	long done;
	char tags[8][RR_TAG_LEN];
	long tag_count[8];
	int failed;
};

static void count_tag(struct worker *w, const uint8_t *msg)
{
	const struct rr_hdr *h = (const struct rr_hdr *)msg;
	for (int i = 0; i < 8; i++) {
		if (w->tag_count[i] && strncmp(w->tags[i], h->tag, RR_TAG_LEN) == 0) {
			w->tag_count[i]++;
			return;
		}
		if (!w->tag_count[i]) {
			memcpy(w->tags[i], h->tag, RR_TAG_LEN);
			w->tags[i][RR_TAG_LEN - 1] = '\0';
			w->tag_count[i] = 1;
			return;
		}
	}
}

static void *run(void *arg)
{
	struct worker *w = arg;
	uint8_t *req = malloc(msg_size + 4), *rep = malloc(msg_size + 4);
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 || !req || !rep || connect(fd, (struct sockaddr *)&dst, dst_len) < 0) {
		fprintf(stderr, "rr-client: connect: %s\n", strerror(errno));
		w->failed = 1;
		free(req);
		free(rep);
		return NULL;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* --alternate: a second connection takes every other request, the
	 * hand-written per-request balancing a library switch is measured by */
	int fds[2] = {fd, fd};
	if (alt_len) {
		fds[1] = socket(alt.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fds[1] < 0 || connect(fds[1], (struct sockaddr *)&alt, alt_len) < 0) {
			fprintf(stderr, "rr-client: connect --alternate: %s\n", strerror(errno));
			w->failed = 1;
			close(fd);
			free(req);
			free(rep);
			return NULL;
		}
		setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	uint64_t start = rr_now_ns(), next = start;
	for (long i = 0; i < count; i++) {
		fd = fds[i & 1];
		if (duration_s > 0 && rr_now_ns() - start > (uint64_t)(duration_s * 1e9))
			break;
		if (rate_hz > 0) {
			uint64_t now = rr_now_ns();
			if (next > now) {
				struct timespec ts = {(time_t)((next - now) / 1000000000ull),
						      (long)((next - now) % 1000000000ull)};
				nanosleep(&ts, NULL);
			}
			next += (uint64_t)(1e9 / rate_hz);
		}
		uint64_t id =
		    (uint64_t)first_id + (uint64_t)w->index * (uint64_t)count + (uint64_t)i;
		uint32_t be = htonl((uint32_t)msg_size);
		memcpy(req, &be, 4);
		rr_fill(req + 4, msg_size, id);
		uint64_t t = rr_now_ns();
		const uint8_t *out = length_prefixed ? req : req + 4;
		size_t out_len = msg_size + (length_prefixed ? 4 : 0);
		int rc;
		if (split_us >= 0) {
			/* a first write that a dead peer still accepts, then one that
			 * meets its reset: EPIPE (and SIGPIPE) without a library */
			rc = rr_write_full(fd, out, 4);
			if (split_us > 0)
				usleep((useconds_t)split_us);
			if (rc == 0)
				rc = rr_write_full(fd, out + 4, out_len - 4);
		} else {
			rc = rr_write_full(fd, out, out_len);
		}
		if (rc == 0 && length_prefixed) {
			rc = rr_read_full(fd, rep, 4);
			if (rc == 0 && memcmp(rep, &be, 4) != 0) {
				fprintf(stderr, "rr-client: request %llu: wrong reply length\n",
					(unsigned long long)id);
				w->failed = 1;
				break;
			}
		}
		if (rc == 0)
			rc = rr_read_full(fd, rep + 4, msg_size);
		if (rc != 0) {
			fprintf(stderr, "rr-client: request %llu: %s (failed after %.1f us)\n",
				(unsigned long long)id,
				rc > 0 ? "connection closed by the server" : strerror(errno),
				(double)(rr_now_ns() - t) / 1e3);
			w->failed = 1;
			break;
		}
		if (rr_verify(rep + 4, msg_size, id) != 0) {
			fprintf(stderr, "rr-client: request %llu: the reply is not its own\n",
				(unsigned long long)id);
			w->failed = 1;
			break;
		}
		uint64_t lat = rr_now_ns() - t;
		w->lat_ns[w->done++] = lat;
		count_tag(w, rep + 4);
		if (latency_log) {
			pthread_mutex_lock(&log_lock);
			fprintf(latency_log, "%.3f %llu %.1f %.16s\n",
				(double)(t - (log_mono ? 0 : t0)) / 1e6, (unsigned long long)id,
				(double)lat / 1e3, ((struct rr_hdr *)(rep + 4))->tag);
			pthread_mutex_unlock(&log_lock);
		}
	}
	close(fds[0]);
	if (fds[1] != fds[0])
		close(fds[1]);
	free(req);
	free(rep);
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"connect", required_argument, NULL, 'c'},
					     {"count", required_argument, NULL, 'n'},
					     {"rate", required_argument, NULL, 'r'},
					     {"size", required_argument, NULL, 's'},
					     {"lp", no_argument, NULL, 'p'},
					     {"threads", required_argument, NULL, 'T'},
					     {"log", required_argument, NULL, 'L'},
					     {"log-mono", no_argument, NULL, 'M'},
					     {"alternate", required_argument, NULL, 'A'},
					     {"duration", required_argument, NULL, 'd'},
					     {"first-id", required_argument, NULL, 'i'},
					     {"split-us", required_argument, NULL, 'S'},
					     {NULL, 0, NULL, 0}};
	const char *target = NULL, *log_path = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "c:n:r:s:", opts, NULL)) != -1) {
		switch (o) {
		case 'c': target = optarg; break;
		case 'n': count = atol(optarg); break;
		case 'r': rate_hz = atof(optarg); break;
		case 's': msg_size = (size_t)atol(optarg); break;
		case 'p': length_prefixed = 1; break;
		case 'T': threads = atol(optarg); break;
		case 'L': log_path = optarg; break;
		case 'M': log_mono = 1; break;
		case 'A':
			if (rr_parse_addr(optarg, &alt, &alt_len) < 0) {
				fprintf(stderr, "rr-client: bad --alternate %s\n", optarg);
				return 2;
			}
			break;
		case 'd': duration_s = atof(optarg); break;
		case 'i': first_id = atol(optarg); break;
		case 'S': split_us = atol(optarg); break;
		default:
			fprintf(
			    stderr,
			    "usage: rr-client -c ADDR:PORT [-n COUNT] [-r HZ] [--size N] "
			    "[--lp] [--threads T] [--log FILE] [--duration S] [--first-id N]\n");
			return 2;
		}
	}
	if (!target || rr_parse_addr(target, &dst, &dst_len) < 0 || count < 1 || threads < 1 ||
	    threads > 256 || msg_size < RR_MIN_SIZE || msg_size > RR_MAX_SIZE) {
		fprintf(stderr,
			"rr-client: need -c ADDR:PORT, -n >= 1, 1 <= --threads <= 256, "
			"%d <= --size <= %d\n",
			RR_MIN_SIZE, RR_MAX_SIZE);
		return 2;
	}
	if (log_path && !(latency_log = fopen(log_path, "w"))) {
		fprintf(stderr, "rr-client: %s: %s\n", log_path, strerror(errno));
		return 2;
	}
	t0 = rr_now_ns();
	struct worker *w = calloc((size_t)threads, sizeof(*w));
	pthread_t *tid = calloc((size_t)threads, sizeof(*tid));
	for (long i = 0; i < threads; i++) {
		w[i].index = i;
		w[i].lat_ns = malloc((size_t)count * sizeof(uint64_t));
		pthread_create(&tid[i], NULL, run, &w[i]);
	}
	long done = 0, failed = 0;
	for (long i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		done += w[i].done;
		failed += w[i].failed;
	}
	uint64_t *all = malloc((size_t)(done ? done : 1) * sizeof(uint64_t));
	long k = 0;
	double sum = 0;
	for (long i = 0; i < threads; i++)
		for (long j = 0; j < w[i].done; j++) {
			all[k++] = w[i].lat_ns[j];
			sum += (double)w[i].lat_ns[j];
		}
	qsort(all, (size_t)done, sizeof(uint64_t), cmp_u64);
	double elapsed = (double)(rr_now_ns() - t0) / 1e9, mean = done ? sum / (double)done : 0,
	       var = 0;
	for (long i = 0; i < done; i++)
		var += ((double)all[i] - mean) * ((double)all[i] - mean);
	/* jitter: the standard deviation of the latencies */
	double sd = done > 1 ? sqrt(var / (double)(done - 1)) : 0;
	printf("requests=%ld errors=%ld mean_us=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f "
	       "sd_us=%.1f rps=%.0f served_by=",
	       done, failed, mean / 1e3, done ? (double)all[done / 2] / 1e3 : 0,
	       done ? (double)all[(long)floor((double)(done - 1) * 0.99)] / 1e3 : 0,
	       done ? (double)all[done - 1] / 1e3 : 0, sd / 1e3,
	       elapsed > 0 ? (double)done / elapsed : 0);
	/* merge tags over threads */
	char tags[64][RR_TAG_LEN];
	long cnt[64];
	int nt = 0;
	for (long i = 0; i < threads; i++)
		for (int j = 0; j < 8 && w[i].tag_count[j]; j++) {
			int f = -1;
			for (int q = 0; q < nt; q++)
				if (strcmp(tags[q], w[i].tags[j]) == 0)
					f = q;
			if (f < 0 && nt < 64) {
				f = nt++;
				memcpy(tags[f], w[i].tags[j], RR_TAG_LEN);
				cnt[f] = 0;
			}
			if (f >= 0)
				cnt[f] += w[i].tag_count[j];
		}
	for (int q = 0; q < nt; q++)
		printf("%s%s:%ld", q ? "," : "", tags[q], cnt[q]);
	printf("\n");
	if (latency_log)
		fclose(latency_log);
	return failed ? 1 : 0;
}
