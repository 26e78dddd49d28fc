/* Healing a managed connection: a replacement socket to the next ranked
 * replica, the outstanding request replayed on it, and only then the swap
 * onto the program's descriptor number(s) with the same flags. A request
 * is "outstanding" from its first byte written until the first byte of its
 * reply is read; after that, a failure is the program's to see. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int is_conn_failure(int err)
{
	switch (err) {
	case ECONNRESET:
	case EPIPE:
	case ETIMEDOUT:
	case ECONNABORTED:
	case ENOTCONN:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN: return 1;
	default: return 0;
	}
}

void request_record(struct fconn *fc, const void *data, size_t n)
{
	struct iovec iov = {(void *)data, n};
	request_record_iov(fc, &iov, 1, n);
}

void request_record_iov(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n)
{
	pthread_mutex_lock(&fc->lock);
	if (__atomic_load_n(&fc->reply_started, __ATOMIC_ACQUIRE)) {
		/* the first byte written after a reply starts a new request */
		fc->len = 0;
		fc->overflow = 0;
		__atomic_store_n(&fc->reply_started, 0, __ATOMIC_RELEASE);
	}
	if (n)
		fc->fresh = 0;
	if (!fc->overflow && (uint64_t)fc->len + n > fc->cap) {
		fc->overflow = 1; /* too big to replay: a failure now surfaces */
		fc->len = 0;
	}
	for (int i = 0; i < iovcnt && n && !fc->overflow; i++) {
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
		memcpy(fc->buf + fc->len, iov[i].iov_base, k);
		fc->len += (uint32_t)k;
		n -= k;
	}
	pthread_mutex_unlock(&fc->lock);
}

int heal_allowed(struct fconn *fc)
{
	pthread_mutex_lock(&fc->lock);
	int started = __atomic_load_n(&fc->reply_started, __ATOMIC_ACQUIRE);
	int outstanding = !started && (fc->len > 0 || fc->overflow);
	/* nothing exchanged yet: reconnecting re-runs nothing, even for replay=none */
	int ok =
	    fc->fresh || (outstanding && !fc->overflow && fc->replay == FLARE_REPLAY_REQUEST_REPLY);
	pthread_mutex_unlock(&fc->lock);
	return ok;
}

static int send_all(int fd, const uint8_t *p, size_t n, int timeout_ms)
{
	while (n) {
		ssize_t w = real.send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			if (poll(&pf, 1, timeout_ms) <= 0 && errno != EINTR)
				return -1;
			continue;
		}
		return -1;
	}
	return 0;
}

/* Failover targets after local replica `cur` failed: its ranking (live
 * first; pushed in the table, or asked for now under reactive failover;
 * none under static), then every other replica in the configured order,
 * and `cur` itself last (it may have been restarted). */
static int targets(const struct fconn *fc, const struct flare_route *rt, uint8_t *out)
{
	const struct flare_tbl_replica *me = &rt->reps[fc->cur];
	uint8_t base[2 * FLARE_MAX_REPLICAS], seen[FLARE_MAX_REPLICAS] = {0};
	int nb = 0;
	int asked = fc->failover == FLARE_FAILOVER_REACTIVE ? query_targets(fc, rt, base) : -1;
	if (asked >= 0)
		nb = asked;
	else if (fc->failover != FLARE_FAILOVER_STATIC)
		for (int k = 0; k < me->n_failover; k++)
			base[nb++] = me->failover[k];
	for (uint32_t i = 0; i < rt->svc.n_replicas; i++)
		base[nb++] = (uint8_t)i;
	seen[fc->cur] = 1;
	int n = order_live_first(rt, base, nb, seen, out);
	out[n++] = (uint8_t)fc->cur;
	return n;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

/* Waits (bounded) for another thread's heal; 0 when it swapped. */
static int wait_other_healer(struct fconn *fc, uint32_t gen)
{
	int limit = (int)fc->connect_timeout_ms * FLARE_MAX_REPLICAS + 1000;
	for (int waited = 0; waited < limit; waited++) {
		if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen)
			return 0;
		if (!__atomic_load_n(&fc->healing, __ATOMIC_ACQUIRE))
			return __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen ? 0 : -1;
		sleep_ms(1);
	}
	return -1;
}

