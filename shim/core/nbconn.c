/* Non-blocking connects that stay non-blocking. connect() returns
 * EINPROGRESS for the best live replica at once; when the kernel reports
 * that attempt failed (POLLERR/POLLHUP, an epoll event, SO_ERROR), the
 * library dials the next ranked replica on a new socket, puts it on the
 * program's descriptor number (epoll registrations follow) and hides that
 * event: the program just goes on waiting and sees the connection that
 * succeeded. Every readiness hook exits at once while no connect is under
 * way and no connection is owed its timeouts (wait_is_plain). */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_CONNECTING 256

int flare_n_connecting;
static struct fconn *connecting[MAX_CONNECTING];
static pthread_mutex_t nb_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_ms(void) { return (int64_t)(flare_monotonic_ns() / 1000000); }

int64_t wait_deadline(int timeout_ms) { return timeout_ms > 0 ? now_ms() + timeout_ms : 0; }

int wait_left(int timeout_ms, int64_t deadline)
{
	if (timeout_ms <= 0)
		return timeout_ms;
	int64_t left = deadline - now_ms();
	return left > 0 ? (int)left : 0;
}

int wait_slice(int timeout)
{
	/* a pending heal is moved on every millisecond: the program is not
	 * waiting for the new socket's POLLOUT */
	if (__atomic_load_n(&flare_n_connecting, __ATOMIC_ACQUIRE) && nb_progress_all() &&
	    (timeout < 0 || timeout > 1))
		return 1;
	if (__atomic_load_n(&flare_n_timeouts_owed, __ATOMIC_ACQUIRE) &&
	    (timeout < 0 || timeout > FLARE_TIMEOUTS_DEFER_MS))
		return FLARE_TIMEOUTS_DEFER_MS;
	return timeout;
}

void wait_slept(void)
{
	/* nothing was ready: the program is idle, its connections are not new */
	if (__atomic_load_n(&flare_n_timeouts_owed, __ATOMIC_ACQUIRE))
		timeouts_settle_all();
}

int wait_sliced(struct sliced_wait *w, int timeout)
{
	int64_t end = wait_deadline(timeout);
	for (;;) {
		int n = w->wait(w, wait_slice(timeout));
		if (n < 0)
			return n;
		if (n == 0)
			wait_slept();
		int left = n ? w->filter(w, n) : 0;
		if (left > 0 || (timeout = wait_left(timeout, end)) == 0) {
			w->left_ms = timeout;
			return left;
		}
	}
}

static void slot_add(struct fconn *fc)
{
	pthread_mutex_lock(&nb_lock);
	for (int i = 0; i < MAX_CONNECTING && !fc->in_slot; i++)
		if (!connecting[i]) {
			connecting[i] = fc;
			fc->in_slot = 1;
			__atomic_add_fetch(&flare_n_connecting, 1, __ATOMIC_RELEASE);
		}
	pthread_mutex_unlock(&nb_lock);
}

static void slot_remove(struct fconn *fc)
{
	pthread_mutex_lock(&nb_lock);
	for (int i = 0; i < MAX_CONNECTING && fc->in_slot; i++)
		if (connecting[i] == fc) {
			connecting[i] = NULL;
			fc->in_slot = 0;
			__atomic_sub_fetch(&flare_n_connecting, 1, __ATOMIC_RELEASE);
		}
	pthread_mutex_unlock(&nb_lock);
}

void nb_start(struct fconn *fc, const uint8_t *cand, int n, int pos, int in_progress)
{
	memcpy(fc->cand, cand, (size_t)n);
	fc->n_cand = n;
	fc->cand_pos = pos;
	fc->first_err = 0;
	__atomic_store_n(&fc->connecting, in_progress, __ATOMIC_RELEASE);
	if (in_progress || fc->replay_pending)
		slot_add(fc);
}

