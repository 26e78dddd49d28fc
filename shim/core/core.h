/* What every file of the library's core uses: whether the program is
 * threaded, the export marker of the hooks, and the statistics. */
#ifndef FLARE_CORE_H
#define FLARE_CORE_H

#include "usershm.h"

#include <stdint.h>
#include <sys/single_threaded.h>

/* A program that never started a thread cannot race itself: the request
 * path skips its lock and locked instructions there. glibc clears the
 * flag before a second thread exists (libstdc++ elides atomics on it);
 * the library starts no thread of its own. */
static inline int flare_threaded(void) { return !__libc_single_threaded; }

#define FLARE_EXPORT __attribute__((visibility("default")))

/* ---- statistics ---- */
/* Counted as things happen (relaxed atomics); FLARE_LOG=info logs them at
 * exit, and FLARE_STATS=PATH appends them to PATH as one line of
 * name=value pairs (init.c), for tests and scripts. */
#define FLARE_STATS_FIELDS(X)                                                                      \
	X(managed)                                                                                 \
	X(connect_failovers)                                                                       \
	X(failovers)                                                                               \
	X(heals_async)                                                                             \
	X(replays)                                                                                 \
	X(replay_bytes)                                                                            \
	X(passed_errors)                                                                           \
	X(table_dead_wakeups)                                                                      \
	X(request_timeouts)                                                                        \
	X(queries_answered)                                                                        \
	X(queries_failed) X(rebinds) X(switches) X(tls_linked) X(tls_heals) X(tls_refused)
#define FLARE_STATS_FIELD(name) uint64_t name;
struct flare_stats {
	FLARE_STATS_FIELDS(FLARE_STATS_FIELD)
};
#undef FLARE_STATS_FIELD
extern struct flare_stats flare_stats;
#define STAT_INC(f) __atomic_add_fetch(&flare_stats.f, 1, __ATOMIC_RELAXED)
#define STAT_ADD(f, n) __atomic_add_fetch(&flare_stats.f, (n), __ATOMIC_RELAXED)
/* A process counter f and, for the host's agent, service svc's counter ss
 * in this process's slot of NAME.user.UID when it has one (usershm.c) */
extern struct flare_user_slot *flare_user_slot;
/* ... and its page of blocking reads registered for the kernel wake
 * (io/wake.c) */
extern struct flare_user_waits *flare_user_waits;
#define COUNT(f, svc, ss, n)                                                                       \
	do {                                                                                       \
		STAT_ADD(f, (n));                                                                  \
		struct flare_user_slot *s_ = __atomic_load_n(&flare_user_slot, __ATOMIC_ACQUIRE);  \
		if (s_)                                                                            \
			__atomic_add_fetch(&s_->v[(svc) % FLARE_USER_SERVICES][ss], (n),           \
					   __ATOMIC_RELAXED);                                      \
	} while (0)

#endif
