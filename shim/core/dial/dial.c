/* Dialing replicas: a new socket with the program's options copied from
 * its own, connected without blocking (dial_start) or within the service's
 * connect timeout (dial_replica), and connects bounded in time on the
 * program's own socket (connect_within). */
#include "addr.h"
#include "clock.h"
#include "lock.h"
#include "real.h"
#include "table.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "dial/dial.h"
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Options a program may have set that die with its socket. A replacement
 * gets each one whose value on the old socket differs from a fresh
 * socket's default (read once per family): about 25 reads and a few writes
 * per heal. Buffer sizes are copied only when the program set them
 * (fdtab_opts): the kernel's autotuned values differ from the defaults,
 * and setting them would switch autotuning off. */
static const struct {
	int level, name;
} copied_opts[] = {
    {SOL_SOCKET, SO_KEEPALIVE},
    {SOL_SOCKET, SO_RCVBUF},
    {SOL_SOCKET, SO_SNDBUF},
    {SOL_SOCKET, SO_SNDTIMEO},
    {SOL_SOCKET, SO_RCVTIMEO},
    {SOL_SOCKET, SO_LINGER},
    {SOL_SOCKET, SO_PRIORITY},
    {SOL_SOCKET, SO_MARK},
    {SOL_SOCKET, SO_OOBINLINE},
    {SOL_SOCKET, SO_BINDTODEVICE},
    {IPPROTO_TCP, TCP_NODELAY},
    {IPPROTO_TCP, TCP_CORK},
    {IPPROTO_TCP, TCP_KEEPIDLE},
    {IPPROTO_TCP, TCP_KEEPINTVL},
    {IPPROTO_TCP, TCP_KEEPCNT},
    {IPPROTO_TCP, TCP_CONGESTION},
    {IPPROTO_TCP, TCP_USER_TIMEOUT},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT},
    {IPPROTO_TCP, TCP_FASTOPEN_CONNECT},
    {IPPROTO_IP, IP_TOS},
    {IPPROTO_IP, IP_TTL},
    {IPPROTO_IPV6, IPV6_V6ONLY},
    {IPPROTO_IPV6, IPV6_TCLASS},
};
#define N_OPTS (sizeof(copied_opts) / sizeof(copied_opts[0]))
#define OPT_MAX 32

struct opt_defaults {
	int ready;
	socklen_t len[N_OPTS];
	uint8_t val[N_OPTS][OPT_MAX];
};
static struct opt_defaults defaults[2]; /* AF_INET, AF_INET6 */
static pthread_mutex_t defaults_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

void dial_atfork_child(void) { flare_mutex_init(&defaults_lock); }

static int opt_applies(size_t i, int domain)
{
	int level = copied_opts[i].level;
	return !((level == IPPROTO_IPV6 && domain != AF_INET6) ||
		 (level == IPPROTO_IP && domain != AF_INET));
}

static const struct opt_defaults *defaults_for(int domain, int type, int protocol)
{
	struct opt_defaults *d = &defaults[domain == AF_INET6];
	if (__atomic_load_n(&d->ready, __ATOMIC_ACQUIRE))
		return d;
	if (flare_lock(&defaults_lock) == EDEADLK) /* a handler inside (lock.h): no copy */
		return NULL;
	if (!d->ready) {
		int fd = real.socket(domain, type | SOCK_CLOEXEC, protocol);
		for (size_t i = 0; fd >= 0 && i < N_OPTS; i++) {
			d->len[i] = OPT_MAX;
			if (!opt_applies(i, domain) ||
			    real.getsockopt(fd, copied_opts[i].level, copied_opts[i].name,
					    d->val[i], &d->len[i]) < 0)
				d->len[i] = 0;
		}
		if (fd >= 0) {
			real.close(fd);
			__atomic_store_n(&d->ready, 1, __ATOMIC_RELEASE);
		}
	}
	flare_unlock(&defaults_lock);
	return d->ready ? d : NULL;
}

