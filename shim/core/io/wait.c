/* The readiness hooks' shared loop (poll, ppoll, select, pselect and the
 * epoll family): while connects or replays are pending, or connections are
 * owed their TCP timeouts, a wait sleeps in the kernel in short slices,
 * moves that work on between them, hides the events of connects the
 * library moved on from, and keeps the program's own deadline across
 * restarts. Every hook takes the plain path while none of that exists
 * (wait_is_plain). */
#include "clock.h"

#include "conn/conn.h"
#include "dial/dial.h"
#include "heal/heal.h"
#include "io/io.h"
#include "tls/tls_call.h"

#include <limits.h>

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

int wait_ms_of_ts(const struct timespec *ts)
{
	if (!ts)
		return -1;
	if (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
		return -2;
	if (ts->tv_sec >= INT_MAX / 1000 - 1)
		return INT_MAX;
	return (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000);
}

struct timespec wait_ts(const struct sliced_wait *w, int ms)
{
	if (w->exact && ms == w->exact_ms)
		return *w->exact;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	return ts;
}

static int at_most(int timeout, int ms) { return timeout < 0 || timeout > ms ? ms : timeout; }

int wait_slice(int timeout)
{
	/* a pending replay is moved on every millisecond: the program is not
	 * waiting for the new socket's POLLOUT */
	if (__atomic_load_n(&flare_n_pending, __ATOMIC_ACQUIRE) && nb_progress_all())
		return at_most(timeout, 1);
	/* and a TLS heal's connect and first flight (tls_heal.c) */
	if (__atomic_load_n(&flare_tls_healing, __ATOMIC_ACQUIRE) && tls_progress_all())
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
unsigned flare_waits; /* waits since start: a throttle for watch_all (wait_sliced) */
