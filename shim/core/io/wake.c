/* The kernel wake, the library's side (agent/wake.c has the agent's). A
 * blocking read that waits for its reply registers its socket's cookie in
 * this process's waits page of NAME.user.UID; the agent, which has
 * CAP_NET_ADMIN, ends that socket through the kernel (SOCK_DESTROY, as
 * `ss -K` does) when the evidence condemns the connection, and the read
 * returns ECONNABORTED at once and heals. The read is then the program's
 * one call, with no slices: as without the library.
 *
 * Registered only while the table says its agent does this and was heard
 * from lately, for a request awaiting its reply, and only on connections
 * whose every reason to be woken the agent can see: none with
 * request_timeout_ms (its deadline is the library's). The
 * agent only ends sockets of the segment's own user whose cookie is
 * registered: never another program's. A siglongjmp out of a registered
 * read leaves its entry: the agent may then end that connection if its
 * replica dies for a reason it cannot tell by itself, as it would have
 * ended the read. */
#include "core.h"
#include "usershm.h"

#include "conn/conn.h"
#include "dial/dial.h"
#include "io/io.h"
#include "route/route.h"

static unsigned hint; /* where the last free entry was: relaxed, a guess */

uint64_t *wake_register(struct fconn *fc)
{
	struct flare_user_waits *w = __atomic_load_n(&flare_user_waits, __ATOMIC_ACQUIRE);
	uint64_t cookie = __atomic_load_n(&fc->pf.cookie, __ATOMIC_RELAXED);
	if (!w || !cookie || fc->svc.request_timeout_ms || !exchange_outstanding(fc) ||
	    !route_wakes())
		return NULL;
	/* TCP timeouts still owed are set now once due; a younger connection
	 * blocks without them (the agent's evidence does not need them) */
	if (__atomic_load_n(&fc->link.timeouts_owed, __ATOMIC_RELAXED))
		timeouts_settle(fc, 1);
	unsigned start = __atomic_load_n(&hint, __ATOMIC_RELAXED);
	for (unsigned k = 0; k < FLARE_USER_WAITS; k++) {
		unsigned i = (start + k) % FLARE_USER_WAITS;
		uint64_t free_entry = 0;
		if (__atomic_load_n(&w->cookie[i], __ATOMIC_RELAXED) == 0 &&
		    __atomic_compare_exchange_n(&w->cookie[i], &free_entry, cookie, 0,
						__ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
			__atomic_store_n(&hint, i + 1, __ATOMIC_RELAXED);
			return &w->cookie[i];
		}
	}
	return NULL; /* every entry taken: this read is sliced */
}

void wake_unregister(uint64_t *entry)
{
	if (entry)
		__atomic_store_n(entry, 0, __ATOMIC_RELEASE);
}
