/* The work hooks entered from signal handlers owe (lock.h). */
#include "lock.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "server/register.h"

__thread int flare_locks_held __attribute__((tls_model("initial-exec")));
int flare_owed;

void flare_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
}

void owed_set(int bits) { __atomic_or_fetch(&flare_owed, bits, __ATOMIC_RELEASE); }

void owed_run(void)
{
	/* a sweep that meets a lock this thread holds owes itself again, and
	 * only the bits taken here run: no recursion through flare_unlock */
	int bits = __atomic_exchange_n(&flare_owed, 0, __ATOMIC_ACQ_REL);
	if (bits & OWED_PRUNE)
		fdtab_prune_all();
	if (bits & OWED_UNLIST)
		pending_unlist_stale();
	if (bits & OWED_REGS)
		register_sweep();
}