void nb_done(struct fconn *fc)
{
	__atomic_store_n(&fc->connecting, 0, __ATOMIC_RELEASE);
	if (!fc->replay_pending)
		slot_remove(fc);
}

int nb_advance(struct fconn *fc, int fd, int err)
{
	struct flare_route rt;
	if (!fc->first_err)
		fc->first_err = err;
	if (flare_in_foreign_child() || route_read(fc->svc_index, &rt) != FLARE_TBL_OK) {
		fc->cand_pos = fc->n_cand;
	}
	while (fc->cand_pos < fc->n_cand) {
		int idx = fc->cand[fc->cand_pos++], e = 0;
		if ((uint32_t)idx >= rt.svc.n_replicas)
			continue;
		int nfd = dial_start(fc, fd, &rt, idx, &e);
		if (nfd < 0) {
			log_debug("connect to replica %s failed: %s", rt.reps[idx].name,
				  strerror(e));
			continue;
		}
		if (fconn_swap(fc, nfd) < 0)
			break;
		log_info("connect to service %s: %s refused or timed out (%s), trying %s",
			 rt.svc.name, rt.reps[fc->cur].name, strerror(err), rt.reps[idx].name);
		fc->cur = idx;
		fc->replay_off = 0; /* a new connection needs the whole request */
		__atomic_add_fetch(&fc->gen, 1, __ATOMIC_ACQ_REL);
		STAT_INC(connect_failovers);
		if (e == 0)
			nb_done(fc); /* connected at once */
		return 1;
	}
	/* none left: a connect reports its first error; a heal, the reset the
	 * program would have seen without the library */
	fc->conn_err = fc->replay_pending ? ECONNRESET : fc->first_err ? fc->first_err : err;
	fc->replay_pending = 0;
	STAT_INC(passed_errors);
	nb_done(fc);
	return 0;
}

