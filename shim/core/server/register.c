/* Server side: a process under flare-run that listens on a replica's
 * address registers with its host's monitor over a UNIX socket and keeps
 * that connection open; the kernel closes it when the process dies, which
 * is how the monitor learns of the death at once. When the monitor is not
 * up yet, or the table not there, the registration is retried on the next
 * accept (the monitor's probes cause one) at most every 100 ms. A monitor
 * that restarted knows nothing of the registrations the old one had: the
 * same accepts look (as often) at whether the monitor closed ours, and
 * register again, so that a restart never leaves a server probed only. */
#include "addr.h"
#include "clock.h"
#include "lock.h"
#include "log.h"
#include "real.h"
#include "table.h"
#include "unixaddr.h"
#include "wire.h"

#include "conn/fdtab.h"
#include "conn/proof.h"
#include "route/route.h"
#include "server/register.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REGS 32
#define RETRY_NS 100000000ull

struct reg {
	int listen_fd; /* -1: free slot */
	int sock;      /* connection to the monitor, -1 while pending */
	struct flare_addr addr;
	uint64_t next_try_ns;
	uint64_t since_ns; /* when the registration in use was made */
	int quick_ends;    /* registrations in a row the monitor ended within 5 s */
	int squatted;      /* said once: the monitor's name is held by another user */
	uint64_t listen_cookie, sock_cookie; /* the sockets' identities (proof.h) */
};

static struct reg regs[MAX_REGS];
int flare_n_regs; /* registrations made: read inline by the hot hooks */
static pthread_mutex_t reg_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

void register_atfork_child(void) { flare_mutex_init(&reg_lock); }

int register_knows_any(int fd)
{
	for (int i = 0; i < flare_n_regs; i++)
		if (regs[i].listen_fd >= 0 && (regs[i].sock == fd || regs[i].listen_fd == fd))
			return 1;
	return 0;
}

static int monitor_connect(const char *path)
{
	struct sockaddr_un un;
	socklen_t len = flare_unix_addr(path, &un);
	if (!len)
		return -1;
	int fd = real.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (real.connect(fd, (struct sockaddr *)&un, len) < 0) {
		real.close(fd);
		return -1;
	}
	return fd;
}

/* One attempt; called with reg_lock held. */
static void try_register(struct reg *g)
{
	struct flare_replica_info info;
	char a[FLARE_ADDR_STRLEN];
	uint64_t now = flare_monotonic_ns();
	if (g->sock >= 0 || now < g->next_try_ns)
		return;
	g->next_try_ns = now + RETRY_NS;
	if (route_lookup_replica(&g->addr, &info) != FLARE_TBL_OK)
		return;
	int fd = monitor_connect(info.host.monitor_socket);
	if (fd < 0) {
		log_debug("replica %s: monitor %s not reachable yet", info.rep.name,
			  info.host.monitor_socket);
		return;
	}
	uid_t peer;
	if (!route_peer_trusted(fd, &peer)) {
		/* a squatter on the monitor's name: no registration for it */
		if (!g->squatted)
			log_warn("replica %s: %s is held by uid %d, not the deployment's: not "
				 "registering",
				 info.rep.name, info.host.monitor_socket, (int)peer);
		g->squatted = 1;
		real.close(fd);
		return;
	}
	uint8_t mem[512];
	struct fw_buf b;
	fw_buf_init_fixed(&b, mem, sizeof(mem));
	struct fw_hello h = {.role = FW_ROLE_LIB, .pid = (uint32_t)flare_pid};
	struct fw_register r = {.pid = (uint32_t)flare_pid, .n_addrs = 1};
	r.addrs[0] = g->addr;
	fw_encode_hello(&b, &h);
	fw_encode_register(&b, &r);
	if (b.err || real.send(fd, b.data, b.len, MSG_NOSIGNAL) != (ssize_t)b.len) {
		real.close(fd);
		return;
	}
	g->sock = fd;
	g->sock_cookie = proof_cookie(fd);
	g->since_ns = now;
	log_info("replica %s (%s) registered with the monitor of %s", info.rep.name,
		 flare_addr_format(&g->addr, a, sizeof(a)), info.host.name);
}

