/* Connecting a managed descriptor: to the dialed primary when it is live,
 * else down the service's ranking, each attempt bounded by the service's
 * connect timeout; the error the program sees is the one it would have
 * seen, and only when every replica failed. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
static pthread_mutex_t defaults_lock = PTHREAD_MUTEX_INITIALIZER;

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
	pthread_mutex_lock(&defaults_lock);
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
	pthread_mutex_unlock(&defaults_lock);
	return d->ready ? d : NULL;
}

static void copy_options(struct fconn *fc, int from, int to)
{
	const struct opt_defaults *d = defaults_for(fc->domain, fc->type, fc->protocol);
	int set = fdtab_opts(from);
	for (size_t i = 0; d && i < N_OPTS; i++) {
		int level = copied_opts[i].level, name = copied_opts[i].name;
		if (!opt_applies(i, fc->domain))
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

void slice_apply(struct fconn *fc, int fd)
{
	/* the kernel's receive timeout is at most one slice; the program's own
	 * SO_RCVTIMEO is kept in fc and enforced by the library */
	fc->slice_set = 1;
	struct timeval tv = {0, FLARE_SLICE_MS * 1000};
	const struct timeval *p = &fc->prog_rcvtimeo;
	if ((p->tv_sec || p->tv_usec) && (p->tv_sec == 0 && p->tv_usec < tv.tv_usec))
		tv = *p;
	real.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int fd_getfl(int fd) { return real.fcntl(fd, F_GETFL); }

static int wait_connected(int fd, int timeout_ms)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long spent =
		    (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (spent >= timeout_ms)
			return ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int n = poll(&p, 1, (int)(timeout_ms - spent));
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

/* Connects fd (blocking or not, as the program left it) within the
 * timeout; returns 0 or an errno value. */
static int connect_within(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	int fl = fd_getfl(fd);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		real.fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	int rc = real.connect(fd, sa, len) == 0 ? 0 : errno;
	if (rc == EINPROGRESS)
		rc = wait_connected(fd, timeout_ms);
	if (fl >= 0 && !(fl & O_NONBLOCK))
		real.fcntl(fd, F_SETFL, fl);
	return rc;
}

int dial_start(struct fconn *fc, int like, const struct flare_route *route, int idx, int *err)
{
	struct sockaddr_storage ss;
	socklen_t len = flare_addr_to_sockaddr_family(&route->reps[idx].addr, fc->domain, &ss);
	if (!len) {
		*err = EAFNOSUPPORT;
		return -1;
	}
	/* non-blocking from the start: the swap gives it the program's flags */
	int fd = real.socket(fc->domain, fc->type | SOCK_CLOEXEC | SOCK_NONBLOCK, fc->protocol);
	if (fd < 0) {
		*err = errno;
		return -1;
	}
	copy_options(fc, like, fd);
	timeouts_apply(fc, fd);
	timeouts_forget(fc); /* this socket replaces the one that owed them */
	if (fc->slice_set)
		slice_apply(fc, fd);
	if (fc->has_bind && real.bind) {
		if (real.bind(fd, (struct sockaddr *)&fc->bind_sa, fc->bind_len) < 0 &&
		    errno == EADDRINUSE) {
			/* the dead socket still holds the port: same address, any port */
			struct sockaddr_storage b = fc->bind_sa;
			if (b.ss_family == AF_INET)
				((struct sockaddr_in *)&b)->sin_port = 0;
			else
				((struct sockaddr_in6 *)&b)->sin6_port = 0;
			real.bind(fd, (struct sockaddr *)&b, fc->bind_len);
		}
	}
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
	int rc = *err_out == EINPROGRESS ? wait_connected(fd, (int)fc->connect_timeout_ms) : 0;
	if (rc) {
		real.close(fd);
		*err_out = rc;
		return -1;
	}
	*err_out = 0;
	return fd;
}

int order_live_first(const struct flare_route *rt, const uint8_t *base, int nb, uint8_t *seen,
		     uint8_t *out)
{
	int n = 0;
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < nb; i++) {
			int r = base[i];
			if (r >= (int)rt->svc.n_replicas || seen[r] ||
			    (rt->reps[r].alive != 0) == pass)
				continue;
			seen[r] = 1;
			out[n++] = (uint8_t)r;
		}
	return n;
}

/* Replicas to try for a new connection: the ranking (live primary first
 * when dialed), the live ones before the dead ones, every replica once. */
static int candidates(const struct flare_route *rt, uint8_t *out)
{
	const struct flare_tbl_service *s = &rt->svc;
	uint8_t base[2 * FLARE_MAX_REPLICAS + 1], seen[FLARE_MAX_REPLICAS] = {0};
	int nb = 0;
	if (s->failover == FLARE_FAILOVER_STATIC) {
		if (s->primary >= 0)
			base[nb++] = (uint8_t)s->primary;
	} else {
		for (int i = 0; i < s->n_order; i++)
			base[nb++] = s->order[i];
	}
	for (uint32_t i = 0; i < s->n_replicas; i++)
		base[nb++] = (uint8_t)i;
	return order_live_first(rt, base, nb, seen, out);
}