void nb_progress(struct fconn *fc, int fd)
{
	int expected = 0;
	if (!__atomic_compare_exchange_n(&fc->healing, &expected, 1, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return; /* another thread is at it */
	if (__atomic_load_n(&fc->connecting, __ATOMIC_ACQUIRE)) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t l = sizeof(err);
		if (real.poll(&p, 1, 0) <= 0)
			goto out; /* still connecting */
		if (real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err) {
			nb_advance(fc, fd, err);
			goto out;
		}
		__atomic_store_n(&fc->connecting, 0, __ATOMIC_RELEASE);
	}
	while (fc->replay_pending && fc->replay_off < fc->len) {
		ssize_t w = real.send(fd, fc->buf + fc->replay_off, fc->len - fc->replay_off,
				      MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			fc->replay_off += (uint32_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			goto out;
		} else {
			nb_advance(fc, fd, w < 0 ? errno : EPIPE);
			goto out;
		}
	}
	if (fc->replay_pending) {
		if (__atomic_load_n(&fc->shut_wr, __ATOMIC_ACQUIRE))
			real.shutdown(fd, SHUT_WR);
		STAT_INC(replays);
		STAT_ADD(replay_bytes, fc->len);
		fc->replay_pending = 0;
	}
	nb_done(fc);
out:
	__atomic_store_n(&fc->healing, 0, __ATOMIC_RELEASE);
}

int nb_progress_all(void)
{
	struct fconn *work[MAX_CONNECTING];
	int n = 0, left = 0;
	pthread_mutex_lock(&nb_lock);
	for (int i = 0; i < MAX_CONNECTING; i++)
		if (connecting[i] && connecting[i]->replay_pending)
			work[n++] = connecting[i];
	pthread_mutex_unlock(&nb_lock);
	for (int i = 0; i < n; i++) {
		if (work[i]->n_fds > 0)
			nb_progress(work[i], work[i]->fds[0]);
		left += work[i]->replay_pending;
	}
	return left;
}

int nb_take_error(struct fconn *fc, int fd, int always, int *moved_on)
{
	*moved_on = 0;
	int err = __atomic_exchange_n(&fc->conn_err, 0, __ATOMIC_ACQ_REL);
	if (err || (!always && !__atomic_load_n(&fc->connecting, __ATOMIC_ACQUIRE)))
		return err;
	socklen_t l = sizeof(err);
	if (real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		return -1;
	if (!err || !__atomic_load_n(&fc->connecting, __ATOMIC_ACQUIRE))
		return err;
	if (nb_advance(fc, fd, err)) {
		*moved_on = 1;
		return 0;
	}
	int owed = __atomic_exchange_n(&fc->conn_err, 0, __ATOMIC_ACQ_REL);
	return owed ? owed : err;
}

int nb_check_ready(int fd, int ready)
{
	struct fconn *fc = fdtab_get(fd);
	if (!fc || !__atomic_load_n(&fc->connecting, __ATOMIC_ACQUIRE))
		return 0;
	int err = 0, writable = ready > 0;
	socklen_t l = sizeof(err);
	/* writable with no error flag: connected, no need to ask */
	if (ready < 2 && real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		return 0;
	if (err == 0) {
		/* writable without an error: connected (a pending replay goes
		 * out now); otherwise the event was for something else */
		if (writable) {
			__atomic_store_n(&fc->connecting, 0, __ATOMIC_RELEASE);
			if (fc->replay_pending)
				nb_progress(fc, fd);
			else
				nb_done(fc);
		}
		return 0;
	}
	return nb_advance(fc, fd, err);
}

void ep_register(struct fconn *fc, int epfd, int fd, uint32_t events, uint64_t data)
{
	pthread_mutex_lock(&fc->lock);
	int i = 0;
	while (i < fc->n_ep && !(fc->ep[i].epfd == epfd && fc->ep[i].fd == fd))
		i++;
	if (i == fc->n_ep && fc->n_ep < FLARE_MAX_EPOLL)
		fc->n_ep++;
	if (i < fc->n_ep) {
		fc->ep[i].epfd = epfd;
		fc->ep[i].fd = fd;
		fc->ep[i].events = events;
		fc->ep[i].data = data;
	}
	pthread_mutex_unlock(&fc->lock);
}

void ep_unregister(struct fconn *fc, int epfd, int fd)
{
	pthread_mutex_lock(&fc->lock);
	for (int i = 0; i < fc->n_ep; i++)
		if (fc->ep[i].epfd == epfd && fc->ep[i].fd == fd) {
			fc->ep[i] = fc->ep[--fc->n_ep];
			break;
		}
	pthread_mutex_unlock(&fc->lock);
}

/* epoll registers open file descriptions, not numbers: the old socket's
 * registrations went away with it, so each is added again for the new one
 * (an edge-triggered one fires if the new socket is already ready). */
void ep_redo(struct fconn *fc)
{
	if (!real.epoll_ctl)
		return;
	pthread_mutex_lock(&fc->lock);
	for (int i = 0; i < fc->n_ep; i++) {
		struct epoll_event ev = {.events = fc->ep[i].events};
		ev.data.u64 = fc->ep[i].data;
		if (real.epoll_ctl(fc->ep[i].epfd, EPOLL_CTL_ADD, fc->ep[i].fd, &ev) < 0 &&
		    errno == EEXIST)
			real.epoll_ctl(fc->ep[i].epfd, EPOLL_CTL_MOD, fc->ep[i].fd, &ev);
	}
	pthread_mutex_unlock(&fc->lock);
}

int ep_find_connecting(int epfd, uint64_t data)
{
	int fd = -1;
	pthread_mutex_lock(&nb_lock);
	for (int i = 0; i < MAX_CONNECTING && fd < 0; i++) {
		struct fconn *fc = connecting[i];
		for (int k = 0; fc && k < fc->n_ep; k++)
			if (fc->ep[k].epfd == epfd && fc->ep[k].data == data)
				fd = fc->ep[k].fd;
	}
	pthread_mutex_unlock(&nb_lock);
	return fd;
}
