#include "hook.h"

#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

/* The program's registrations of managed descriptors are remembered, so a
 * descriptor moved to a new socket is registered again in every epoll
 * instance with the same events and data. */
FLARE_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	HOOK_ENTER(epoll_ctl, (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev));
	int r = real.epoll_ctl(epfd, op, fd, ev);
	struct fconn *fc;
	if (r == 0 && (fc = fdtab_get(fd)) != NULL) {
		if (op == EPOLL_CTL_DEL)
			ep_unregister(fc, epfd, fd);
		else if (ev)
			ep_register(fc, epfd, fd, ev->events, ev->data.u64);
	}
	return r;
}

/* Hides the events of failed connects the library moved on from, and of
 * failed connections it is healing; only events with error or hang-up
 * bits (or, while connects are pending, writability) are looked at. */
static int filter(int epfd, struct epoll_event *evs, int n)
{
	int k = 0, pending = __atomic_load_n(&flare_n_pending, __ATOMIC_ACQUIRE);
	for (int i = 0; i < n; i++) {
		uint32_t e = evs[i].events;
		int bad = !!(e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)), fd;
		if (pending && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) &&
		    (fd = ep_find_connecting(epfd, evs[i].data.u64)) >= 0 &&
		    nb_event(fd, !!(e & EPOLLOUT), bad))
			continue;
		if (bad && (fd = ep_find(epfd, evs[i].data.u64)) >= 0 && heal_on_event(fd, 0))
			continue;
		evs[k++] = evs[i];
	}
	return k;
}

struct ep_wait {
	struct sliced_wait w;
	int epfd, max;
	struct epoll_event *evs;
	const sigset_t *mask;
};

static int ep_wait(struct sliced_wait *w, int ms)
{
	struct ep_wait *e = (struct ep_wait *)w;
	return real.epoll_pwait(e->epfd, e->evs, e->max, ms, e->mask);
}

static int ep_filter(struct sliced_wait *w, int n)
{
	struct ep_wait *e = (struct ep_wait *)w;
	return filter(e->epfd, e->evs, n);
}

static int sliced(int epfd, struct epoll_event *evs, int max, int timeout, const sigset_t *mask)
{
	struct ep_wait e = {{ep_wait, ep_filter, 0}, epfd, max, evs, mask};
	return wait_sliced(&e.w, timeout);
}

FLARE_EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout,
			     const sigset_t *mask)
{
	HOOK_ENTER(epoll_pwait,
		   (int)syscall(SYS_epoll_pwait, epfd, evs, max, timeout, mask, sizeof(sigset_t)));
	if (wait_is_plain())
		return real.epoll_pwait(epfd, evs, max, timeout, mask);
	return sliced(epfd, evs, max, timeout, mask);
}

FLARE_EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	HOOK_ENTER(epoll_wait, (int)syscall(SYS_epoll_pwait, epfd, evs, max, timeout, NULL, 0));
	if (wait_is_plain())
		return real.epoll_wait(epfd, evs, max, timeout);
	if (!real.epoll_pwait)
		return real.epoll_wait(epfd, evs, max, timeout);
	return sliced(epfd, evs, max, timeout, NULL);
}
