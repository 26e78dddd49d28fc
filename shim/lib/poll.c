#include "hook.h"

#include <poll.h>
#include <signal.h>
#include <time.h>

extern void __chk_fail(void) __attribute__((noreturn));

static int ready(short r) { return !(r & POLLOUT) ? 0 : (r & (POLLERR | POLLHUP)) ? 1 : 2; }

/* Hides the events of failed connects the library moved on from; returns
 * the count left. */
static int filter(struct pollfd *fds, nfds_t nfds, int n)
{
	for (nfds_t i = 0; i < nfds && n > 0; i++)
		if (fds[i].revents && nb_check_ready(fds[i].fd, ready(fds[i].revents))) {
			fds[i].revents = 0;
			n--;
		}
	return n;
}

FLARE_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	HOOK_ENTER(poll, (int)syscall(SYS_poll, fds, nfds, timeout));
	if (wait_is_plain())
		return real.poll(fds, nfds, timeout);
	int64_t end = wait_deadline(timeout);
	for (;;) {
		int slice = wait_slice(timeout);
		int n = real.poll(fds, nfds, slice);
		if (n < 0)
			return n;
		if (n == 0)
			wait_slept();
		int left = n ? filter(fds, nfds, n) : 0;
		if (left > 0 || (timeout = wait_left(timeout, end)) == 0)
			return left;
	}
}

FLARE_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
		       const sigset_t *mask)
{
	HOOK_ENTER(ppoll, (int)syscall(SYS_ppoll, fds, nfds, tmo, mask, sizeof(sigset_t)));
	if (wait_is_plain())
		return real.ppoll(fds, nfds, tmo, mask);
	int timeout = tmo ? (int)(tmo->tv_sec * 1000 + tmo->tv_nsec / 1000000) : -1;
	int64_t end = wait_deadline(timeout);
	for (;;) {
		int ms = wait_slice(timeout);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
		int n = real.ppoll(fds, nfds, ms < 0 ? NULL : &ts, mask);
		if (n < 0)
			return n;
		if (n == 0)
			wait_slept();
		int left = n ? filter(fds, nfds, n) : 0;
		if (left > 0 || (timeout = wait_left(timeout, end)) == 0)
			return left;
	}
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
