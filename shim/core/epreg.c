/* The program's epoll registrations of managed descriptors. epoll
 * registers open file descriptions, not numbers: when a connection moves
 * to a new socket, the old socket's registrations go with it, so each is
 * added again for the new one with the same events and data. */
#include "shim.h"

#include <errno.h>
#include <sched.h>
#include <sys/epoll.h>

/* A few instructions held, never across a system call: a spin lock
 * (yielding if its holder was preempted) is cheaper than a mutex here. */
static __attribute__((noinline)) void ep_lock_contended(struct fconn *fc)
{
	for (unsigned spins = 0; __atomic_exchange_n(&fc->ep_lock, 1, __ATOMIC_ACQUIRE); spins++) {
		if (spins >= 64)
			sched_yield();
#if defined(__x86_64__) || defined(__i386__)
		else
			__builtin_ia32_pause();
#endif
	}
}

static inline void ep_lock(struct fconn *fc)
{
	if (__builtin_expect(__atomic_exchange_n(&fc->ep_lock, 1, __ATOMIC_ACQUIRE), 0))
		ep_lock_contended(fc);
}

static void ep_unlock(struct fconn *fc) { __atomic_store_n(&fc->ep_lock, 0, __ATOMIC_RELEASE); }

void ep_register(struct fconn *fc, int epfd, int fd, uint32_t events, uint64_t data)
{
	ep_lock(fc);
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
	ep_unlock(fc);
}

void ep_unregister(struct fconn *fc, int epfd, int fd)
{
	ep_lock(fc);
	for (int i = 0; i < fc->n_ep; i++)
		if (fc->ep[i].epfd == epfd && fc->ep[i].fd == fd) {
			fc->ep[i] = fc->ep[--fc->n_ep];
			break;
		}
	ep_unlock(fc);
}

/* The registrations as they are now, to act on without the lock. */
static int ep_snapshot(struct fconn *fc, struct epoll_event *evs, int *epfds, int *fds)
{
	ep_lock(fc);
	int n = fc->n_ep;
	for (int i = 0; i < n; i++) {
		epfds[i] = fc->ep[i].epfd;
		fds[i] = fc->ep[i].fd;
		evs[i].events = fc->ep[i].events;
		evs[i].data.u64 = fc->ep[i].data;
	}
	ep_unlock(fc);
	return n;
}

/* (an edge-triggered registration fires if the new socket is already ready) */
void ep_redo(struct fconn *fc)
{
	struct epoll_event evs[FLARE_MAX_EPOLL];
	int epfds[FLARE_MAX_EPOLL], fds[FLARE_MAX_EPOLL];
	if (!real.epoll_ctl)
		return;
	int n = ep_snapshot(fc, evs, epfds, fds);
	for (int i = 0; i < n; i++)
		if (real.epoll_ctl(epfds[i], EPOLL_CTL_ADD, fds[i], &evs[i]) < 0 && errno == EEXIST)
			real.epoll_ctl(epfds[i], EPOLL_CTL_MOD, fds[i], &evs[i]);
}

/* Every registration taken off its epoll instance (they are kept, for
 * ep_redo to put back on the socket that replaces this one). */
void ep_del_all(struct fconn *fc)
{
	struct epoll_event evs[FLARE_MAX_EPOLL];
	int epfds[FLARE_MAX_EPOLL], fds[FLARE_MAX_EPOLL];
	int n = ep_snapshot(fc, evs, epfds, fds);
	for (int i = 0; i < n; i++)
		real.epoll_ctl(epfds[i], EPOLL_CTL_DEL, fds[i], NULL);
}

void ep_atfork_child(struct fconn *fc) { fc->ep_lock = 0; }

struct ep_key {
	int epfd, fd;
	uint64_t data;
};

static int registered(struct fconn *fc, void *arg)
{
	struct ep_key *k = arg;
	int found = 0;
	ep_lock(fc);
	for (int i = 0; i < fc->n_ep && !found; i++)
		if (fc->ep[i].epfd == k->epfd && fc->ep[i].data == k->data) {
			k->fd = fc->ep[i].fd;
			found = 1;
		}
	ep_unlock(fc);
	return found;
}

static int connecting_registered(struct fconn *fc, void *arg)
{
	int st = fconn_state(fc);
	return fconn_is_connecting(st) && registered(fc, arg);
}

int ep_find_connecting(int epfd, uint64_t data)
{
	struct ep_key k = {epfd, -1, data};
	struct fconn *fc;
	return pending_collect(connecting_registered, &k, &fc, 1) ? k.fd : -1;
}

int ep_find(int epfd, uint64_t data)
{
	struct ep_key k = {epfd, -1, data};
	struct fconn *fc;
	return fdtab_collect(registered, &k, &fc, 1) ? k.fd : -1;
}