static struct fconn *fconn_for(int fd, int type, const struct sockaddr *sa, socklen_t len,
			       const struct flare_addr *dst, const struct flare_route *rt)
{
	struct fconn *fc = fconn_new();
	if (!fc)
		return NULL;
	int set = fdtab_opts(fd);
	fc->domain = sa->sa_family;
	fc->type = type;
	fc->protocol = 0; /* a stream socket of an inet family is TCP */
	fc->dialed = *dst;
	memcpy(&fc->dialed_sa, sa, len < sizeof(fc->dialed_sa) ? len : sizeof(fc->dialed_sa));
	fc->dialed_len = len;
	fc->svc_index = rt->svc_index;
	fc->replay = rt->svc.replay;
	fc->failover = rt->svc.failover;
	fc->connect_timeout_ms = rt->svc.connect_timeout_ms ? rt->svc.connect_timeout_ms : 250;
	fc->user_timeout_ms = rt->svc.user_timeout_ms;
	fc->ka_idle = rt->svc.keepalive_idle_s;
	fc->ka_intvl = rt->svc.keepalive_interval_s;
	fc->ka_cnt = rt->svc.keepalive_count;
	if (set & FLARE_SET_RCVTIMEO) {
		socklen_t tl = sizeof(fc->prog_rcvtimeo);
		real.getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &fc->prog_rcvtimeo, &tl);
	}
	uint32_t want = rt->svc.replay_buffer;
	if (fc->replay == FLARE_REPLAY_REQUEST_REPLY && want && fc->cap < want) {
		uint8_t *b = realloc(fc->buf, want);
		if (b) {
			fc->buf = b;
			fc->cap = want;
		}
	}
	/* the program's bind, to repeat on replacement sockets */
	struct sockaddr_storage bs;
	socklen_t bl = sizeof(bs);
	if ((set & FLARE_SET_BIND) && getsockname(fd, (struct sockaddr *)&bs, &bl) == 0) {
		struct flare_addr b;
		static const uint8_t zero[16];
		if (flare_addr_from_sockaddr((struct sockaddr *)&bs, bl, &b) == 0 &&
		    (b.port || memcmp(b.ip, zero, sizeof(zero)))) {
			fc->has_bind = 1;
			fc->bind_sa = bs;
			fc->bind_len = bl;
		}
	}
	return fc;
}

int dial_managed(int fd, int type, const struct sockaddr *sa, socklen_t len,
		 const struct flare_addr *dst, const struct flare_route *rt)
{
	uint8_t order[FLARE_MAX_REPLICAS];
	int n = candidates(rt, order), first_err = 0, blocking = !(fd_getfl(fd) & O_NONBLOCK);
	struct fconn *fc = fconn_for(fd, type, sa, len, dst, rt);
	if (!fc || n == 0) {
		if (fc)
			fconn_release(fc);
		return real.connect(fd, sa, len); /* cannot manage: as without flare */
	}
	for (int k = 0; k < n; k++) {
		int idx = order[k];
		struct sockaddr_storage ss;
		socklen_t sl = flare_addr_to_sockaddr_family(&rt->reps[idx].addr, fc->domain, &ss);
		int err;
		if (!sl)
			continue;
		if (k == 0) {
			/* the program's own socket first: its options and bind stay as they are */
			if (blocking)
				slice_apply(fc, fd);
			timeouts_defer(fc);
			if (!blocking) {
				/* a non-blocking connect stays non-blocking: the best live
				 * replica, EINPROGRESS at once */
				int rc = real.connect(fd, (struct sockaddr *)&ss, sl);
				err = rc == 0 ? 0 : errno;
				if (err == 0 || err == EINPROGRESS) {
					fc->cur = idx;
					fdtab_attach(fd, fc);
					STAT_INC(managed);
					/* the rest of the ranking is tried from the
					 * program's readiness calls if this one fails */
					nb_start(fc, order, n, k + 1, err == EINPROGRESS);
					errno = err;
					return rc;
				}
			} else {
				err = connect_within(fd, (struct sockaddr *)&ss, sl,
						     (int)fc->connect_timeout_ms);
			}
			if (err == 0) {
				fc->cur = idx;
				fdtab_attach(fd, fc);
				STAT_INC(managed);
				return 0;
			}
		} else {
			int nfd = dial_replica(fc, fd, rt, idx, &err);
			if (nfd >= 0) {
				int cloexec = real.fcntl(fd, F_GETFD) & FD_CLOEXEC;
				int fl = fd_getfl(fd);
				if (fl >= 0)
					real.fcntl(nfd, F_SETFL, fl);
				if (real.dup3(nfd, fd, cloexec ? O_CLOEXEC : 0) < 0) {
					err = errno;
					real.close(nfd);
				} else {
					real.close(nfd);
					fc->cur = idx;
					fdtab_attach(fd, fc);
					STAT_INC(managed);
					STAT_INC(connect_failovers);
					char a[FLARE_ADDR_STRLEN];
					log_info(
					    "connect to %s: replica %s after %d failed attempt(s)",
					    flare_addr_format(dst, a, sizeof(a)),
					    rt->reps[idx].name, k);
					return 0;
				}
			}
		}
		if (err == EINTR) {
			fconn_release(fc);
			errno = EINTR;
			return -1;
		}
		if (!first_err)
			first_err = err;
		log_debug("connect to replica %s failed: %s", rt->reps[idx].name, strerror(err));
	}
	fconn_release(fc);
	STAT_INC(passed_errors);
	/* a timed-out attempt reads as the kernel's ETIMEDOUT; a virtual address
	 * nobody listens on would have been refused */
	errno = first_err ? first_err : ECONNREFUSED;
	return -1;
}