void register_listen(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct flare_addr a;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    flare_addr_from_sockaddr((struct sockaddr *)&ss, len, &a) < 0)
		return;
	struct flare_replica_info info;
	/* only replica addresses are worth a registration; a wildcard bind is
	 * looked up on the loopback address of its family */
	struct flare_addr probe = a;
	if (flare_addr_is_wildcard(&a)) {
		memset(probe.ip, 0, sizeof(probe.ip));
		if (a.family == AF_INET)
			probe.ip[0] = 127, probe.ip[3] = 1;
		else
			probe.ip[15] = 1;
	}
	int found = route_lookup_replica(&probe, &info);
	if (found == FLARE_TBL_NOTFOUND)
		return;
	if (flare_lock(&reg_lock) == EDEADLK)
		return; /* a handler's listen inside the registrations (lock.h): probed only */
	struct reg *g = NULL;
	for (int i = 0; i < flare_n_regs && !g; i++)
		if (regs[i].listen_fd < 0)
			g = &regs[i];
	if (!g && flare_n_regs < MAX_REGS) {
		g = &regs[flare_n_regs];
		__atomic_store_n(&flare_n_regs, flare_n_regs + 1, __ATOMIC_RELEASE);
	}
	if (g) {
		*g = (struct reg){
		    .listen_fd = fd, .sock = -1, .addr = probe, .listen_cookie = proof_cookie(fd)};
		try_register(g);
	}
	flare_unlock(&reg_lock);
}

/* Has the monitor closed registration g (it died, or restarted)? Looked
 * at no more than every RETRY_NS: one non-blocking peek. The monitor
 * sends nothing on a registration, so anything but EAGAIN ends it. */
static void check_monitor(struct reg *g)
{
	uint64_t now = flare_monotonic_ns();
	if (g->sock < 0 || now < g->next_try_ns)
		return;
	g->next_try_ns = now + RETRY_NS;
	char c;
	ssize_t r = real.recv(g->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	/* a monitor that refuses (and says why, then closes) is asked again
	 * less and less often: 0.1 s, doubling to 12.8 s */
	g->quick_ends = now - g->since_ns < 5000000000ull ? g->quick_ends + 1 : 0;
	int shift = g->quick_ends < 7 ? g->quick_ends : 7;
	char a[FLARE_ADDR_STRLEN];
	log_info("%s: the monitor closed the registration (it restarted, or refused it): "
		 "registering again",
		 flare_addr_format(&g->addr, a, sizeof(a)));
	real.close(g->sock);
	g->sock = -1;
	g->next_try_ns = g->quick_ends > 1 ? now + (RETRY_NS << shift) : 0;
}

void register_retry(void)
{
	if (!flare_n_regs || flare_lock(&reg_lock) == EDEADLK)
		return; /* (a handler inside: the next accept looks) */
	for (int i = 0; i < flare_n_regs; i++)
		if (regs[i].listen_fd >= 0) {
			check_monitor(&regs[i]);
			if (regs[i].sock < 0)
				try_register(&regs[i]);
		}
	flare_unlock(&reg_lock);
}

/* Owed by a signal handler's close (lock.h): registrations whose listening
 * socket or monitor link is no longer the socket it was (its cookie) are
 * forgotten. */
void register_sweep(void)
{
	if (flare_lock(&reg_lock) == EDEADLK) {
		owed_set(OWED_REGS);
		return;
	}
	for (int i = 0; i < flare_n_regs; i++) {
		struct reg *g = &regs[i];
		if (g->listen_fd < 0)
			continue;
		/* a number that is no longer our socket is the program's now:
		 * forgotten, never closed */
		int link_ours = g->sock >= 0 && proof_cookie(g->sock) == g->sock_cookie;
		if (g->sock >= 0 && !link_ours)
			g->sock = -1;
		if (proof_cookie(g->listen_fd) != g->listen_cookie) {
			if (link_ours)
				real.close(g->sock);
			g->listen_fd = -1;
			g->sock = -1;
		}
	}
	flare_unlock(&reg_lock);
}

/* The program closed a descriptor: its listening socket (the registration
 * ends with it), or our monitor connection (a close-everything loop): then
 * register again later. */
void register_forget_fd_any(int fd)
{
	if (flare_lock(&reg_lock) == EDEADLK) {
		owed_set(OWED_REGS); /* a signal handler's close (lock.h) */
		return;
	}
	for (int i = 0; i < flare_n_regs; i++) {
		if (regs[i].listen_fd < 0)
			continue;
		if (regs[i].listen_fd == fd) {
			if (regs[i].sock >= 0)
				real.close(regs[i].sock);
			regs[i].listen_fd = -1;
			regs[i].sock = -1;
		} else if (regs[i].sock == fd) {
			regs[i].sock = -1;
			regs[i].next_try_ns = 0;
		}
	}
	flare_unlock(&reg_lock);
}

void register_forget_range(unsigned first, unsigned last)
{
	for (int i = 0; i < flare_n_regs; i++) {
		if (regs[i].listen_fd < 0)
			continue;
		if ((unsigned)regs[i].listen_fd >= first && (unsigned)regs[i].listen_fd <= last)
			register_forget_fd_any(regs[i].listen_fd);
		else if ((unsigned)regs[i].sock >= first && (unsigned)regs[i].sock <= last)
			register_forget_fd_any(regs[i].sock);
	}
}
