/* fleet CONFIG MANAGER_PID N_AGENTS TRIALS REST_SECONDS: not a program to run
 * by hand; bench.py drives it. One process plays a whole fleet against one
 * real flare-manager: a monitor connection per host of CONFIG (reporting
 * every replica alive, every report_interval_ms, as monitors do) and
 * N_AGENTS agent subscriptions. It measures what the manager does for the
 * fleet, not what this process does: the time from a replica's death
 * (the report saying so, sent by its host's monitor connection) until each
 * agent received a RANK frame with it dead, per agent, over TRIALS deaths;
 * then the manager's CPU and memory at rest over REST_SECONDS of periodic
 * reports. Prints one line:
 *   agents=N hosts=N replicas=N p50_us= p99_us= max_us= samples= rest_cpu_pct= rss_kib=
 * Agents skip full tables by their length (the manager encodes them; the
 * cost of decoding 1,000 copies here would be this process's). A frame's
 * time is when the kernel received it on the agent's socket
 * (SO_TIMESTAMPNS), not when this one process got round to reading 1,000
 * sockets: what is measured is the manager. */
#include "clock.h"
#include "config.h"
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct peer {
	int fd;
	int host;     /* monitors: the host; agents: -1 */
	uint8_t *buf; /* bytes of a frame being read */
	size_t len, cap;
	uint64_t rx_ns; /* kernel receive time of the last bytes read (agents) */
	uint64_t seen;  /* agents: the trial whose death this one has seen */
	int full;       /* agents: the full table arrived */
};

static struct flare_config cfg;
static struct peer *mons, *agents;
static int n_agents;
static uint8_t *alive_now; /* per replica, what the monitors report */
static uint64_t trial, t0_ns;
static int64_t victim = -1;
static int victim_alive;
static uint64_t *lat_us;
static size_t n_lat, cap_lat;
static int waiting; /* agents that have not seen this trial's change yet */

static int dial(const struct flare_addr *a)
{
	struct sockaddr_storage ss;
	socklen_t len = flare_addr_to_sockaddr(a, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0) {
		perror("fleet: connect");
		exit(1);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pf = {fd, POLLOUT, 0};
			poll(&pf, 1, 100);
			continue;
		}
		if (w <= 0) {
			perror("fleet: send");
			exit(1);
		}
		p += w;
		n -= (size_t)w;
	}
}

static void hello(int fd, uint8_t role, const char *name)
{
	struct fw_buf b = {0};
	struct fw_hello h = {.role = role, .pid = (uint32_t)getpid()};
	snprintf(h.name, sizeof(h.name), "%s", name);
	fw_encode_hello(&b, &h);
	send_all(fd, b.data, b.len);
	fw_buf_free(&b);
}

static void report(int host)
{
	static struct fw_report_replica *reps;
	if (!reps)
		reps = calloc((size_t)cfg.n_replicas + 1, sizeof(*reps));
	struct fw_report r = {.seq = trial + 1, .util_ppm = 300000, .replicas = reps};
	snprintf(r.host, sizeof(r.host), "%s", cfg.hosts[host].name);
	for (int i = 0; i < cfg.n_replicas; i++) {
		if (cfg.replicas[i].host != host)
			continue;
		struct fw_report_replica *p = &reps[r.n_replicas++];
		memset(p, 0, sizeof(*p));
		snprintf(p->name, sizeof(p->name), "%s", cfg.replicas[i].name);
		p->alive = alive_now[i];
		p->registered = 1;
		p->pid = 1000 + (uint32_t)host;
		p->load_ppm = FW_LOAD_UNKNOWN;
	}
	struct fw_buf b = {0};
	fw_encode_report(&b, &r);
	send_all(mons[host].fd, b.data, b.len);
	fw_buf_free(&b);
}

/* A frame an agent received: a delta naming the victim as it now is ends
 * that agent's wait. */