static void copy_options(struct fconn *fc, int from, int to)
{
	const struct opt_defaults *d =
	    defaults_for(fc->dial.domain, fc->dial.type, fc->dial.protocol);
	int set = fdtab_opts(from);
	for (size_t i = 0; d && i < N_OPTS; i++) {
		int level = copied_opts[i].level, name = copied_opts[i].name;
		if (!opt_applies(i, fc->dial.domain))
			continue;
		int is_buf = level == SOL_SOCKET && (name == SO_RCVBUF || name == SO_SNDBUF);
		if (is_buf && !(set & (name == SO_RCVBUF ? FLARE_BUF_RCV : FLARE_BUF_SND)))
			continue;
		uint8_t a[OPT_MAX];
		socklen_t la = sizeof(a);
		if (real.getsockopt(from, level, name, a, &la) < 0)
			continue;
		if (!is_buf && la == d->len[i] && memcmp(a, d->val[i], la) == 0)
			continue;
		if (is_buf && la == sizeof(int)) {
			int v;
			memcpy(&v, a, sizeof(v));
			v /= 2; /* the kernel reports twice what was set */
			memcpy(a, &v, sizeof(v));
		}
		real.setsockopt(to, level, name, a, la);
	}
}

/* Waits for a connecting socket within the timeout; 0 or an errno value.
 * The real poll: the library's own waits never go through its hooks. */
static int wait_connected(int fd, int timeout_ms)
{
	uint64_t end = flare_monotonic_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		uint64_t now = flare_monotonic_ms();
		if (now >= end)
			return ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int n = real.poll(&p, 1, (int)(end - now));
		if (n < 0 && errno == EINTR) {
			if (sig_would_restart())
				continue;
			return EINTR;
		}
		if (n < 0)
			return errno;
		if (n == 0)
			return ETIMEDOUT;
		int err = 0;
		socklen_t l = sizeof(err);
		if (real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			return errno;
		return err;
	}
}

int connect_within(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	int fl = real.fcntl(fd, F_GETFL);
	/* non-blocking after all (set where no hook saw): the program's own
	 * call, EINPROGRESS and all */
	if (fl >= 0 && (fl & O_NONBLOCK))
		return real.connect(fd, sa, len) == 0 ? 0 : errno;
	if (fl >= 0)
		real.fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	int rc = real.connect(fd, sa, len) == 0 ? 0 : errno;
	if (rc == EINPROGRESS)
		rc = wait_connected(fd, timeout_ms);
	if (fl >= 0)
		real.fcntl(fd, F_SETFL, fl);
	return rc;
}

int dial_start(struct fconn *fc, int like, const struct flare_route *route, int idx, int *err)
{
	struct sockaddr_storage ss;
	socklen_t len = flare_addr_to_sockaddr_family(&route->reps[idx].addr, fc->dial.domain, &ss);
	if (!len) {
		*err = EAFNOSUPPORT;
		return -1;
	}
	/* non-blocking from the start: the swap gives it the program's flags */
	int fd = real.socket(fc->dial.domain, fc->dial.type | SOCK_CLOEXEC | SOCK_NONBLOCK,
			     fc->dial.protocol);
	if (fd < 0) {
		*err = errno;
		return -1;
	}
	copy_options(fc, like, fd);
	timeouts_apply(fc, fd);
	timeouts_forget(fc); /* this socket replaces the one that owed them */
	if (fc->dial.has_bind && real.bind) {
		if (real.bind(fd, (struct sockaddr *)&fc->dial.bind_sa, fc->dial.bind_len) < 0 &&
		    errno == EADDRINUSE) {
			/* the dead socket still holds the port: same address, any port */
			struct sockaddr_storage b = fc->dial.bind_sa;
			if (b.ss_family == AF_INET)
				((struct sockaddr_in *)&b)->sin_port = 0;
			else
				((struct sockaddr_in6 *)&b)->sin6_port = 0;
			real.bind(fd, (struct sockaddr *)&b, fc->dial.bind_len);
		}
	}
	fc->mv.dial_ms = flare_monotonic_ms();
	*err = real.connect(fd, (struct sockaddr *)&ss, len) == 0 ? 0 : errno;
	if (*err && *err != EINPROGRESS) {
		real.close(fd);
		return -1;
	}
	return fd;
}

int dial_replica(struct fconn *fc, int like, const struct flare_route *route, int idx, int *err_out)
{
	int fd = dial_start(fc, like, route, idx, err_out);
	if (fd < 0)
		return -1;
	int rc = *err_out == EINPROGRESS ? wait_connected(fd, (int)fc->svc.connect_timeout_ms) : 0;
	if (rc) {
		real.close(fd);
		*err_out = rc;
		return -1;
	}
	*err_out = 0;
	return fd;
}