int fconn_swap(struct fconn *fc, int nfd)
{
	int fl = real.fcntl(fc->fds[0], F_GETFL);
	if (fl >= 0)
		real.fcntl(nfd, F_SETFL, fl & (O_NONBLOCK | O_ASYNC | O_APPEND));
	/* wake threads blocked on the old socket: they see the new generation
	 * and retry on the new one (a blocked recv does not wake on dup3) */
	real.shutdown(fc->fds[0], SHUT_RDWR);
	int rc = 0;
	pthread_mutex_lock(&fc->lock);
	for (int i = 0; i < fc->n_fds && rc == 0; i++) {
		int cloexec = real.fcntl(fc->fds[i], F_GETFD);
		if (real.dup3(nfd, fc->fds[i],
			      cloexec >= 0 && (cloexec & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
			rc = -1;
	}
	pthread_mutex_unlock(&fc->lock);
	real.close(nfd);
	if (rc == 0)
		ep_redo(fc);
	return rc;
}

int heal(struct fconn *fc, uint32_t gen, const char *why, int async)
{
	if (flare_in_foreign_child() || fc->n_fds == 0)
		return -1;
	if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen)
		return 0;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	int expected = 0;
	if (!__atomic_compare_exchange_n(&fc->healing, &expected, 1, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE) &&
	    fc->healer_tid != tid) /* our own stale claim: a siglongjmp left it */
		return wait_other_healer(fc, gen);
	fc->healer_tid = tid;
	if (fc->pending_fd >= 0) {
		real.close(fc->pending_fd);
		fc->pending_fd = -1;
	}
	int rc = -1;
	struct flare_route rt;
	if (__atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE) != gen) {
		rc = 0;
		goto out;
	}
	if (!heal_allowed(fc)) {
		log_debug("%s: not healed: a reply was being read, or the request is not "
			  "replayable",
			  why);
		goto out;
	}
	int trc = route_read(fc->svc_index, &rt);
	if (trc != FLARE_TBL_OK || (uint32_t)fc->cur >= rt.svc.n_replicas) {
		log_debug("%s: not healed: table %s", why, flare_tbl_rc_name(trc));
		goto out;
	}
	uint8_t order[FLARE_MAX_REPLICAS + 1];
	uint64_t t0 = flare_monotonic_ns();
	int n = targets(fc, &rt, order);
	const char *from = rt.reps[fc->cur].name;
	for (int k = 0; k < n; k++) {
		int idx = order[k], err = 0;
		/* a non-blocking program gets the new socket at once, still
		 * connecting; its replay follows from the program's next calls and
		 * readiness waits, and meanwhile it reads EAGAIN */
		int nfd = async ? dial_start(fc, fc->fds[0], &rt, idx, &err)
				: dial_replica(fc, fc->fds[0], &rt, idx, &err);
		if (nfd < 0) {
			log_debug("failover to %s: %s", rt.reps[idx].name, strerror(err));
			continue;
		}
		fc->pending_fd = nfd;
		uint32_t len = fc->len;
		int shut = __atomic_load_n(&fc->shut_wr, __ATOMIC_ACQUIRE);
		if (!async && len && send_all(nfd, fc->buf, len, (int)fc->connect_timeout_ms) < 0) {
			log_debug("replay to %s failed: %s", rt.reps[idx].name, strerror(errno));
			real.close(nfd);
			fc->pending_fd = -1;
			continue;
		}
		if (!async && shut)
			real.shutdown(nfd, SHUT_WR);
		int swapped = fconn_swap(fc, nfd);
		fc->pending_fd = -1;
		if (swapped < 0)
			break;
		fc->cur = idx;
		fc->fresh = fc->fresh && !len;
		STAT_INC(failovers);
		if (async) {
			fc->replay_off = 0;
			fc->replay_pending = len > 0 || shut;
			nb_start(fc, order, n, k + 1, err == EINPROGRESS);
		} else if (len) {
			STAT_INC(replays);
			STAT_ADD(replay_bytes, len);
		}
		log_info("service %s: %s -> %s (%s), %u request byte(s) %s, in %.0f us",
			 rt.svc.name, from, rt.reps[idx].name, why, len,
			 async ? "to replay once connected" : "replayed",
			 (double)(flare_monotonic_ns() - t0) / 1000.0);
		__atomic_add_fetch(&fc->gen, 1, __ATOMIC_ACQ_REL);
		rc = 0;
		goto out;
	}
	log_warn("service %s: no replica could take over from %s (%s)", rt.svc.name, from, why);
out:
	if (rc < 0)
		STAT_INC(passed_errors);
	__atomic_store_n(&fc->healing, 0, __ATOMIC_RELEASE);
	return rc;
}
