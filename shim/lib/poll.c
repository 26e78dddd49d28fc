#include "hook.h"

#include <poll.h>
#include <signal.h>
#include <time.h>

extern void __chk_fail(void) __attribute__((noreturn));

/* Hides the events of failed connects the library moved on from; returns
 * the count left. */
static int filter(struct pollfd *fds, nfds_t nfds, int n)
{
	for (nfds_t i = 0; i < nfds && n > 0; i++)
		if (fds[i].revents && nb_check_ready(fds[i].fd, fds[i].revents & POLLOUT)) {
			fds[i].revents = 0;
			n--;
		}
	return n;
}

FLARE_EXPORT int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	HOOK_ENTER(poll, (int)syscall(SYS_poll, fds, nfds, timeout));
	if (!__atomic_load_n(&flare_n_connecting, __ATOMIC_ACQUIRE))
		return real.poll(fds, nfds, timeout);
	int64_t end = wait_deadline(timeout);
	for (;;) {
		int n = real.poll(fds, nfds, timeout);
		if (n <= 0)
			return n;
		int left = filter(fds, nfds, n);
		if (left > 0 || (timeout = wait_left(timeout, end)) == 0)
			return left;
	}
}

FLARE_EXPORT int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo,
		       const sigset_t *mask)
{
	HOOK_ENTER(ppoll, (int)syscall(SYS_ppoll, fds, nfds, tmo, mask, sizeof(sigset_t)));
	if (!__atomic_load_n(&flare_n_connecting, __ATOMIC_ACQUIRE))
		return real.ppoll(fds, nfds, tmo, mask);
	for (;;) {
		/* a hidden event restarts the wait with the full timeout: at
		 * most once per replica of the service */
		int n = real.ppoll(fds, nfds, tmo, mask);
		if (n <= 0)
			return n;
		int left = filter(fds, nfds, n);
		if (left > 0 || (tmo && tmo->tv_sec == 0 && tmo->tv_nsec == 0))
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
