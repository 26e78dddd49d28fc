/* The readiness hooks' shared loop (poll, ppoll, select, pselect and the
 * epoll family): while connects or replays are pending, or connections are
 * owed their TCP timeouts, a wait sleeps in the kernel in short slices,
 * moves that work on between them, hides the events of connects the
 * library moved on from, and keeps the program's own deadline across
 * restarts. Every hook takes the plain path while none of that exists
 * (wait_is_plain). */
#include "shim.h"

int64_t wait_deadline(int timeout_ms)
{
	return timeout_ms > 0 ? (int64_t)flare_monotonic_ms() + timeout_ms : 0;
}

int wait_left(int timeout_ms, int64_t deadline)
{
	if (timeout_ms <= 0)
		return timeout_ms;
	int64_t left = deadline - (int64_t)flare_monotonic_ms();
	return left > 0 ? (int)left : 0;
}

static int at_most(int timeout, int ms) { return timeout < 0 || timeout > ms ? ms : timeout; }

int wait_slice(int timeout)
{
	/* a pending replay is moved on every millisecond: the program is not
	 * waiting for the new socket's POLLOUT */
	if (__atomic_load_n(&flare_n_pending, __ATOMIC_ACQUIRE) && nb_progress_all())
		return at_most(timeout, 1);
	if (__atomic_load_n(&flare_n_timeouts_owed, __ATOMIC_ACQUIRE))
		timeout = at_most(timeout, FLARE_TIMEOUTS_DEFER_MS);
	/* a reply awaited: its replica may die or hang meanwhile (watch.c) */
	if (__atomic_load_n(&flare_n_outstanding, __ATOMIC_ACQUIRE))
		timeout = at_most(timeout, FLARE_SLICE_MS);
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
	/* the program's deadline, read off the clock only when a second wait
	 * needs it: a wait that returns events (nearly all) costs no clock */
	int64_t end = 0;
	int have_end = 0;
	for (;;) {
		int slice = wait_slice(timeout);
		int n = w->wait(w, slice);
		if (n < 0)
			return n;
		/* a busy loop looks once in 64 waits (watch_all reads the clock),
		 * an idle one after every slice it slept; the count is only a
		 * throttle: no locked instruction per wait, a lost update is fine */
		static unsigned waits;
		if (__atomic_load_n(&flare_n_outstanding, __ATOMIC_ACQUIRE)) {
			unsigned k = __atomic_load_n(&waits, __ATOMIC_RELAXED) + 1;
			__atomic_store_n(&waits, k, __ATOMIC_RELAXED);
			if (n == 0 || (k & 63) == 0)
				watch_all();
		}
		if (n == 0)
			wait_slept();
		int left = n ? w->filter(w, n) : 0;
		if (left > 0 || timeout == 0 || (n == 0 && slice == timeout)) {
			w->left_ms = left > 0 ? timeout : 0;
			return left;
		}
		if (timeout > 0) {
			if (!have_end) {
				/* a wait that came back empty slept its slice; one whose
				 * events were all hidden is taken as having slept none */
				end = (int64_t)flare_monotonic_ms() - (n == 0 ? slice : 0) + timeout;
				have_end = 1;
			}
			if ((timeout = wait_left(timeout, end)) == 0) {
				w->left_ms = 0;
				return 0;
			}
		}
	}
}