static void agent_frame(struct peer *a, const uint8_t *frame, size_t len)
{
	struct fw_hdr h;
	const char *why;
	if (fw_frame_check(frame, len, &h, &why) <= 0 || h.type != FW_RANK)
		return;
	if (frame[FW_HDR_LEN] != 0) {
		a->full = 1; /* full tables are not decoded */
		return;
	}
	if (a->seen == trial || victim < 0)
		return;
	struct fw_msg m;
	if (fw_decode(h.type, frame + FW_HDR_LEN, h.len, &m, &why) == 0)
		for (uint32_t i = 0; i < m.u.rank.n_replicas; i++)
			if (m.u.rank.replicas[i].idx == (uint32_t)victim &&
			    m.u.rank.replicas[i].alive == victim_alive) {
				a->seen = trial;
				waiting--;
				if (n_lat == cap_lat) {
					cap_lat = cap_lat ? cap_lat * 2 : 4096;
					lat_us = realloc(lat_us, cap_lat * sizeof(*lat_us));
				}
				lat_us[n_lat++] = a->rx_ns > t0_ns ? (a->rx_ns - t0_ns) / 1000 : 0;
				break;
			}
	fw_msg_free(&m);
}

/* Reads what is there; whole frames go to agent_frame (agents) or are
 * dropped (heartbeats to monitors). */
static void drain(struct peer *p)
{
	for (;;) {
		if (p->cap - p->len < 65536) {
			p->cap = p->cap ? p->cap * 2 : 131072;
			p->buf = realloc(p->buf, p->cap);
		}
		struct iovec iov = {p->buf + p->len, p->cap - p->len};
		union {
			char buf[CMSG_SPACE(sizeof(struct timespec))];
			struct cmsghdr align;
		} ctl;
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf)};
		ssize_t n = recvmsg(p->fd, &mh, MSG_DONTWAIT);
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); n > 0 && c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
				struct timespec ts;
				memcpy(&ts, CMSG_DATA(c), sizeof(ts));
				p->rx_ns =
				    (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
			}
		if (n == 0) {
			fprintf(stderr, "fleet: the manager closed a connection\n");
			exit(1);
		}
		if (n < 0)
			return;
		p->len += (size_t)n;
		size_t off = 0;
		for (;;) {
			struct fw_hdr h;
			const char *why;
			long fl = fw_frame_check(p->buf + off, p->len - off, &h, &why);
			if (fl < 0) {
				fprintf(stderr, "fleet: bad frame: %s\n", why);
				exit(1);
			}
			if (fl == 0)
				break;
			if (p->host < 0)
				agent_frame(p, p->buf + off, (size_t)fl);
			off += (size_t)fl;
		}
		memmove(p->buf, p->buf + off, p->len - off);
		p->len -= off;
	}
}

static void poll_once(int ep, int ms)
{
	struct epoll_event ev[256];
	int n = epoll_wait(ep, ev, 256, ms);
	for (int i = 0; i < n; i++)
		drain(ev[i].data.ptr);
}

static uint64_t *next_report_ns;

/* Every monitor reports every report interval, each at its own phase as
 * independent monitors do (not all 1,000 in one burst) */
