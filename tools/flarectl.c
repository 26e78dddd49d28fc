/* flarectl -c FILE status [--json]: asks the first reachable manager what
 * it believes and prints it.
 * flarectl [-c FILE] table [--shm NAME] [--json]: prints the shared table
 * exactly as this host's libflare.so reads it. */
#include "clock.h"
#include "config.h"
#include "table.h"
#include "wire.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 2000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: flarectl -c FILE status [--json]\n"
		"       flarectl [-c FILE] table [--shm NAME] [--json]\n"
		"  status   hosts, replicas, rankings and the age of the last reports (manager)\n"
		"  table    the shared-memory table as the library reads it (this host)\n"
		"  --json   as one JSON document\n");
}

static int wait_fd(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n = poll(&p, 1, TIMEOUT_MS);
	return n == 1 ? 0 : -1;
}

static int connect_to(const struct flare_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t len = flare_addr_to_sockaddr(a, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0;
	socklen_t el = sizeof(err);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) < 0 &&
	    (errno != EINPROGRESS || wait_fd(fd, POLLOUT) < 0 ||
	     getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT) == 0)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads frames until a STATUS_RESP; heartbeats may come first. */
static char *read_status(int fd, const char **why)
{
	struct fw_buf in = {0};
	for (;;) {
		struct fw_hdr h;
		long n = fw_frame_check(in.data, in.len, &h, why);
		if (n < 0)
			break;
		if (n > 0) {
			struct fw_msg m;
			if (fw_decode(h.type, in.data + FW_HDR_LEN, h.len, &m, why) < 0) {
				fw_msg_free(&m);
				break;
			}
			fw_buf_consume(&in, (size_t)n);
			if (m.type == FW_STATUS_RESP) {
				char *text = m.u.text.text;
				m.u.text.text = NULL;
				fw_msg_free(&m);
				fw_buf_free(&in);
				return text;
			}
			fw_msg_free(&m);
			continue;
		}
		if (in.cap - in.len < 65536) {
			uint8_t *d = realloc(in.data, in.cap * 2 + 65536);
			if (!d)
				break;
			in.data = d;
			in.cap = in.cap * 2 + 65536;
		}
		if (wait_fd(fd, POLLIN) < 0) {
			*why = "no answer in time";
			break;
		}
		ssize_t r = recv(fd, in.data + in.len, in.cap - in.len, 0);
		if (r <= 0) {
			*why = r == 0 ? "closed by the manager" : strerror(errno);
			break;
		}
		in.len += (size_t)r;
	}
	fw_buf_free(&in);
	return NULL;
}

/* Walks the table through the reader API only: services by index until
 * NOTFOUND, so what is printed is what a client would get. */
