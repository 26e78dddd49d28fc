/* The program's epoll registrations of managed descriptors. epoll
 * registers open file descriptions, not numbers: when a connection moves
 * to a new socket, the old socket's registrations go with it, so each is
 * added again for the new one with the same events and data. */
#include "shim.h"

#include <errno.h>
#include <sys/epoll.h>

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

/* (an edge-triggered registration fires if the new socket is already ready) */
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

struct ep_key {
	int epfd, fd;
	uint64_t data;
};

static int registered(struct fconn *fc, void *arg)
{
	struct ep_key *k = arg;
	int found = 0;
	pthread_mutex_lock(&fc->lock);
	for (int i = 0; i < fc->n_ep && !found; i++)
		if (fc->ep[i].epfd == k->epfd && fc->ep[i].data == k->data) {
			k->fd = fc->ep[i].fd;
			found = 1;
		}
	pthread_mutex_unlock(&fc->lock);
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