static void periodic_reports(void)
{
	uint64_t now = flare_monotonic_ns(), every = (uint64_t)cfg.report_interval_ms * 1000000ull;
	if (!next_report_ns) {
		next_report_ns = calloc((size_t)cfg.n_hosts, sizeof(uint64_t));
		for (int h = 0; h < cfg.n_hosts; h++)
			next_report_ns[h] = now + every * (uint64_t)h / (uint64_t)cfg.n_hosts;
	}
	for (int h = 0; h < cfg.n_hosts; h++)
		if (next_report_ns[h] <= now) {
			report(h);
			next_report_ns[h] += every;
			if (next_report_ns[h] <= now) /* fell behind: no catch-up burst */
				next_report_ns[h] = now + every;
		}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t proc_cpu_ticks(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (p)
		sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
	return ut + st;
}

static long rss_kib(int pid)
{
	char path[64], line[256];
	long kib = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			kib = atol(line + 6);
	if (f)
		fclose(f);
	return kib;
}

int main(int argc, char **argv)
{
	if (argc != 6)
		return 2;
	char err[512];
	if (flare_config_load(argv[1], &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "fleet: %s\n", err);
		return 1;
	}
	int mpid = atoi(argv[2]), trials = atoi(argv[4]);
	double rest_s = atof(argv[5]);
	n_agents = atoi(argv[3]);
	srand(42);
	alive_now = malloc((size_t)cfg.n_replicas);
	memset(alive_now, 1, (size_t)cfg.n_replicas);
	mons = calloc((size_t)cfg.n_hosts, sizeof(*mons));
	agents = calloc((size_t)n_agents + 1, sizeof(*agents));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (int h = 0; h < cfg.n_hosts; h++) {
		mons[h] = (struct peer){.fd = dial(&cfg.managers[0]), .host = h};
		hello(mons[h].fd, FW_ROLE_MONITOR, cfg.hosts[h].name);
		report(h);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &mons[h]};
		epoll_ctl(ep, EPOLL_CTL_ADD, mons[h].fd, &ev);
	}
	/* agents one by one, each full table read before the next subscribes */
	for (int a = 0; a < n_agents; a++) {
		agents[a] = (struct peer){.fd = dial(&cfg.managers[0]), .host = -1};
		setsockopt(agents[a].fd, SOL_SOCKET, SO_TIMESTAMPNS, &(int){1}, sizeof(int));
		hello(agents[a].fd, FW_ROLE_AGENT, "fleet");
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &agents[a]};
		epoll_ctl(ep, EPOLL_CTL_ADD, agents[a].fd, &ev);
		uint64_t limit = flare_monotonic_ns() + 30000000000ull;
		while (!agents[a].full && flare_monotonic_ns() < limit) {
			periodic_reports();
			poll_once(ep, 5);
		}
	}
	/* the manager settles after 1,000 subscriptions (the first death right
	 * after them took 76-130 ms, every later one under 70 ms) */
	uint64_t settle = flare_monotonic_ns() + 5000000000ull;
	while (flare_monotonic_ns() < settle) {
		periodic_reports();
		poll_once(ep, 10);
	}
	for (int t = 0; t < 2 * trials; t++) {
		/* even trials kill a replica, odd ones revive it (not measured) */
		if (t % 2 == 0)
			victim = rand() % cfg.n_replicas;
		victim_alive = t % 2;
		alive_now[victim] = (uint8_t)victim_alive;
		trial++;
		waiting = n_agents;
		size_t before = n_lat;
		struct timespec rt;
		clock_gettime(CLOCK_REALTIME, &rt); /* the receive stamps' clock */
		t0_ns = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
		report(cfg.replicas[victim].host);
		uint64_t limit = flare_monotonic_ns() + 10000000000ull;
		while (waiting > 0 && flare_monotonic_ns() < limit) {
			periodic_reports();
			poll_once(ep, 5);
		}
		if (waiting > 0) {
			fprintf(stderr, "fleet: %d agents never saw replica %lld %s\n", waiting,
				(long long)victim, victim_alive ? "alive" : "dead");
			return 1;
		}
		if (t % 2 == 1)
			n_lat = before; /* revivals are not measured */
	}
	/* at rest: the fleet keeps reporting, nothing changes */
	uint64_t c0 = proc_cpu_ticks(mpid), r0 = flare_monotonic_ns();
	while (flare_monotonic_ns() - r0 < (uint64_t)(rest_s * 1e9)) {
		periodic_reports();
		poll_once(ep, 10);
	}
	double secs = (double)(flare_monotonic_ns() - r0) / 1e9;
	double cpu = (double)(proc_cpu_ticks(mpid) - c0) / (double)sysconf(_SC_CLK_TCK) / secs;
	qsort(lat_us, n_lat, sizeof(*lat_us), cmp_u64);
	printf("agents=%d hosts=%d replicas=%d p50_us=%llu p99_us=%llu max_us=%llu samples=%zu "
	       "rest_cpu_pct=%.1f rss_kib=%ld\n",
	       n_agents, cfg.n_hosts, cfg.n_replicas,
	       (unsigned long long)(n_lat ? lat_us[n_lat / 2] : 0),
	       (unsigned long long)(n_lat ? lat_us[(size_t)((double)(n_lat - 1) * 0.99)] : 0),
	       (unsigned long long)(n_lat ? lat_us[n_lat - 1] : 0), n_lat, cpu * 100,
	       rss_kib(mpid));
	return 0;
}