static int print_table(const char *shm, int json)
{
	struct flare_tbl_reader r;
	const char *why = NULL;
	int rc = flare_tbl_reader_open(&r, shm, &why);
	if (rc != FLARE_TBL_OK) {
		fprintf(stderr, "flarectl: table %s: %s (%s)\n", shm, flare_tbl_rc_name(rc),
			why ? why : "");
		return 1;
	}
	int health = flare_tbl_health(&r, flare_monotonic_ns());
	printf(json ? "{\"table\":\"%s\",\"state\":\"%s\",\"gen\":%llu,\"services\":["
		    : "table %s: %s, gen %llu\n",
	       shm, flare_tbl_rc_name(health), (unsigned long long)flare_tbl_gen(&r));
	struct flare_route route;
	char a[FLARE_ADDR_STRLEN];
	for (uint32_t s = 0;; s++) {
		/* read_route refuses a stale table: the raw layout is what we show */
		rc = flare_tbl_read_route(&r, s, &route);
		if (rc == FLARE_TBL_STALE) {
			fprintf(stderr, "flarectl: table is stale: clients pass through\n");
			break;
		}
		if (rc != FLARE_TBL_OK)
			break;
		const struct flare_tbl_service *sv = &route.svc;
		if (json) {
			printf("%s{\"name\":\"%s\",\"address\":\"%s\",\"order\":[", s ? "," : "",
			       sv->name, flare_addr_format(&sv->addr, a, sizeof(a)));
			for (int k = 0; k < sv->n_order; k++)
				printf("%s\"%s\"", k ? "," : "", route.reps[sv->order[k]].name);
			printf("],\"replicas\":[");
		} else {
			printf("service %s %s order:", sv->name,
			       flare_addr_format(&sv->addr, a, sizeof(a)));
			for (int k = 0; k < sv->n_order; k++)
				printf(" %s", route.reps[sv->order[k]].name);
			printf("\n");
		}
		for (uint32_t i = 0; i < sv->n_replicas; i++) {
			const struct flare_tbl_replica *p = &route.reps[i];
			if (json)
				printf("%s{\"name\":\"%s\",\"address\":\"%s\",\"alive\":%s,"
				       "\"load\":%.4f,\"failover\":[",
				       i ? "," : "", p->name,
				       flare_addr_format(&p->addr, a, sizeof(a)),
				       p->alive ? "true" : "false",
				       (double)p->load_ppm / FLARE_PPM);
			else
				printf("  %-16s %-24s %-5s load %.2f failover:", p->name,
				       flare_addr_format(&p->addr, a, sizeof(a)),
				       p->alive ? "alive" : "dead",
				       (double)p->load_ppm / FLARE_PPM);
			for (int k = 0; k < p->n_failover; k++)
				printf(json ? "%s\"%s\"" : "%s%s", json && k ? "," : " ",
				       route.reps[p->failover[k]].name);
			printf(json ? "]}" : "\n");
		}
		if (json)
			printf("]}");
	}
	if (json)
		printf("]}\n");
	flare_tbl_reader_close(&r);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"shm", required_argument, NULL, 's'},
					     {"json", no_argument, NULL, 'j'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL, *shm = NULL;
	int json = 0, o;
	char err[512];
	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': path = optarg; break;
		case 's': shm = optarg; break;
		case 'j': json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	int table = optind == argc - 1 && strcmp(argv[optind], "table") == 0;
	if (optind != argc - 1 || (!table && strcmp(argv[optind], "status") != 0) ||
	    (!path && !(table && shm))) {
		usage(stderr);
		return 2;
	}
	struct flare_config cfg;
	if (path && flare_config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "flarectl: %s\n", err);
		return 1;
	}
	if (table) {
		if (!shm)
			shm = getenv("FLARE_SHM") ? getenv("FLARE_SHM") : cfg.agent_shm;
		int rc = print_table(shm, json);
		if (path)
			flare_config_free(&cfg);
		return rc;
	}
	for (int i = 0; i < cfg.n_managers; i++) {
		char a[FLARE_ADDR_STRLEN];
		const char *why = "cannot connect";
		flare_addr_format(&cfg.managers[i], a, sizeof(a));
		int fd = connect_to(&cfg.managers[i]);
		if (fd >= 0) {
			struct fw_buf b = {0};
			struct fw_msg hello = {.type = FW_HELLO}, req = {.type = FW_STATUS_REQ};
			hello.u.hello.role = FW_ROLE_CTL;
			hello.u.hello.pid = (uint32_t)getpid();
			req.u.text.format = (uint8_t)json;
			fw_encode(&b, &hello);
			fw_encode(&b, &req);
			char *text = NULL;
			if (!b.err && send_all(fd, b.data, b.len) == 0)
				text = read_status(fd, &why);
			fw_buf_free(&b);
			close(fd);
			if (text) {
				fputs(text, stdout);
				free(text);
				flare_config_free(&cfg);
				return 0;
			}
		}
		fprintf(stderr, "flarectl: manager %s: %s\n", a, why);
	}
	flare_config_free(&cfg);
	return 1;
}
