/* The library's locks, and what a hook entered from a signal handler may
 * not do. The rules, in one place:
 *
 * 1. A hook may run inside a signal handler that interrupted its own
 *    thread inside the library, holding some of its locks. No hook blocks
 *    on such a lock: every mutex is error-checking (flare_mutex_init) and
 *    taken through flare_lock, which then returns EDEADLK.
 * 2. What a hook cannot do for that reason, it owes: owed_set(bit)
 *    (atomics only: async-signal-safe) after marking the object the work
 *    is for (a connection's own.fds_stale). Nothing else is deferred by
 *    any other means.
 * 3. Owed work is done by the thread that lets go of its last library lock
 *    (flare_unlock), that is, by the very code the handler interrupted, as
 *    soon as it may; and by any other thread that takes and lets go of one
 *    first. Work that meets EDEADLK again is owed again.
 * 4. What cannot be owed is not done, and fails closed: a descriptor a
 *    handler duplicates while the library holds the connection's lock
 *    stays unmanaged (its failures surface as without flare); a TLS
 *    session a handler starts inside the TLS table is not tracked; the
 *    table is not reopened, socket defaults not copied, a call site not
 *    cached. A hook never works unlocked on what its interrupted frame
 *    was changing.
 * 5. The claim (conn.h) is not a lock: a thread holds it across a heal's
 *    blocking calls. A connection closed while claimed is recycled when
 *    the claim is let go (own.release_owed); a siglongjmp out of a heal
 *    leaves the claim to the same thread (own.claim_tid) and the socket it
 *    was making to the next heal (own.pending_fd).
 * 6. A signal handler doing I/O on the very connection its thread was in
 *    the middle of reading or writing is broken with or without flare (it
 *    would deadlock on the program's own lock, or interleave bytes): the
 *    library keeps its own state whole (rule 1) and promises no more. */
#ifndef FLARE_LOCK_H
#define FLARE_LOCK_H

#include <errno.h> /* EDEADLK: what flare_lock returns to a re-entering handler */
#include <pthread.h>

/* Library locks this thread holds (a handler adds to its thread's count) */
extern __thread int flare_locks_held __attribute__((tls_model("initial-exec")));
/* OWED_* bits: sweeps a handler could not make */
extern int flare_owed;
enum {
	OWED_PRUNE = 1,  /* connections with own.fds_stale: drop the numbers the
			  * table forgot, and recycle those left with none */
	OWED_UNLIST = 2, /* the pending list may hold connections no longer pending */
	OWED_REGS = 4,   /* a registration's listening socket or monitor link may be closed */
};
void owed_set(int bits);
/* Does the owed sweeps (conn/fdtab.c, conn/conn.c, server/register.c). */
void owed_run(void);

void flare_mutex_init(pthread_mutex_t *m);

static inline int flare_lock(pthread_mutex_t *m)
{
	int r = pthread_mutex_lock(m);
	if (!r)
		flare_locks_held++;
	return r;
}

static inline int flare_trylock(pthread_mutex_t *m)
{
	int r = pthread_mutex_trylock(m);
	if (!r)
		flare_locks_held++;
	return r;
}

static inline void flare_unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
	if (--flare_locks_held <= 0) {
		flare_locks_held = 0;
		if (__builtin_expect(__atomic_load_n(&flare_owed, __ATOMIC_RELAXED), 0))
			owed_run();
	}
}

#endif
