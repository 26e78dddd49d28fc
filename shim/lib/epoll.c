#include "hook.h"

#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

/* Registrations are the kernel's: a swap reads them from /proc (epreg.c).
 * The hook only counts calls: a process that never registered anything is
 * never asked, and a read stays good until the next call. */
FLARE_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	HOOK_ENTER(epoll_ctl, (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev));
	__atomic_add_fetch(&flare_epoll_ctls, 1, __ATOMIC_ACQ_REL);
	return real.epoll_ctl(epfd, op, fd, ev);
}

/* Hides the events of failed connects the library moved on from, and of
 * failed connections it is healing; only events with error or hang-up
 * bits (or, while connects are pending, writability) are looked at. */
static int filter(int epfd, struct epoll_event *evs, int n)
{
	int k = 0, pending = __atomic_load_n(&flare_n_pending, __ATOMIC_ACQUIRE);
	/* readable events are looked up (in /proc) only while a session's
	 * replies may be among them */
	uint32_t mine =
	    EPOLLOUT | EPOLLERR | EPOLLHUP | (pending && nb_session_replays() ? EPOLLIN : 0);
	for (int i = 0; i < n; i++) {
		uint32_t e = evs[i].events;
		int bad = !!(e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)), fd;
		if (pending && (e & mine) && (fd = ep_find_pending(epfd, evs[i].data.u64)) >= 0 &&
		    (nb_event(fd, !!(e & EPOLLOUT), bad) ||
		     ((e & mine & EPOLLIN) && nb_event_in(fd))))
			continue;
		if (bad && (fd = ep_find(epfd, evs[i].data.u64)) >= 0 && heal_on_event(fd))
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
	if (w->exact && real.epoll_pwait2) {
		/* epoll_pwait2: the program's nanoseconds when this is all of its wait */
		struct timespec ts = wait_ts(w, ms);
		return real.epoll_pwait2(e->epfd, e->evs, e->max, ms < 0 ? NULL : &ts, e->mask);
	}
	return real.epoll_pwait(e->epfd, e->evs, e->max, ms, e->mask);
}

static int ep_filter(struct sliced_wait *w, int n)
{
	struct ep_wait *e = (struct ep_wait *)w;
	return filter(e->epfd, e->evs, n);
}

static int sliced(int epfd, struct epoll_event *evs, int max, int timeout,
		  const struct timespec *exact, const sigset_t *mask)
{
	struct ep_wait e = {{ep_wait, ep_filter, 0, exact, timeout}, epfd, max, evs, mask};
	return wait_sliced(&e.w, timeout);
}

FLARE_EXPORT int epoll_pwait2(int epfd, struct epoll_event *evs, int max,
			      const struct timespec *tmo, const sigset_t *mask)
{
	HOOK_ENTER(epoll_pwait2,
		   (int)syscall(SYS_epoll_pwait2, epfd, evs, max, tmo, mask, sizeof(sigset_t)));
	int ms;
	if (wait_is_plain() || (ms = wait_ms_of_ts(tmo)) == -2 || !real.epoll_pwait)
		return real.epoll_pwait2(epfd, evs, max, tmo, mask);
	return sliced(epfd, evs, max, ms, tmo, mask);
}

FLARE_EXPORT int epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout,
			     const sigset_t *mask)
{
	HOOK_ENTER(epoll_pwait,
		   (int)syscall(SYS_epoll_pwait, epfd, evs, max, timeout, mask, sizeof(sigset_t)));
	if (wait_is_plain())
		return real.epoll_pwait(epfd, evs, max, timeout, mask);
	return sliced(epfd, evs, max, timeout, NULL, mask);
}

FLARE_EXPORT int epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout)
{
	HOOK_ENTER(epoll_wait, (int)syscall(SYS_epoll_pwait, epfd, evs, max, timeout, NULL, 0));
	if (wait_is_plain())
		return real.epoll_wait(epfd, evs, max, timeout);
	if (!real.epoll_pwait)
		return real.epoll_wait(epfd, evs, max, timeout);
	return sliced(epfd, evs, max, timeout, NULL, NULL);
}
