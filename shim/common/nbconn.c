/* Non-blocking connects that stay non-blocking. connect() returns
 * EINPROGRESS for the best live replica at once; when the kernel reports
 * that attempt failed (POLLERR/POLLHUP, an epoll event, SO_ERROR), the
 * library dials the next ranked replica on a new socket, puts it on the
 * program's descriptor number (epoll registrations follow) and hides that
 * event: the program just goes on waiting and sees the connection that
 * succeeded. Every readiness hook exits at once while no connect is under
 * way (flare_n_connecting == 0). */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_CONNECTING 256

int flare_n_connecting;
static struct fconn *connecting[MAX_CONNECTING];
static pthread_mutex_t nb_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wait_deadline(int timeout_ms) { return timeout_ms > 0 ? now_ms() + timeout_ms : 0; }

int wait_left(int timeout_ms, int64_t deadline)
{
	if (timeout_ms <= 0)
		return timeout_ms;
	int64_t left = deadline - now_ms();
	return left > 0 ? (int)left : 0;
}

void nb_start(struct fconn *fc, const uint8_t *cand, int n, int pos, int in_progress)
{
	memcpy(fc->cand, cand, (size_t)n);
	fc->n_cand = n;
	fc->cand_pos = pos;
	fc->first_err = 0;
	if (!in_progress)
		return;
	pthread_mutex_lock(&nb_lock);
	for (int i = 0; i < MAX_CONNECTING; i++)
		if (!connecting[i]) {
			connecting[i] = fc;
			fc->connecting = 1;
			__atomic_add_fetch(&flare_n_connecting, 1, __ATOMIC_RELEASE);
			break;
		}
	pthread_mutex_unlock(&nb_lock);
}

void nb_done(struct fconn *fc)
{
	pthread_mutex_lock(&nb_lock);
	if (fc->connecting)
		for (int i = 0; i < MAX_CONNECTING; i++)
			if (connecting[i] == fc) {
				connecting[i] = NULL;
				__atomic_sub_fetch(&flare_n_connecting, 1, __ATOMIC_RELEASE);
				break;
			}
	fc->connecting = 0;
	pthread_mutex_unlock(&nb_lock);
}

static int swap_onto(struct fconn *fc, int fd, int nfd)
{
	int fl = real.fcntl(fd, F_GETFL);
	if (fl >= 0)
		real.fcntl(nfd, F_SETFL, fl & (O_NONBLOCK | O_ASYNC | O_APPEND));
	struct stat st;
	if (fstat(nfd, &st) == 0)
		fc->ino = st.st_ino;
	pthread_mutex_lock(&fc->lock);
	int rc = 0;
	for (int i = 0; i < fc->n_fds && rc == 0; i++) {
		int cloexec = real.fcntl(fc->fds[i], F_GETFD);
		rc = real.dup3(nfd, fc->fds[i],
			       cloexec >= 0 && (cloexec & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0
			 ? -1
			 : 0;
	}
	pthread_mutex_unlock(&fc->lock);
	real.close(nfd);
	if (rc == 0)
		ep_redo(fc);
	return rc;
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
		if (swap_onto(fc, fd, nfd) < 0)
			break;
		log_info("connect to service %s: %s refused or timed out (%s), trying %s",
			 rt.svc.name, rt.reps[fc->cur].name, strerror(err), rt.reps[idx].name);
		fc->cur = idx;
		__atomic_add_fetch(&fc->gen, 1, __ATOMIC_ACQ_REL);
		STAT_INC(connect_failovers);
		if (e == 0)
			nb_done(fc); /* connected at once */
		return 1;
	}
	fc->conn_err = fc->first_err ? fc->first_err : err;
	STAT_INC(passed_errors);
	nb_done(fc);
	return 0;
}

int nb_check_ready(int fd, int writable)
{
	struct fconn *fc = fdtab_get(fd);
	if (!fc || !__atomic_load_n(&fc->connecting, __ATOMIC_ACQUIRE))
		return 0;
	int err = 0;
	socklen_t l = sizeof(err);
	if (real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		return 0;
	if (err == 0) {
		/* writable without an error: connected; otherwise the event was
		 * for something else and the connect goes on */
		if (writable)
			nb_done(fc);
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
