#include "hook.h"

#include <poll.h>
#include <signal.h>
#include <time.h>

extern void __chk_fail(void) __attribute__((noreturn));

/* Hides the events of failed connects the library moved on from, and of
 * failed connections it is healing; returns the count left. */
static int filter(struct pollfd *fds, nfds_t nfds, int n)
{
	int pending = __atomic_load_n(&flare_n_pending, __ATOMIC_ACQUIRE);
	for (nfds_t i = 0; i < nfds && n > 0; i++) {
		short r = fds[i].revents;
		int bad = !!(r & (POLLERR | POLLHUP | POLLRDHUP));
		if (!r || (!bad && !(pending && (r & (POLLOUT | POLLIN)))))
			continue;
		if ((pending && (r & POLLOUT) && nb_event(fds[i].fd, 1, bad)) ||
		    (pending && !(r & POLLOUT) && bad && nb_event(fds[i].fd, 0, bad)) ||
		    (pending && (r & POLLIN) && nb_event_in(fds[i].fd)) ||
		    (bad && heal_on_event(fds[i].fd))) {
			fds[i].revents = 0;
			n--;
		}
	}
	return n;
}

/* poll and ppoll both wait through ppoll: the same call with no mask */
struct poll_wait {
	struct sliced_wait w;
	struct pollfd *fds;
	nfds_t nfds;
	const sigset_t *mask;
};

static int poll_wait(struct sliced_wait *w, int ms)
{
	struct poll_wait *p = (struct poll_wait *)w;
	struct timespec ts = wait_ts(w, ms);
	return real.ppoll(p->fds, p->nfds, ms < 0 ? NULL : &ts, p->mask);
}

static int poll_filter(struct sliced_wait *w, int n)
{
	struct poll_wait *p = (struct poll_wait *)w;
	return filter(p->fds, p->nfds, n);
}

static int sliced_ppoll(struct pollfd *fds, nfds_t nfds, int timeout, const struct timespec *exact,
			const sigset_t *mask)
{
	struct poll_wait p = {{poll_wait, poll_filter, 0, exact, timeout}, fds, nfds, mask};
	return wait_sliced(&p.w, timeout);
}

FLARE_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	HOOK_ENTER(poll, (int)syscall(SYS_poll, fds, nfds, timeout));
	if (wait_is_plain() || !real.ppoll)
		return real.poll(fds, nfds, timeout);
	return sliced_ppoll(fds, nfds, timeout, NULL, NULL);
}

FLARE_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
		       const sigset_t *mask)
{
	HOOK_ENTER(ppoll, (int)syscall(SYS_ppoll, fds, nfds, tmo, mask, sizeof(sigset_t)));
	int ms;
	if (wait_is_plain() || (ms = wait_ms_of_ts(tmo)) == -2)
		return real.ppoll(fds, nfds, tmo, mask);
	return sliced_ppoll(fds, nfds, ms, tmo, mask);
}

FLARE_EXPORT int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		__chk_fail();
	return poll(fds, nfds, timeout);
}

FLARE_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
			     const sigset_t *mask, size_t fdslen)
{
	if (fdslen / sizeof(*fds) < nfds)
		__chk_fail();
	return ppoll(fds, nfds, tmo, mask);
}
