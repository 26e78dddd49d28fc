/* The link state machine of a managed connection (see conn.h): its legal
 * transitions, the pending list that readiness hooks walk, and the claim
 * that lets one thread at a time move a connection. */
#include "lock.h"
#include "log.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "heal/heal.h"

#include <errno.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING 256

int flare_n_pending;
int flare_n_managed;
static struct fconn *pending[MAX_PENDING];
/* one past the highest slot in use: the walks (every wait while a connect
 * is pending) look at the slots in use, not at all of them [pending_lock] */
static int pending_top;
static pthread_mutex_t pending_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

static const char *const state_names[FC_N_STATES] = {
    [FC_FREE] = "free",
    [FC_READY] = "ready",
    [FC_CONNECTING] = "connecting",
    [FC_HEAL_CONNECTING] = "heal-connecting",
    [FC_REPLAYING] = "replaying",
    [FC_FAILED] = "failed",
};

/* legal[from] has bit `to` set: the table in conn.h, row by row. A heal
 * may start from any live state (the replica of a connection being healed
 * can die too) and leaves it in any live state. */
#define B(s) (1u << (s))
#define LIVE (B(FC_READY) | B(FC_CONNECTING) | B(FC_HEAL_CONNECTING) | B(FC_REPLAYING))
static const unsigned legal[FC_N_STATES] = {
    [FC_FREE] = B(FC_READY),
    [FC_READY] = LIVE | B(FC_FREE),
    [FC_CONNECTING] = LIVE | B(FC_FAILED) | B(FC_FREE),
    [FC_HEAL_CONNECTING] = LIVE | B(FC_FAILED) | B(FC_FREE),
    [FC_REPLAYING] = LIVE | B(FC_FAILED) | B(FC_FREE),
    [FC_FAILED] = B(FC_READY) | B(FC_FREE),
};
#undef LIVE
#undef B

const char *fconn_state_name(int state)
{
	return state >= 0 && state < FC_N_STATES ? state_names[state] : "?";
}

int fconn_transition_legal(int from, int to)
{
	return from >= 0 && from < FC_N_STATES && to >= 0 && to < FC_N_STATES &&
	       (legal[from] >> to & 1u);
}

static void pending_add(struct fconn *fc)
{
	/* a handler's non-blocking connect while this thread holds the list
	 * (lock.h): not listed; the program's own calls on it move it on */
	if (flare_lock(&pending_lock) == EDEADLK)
		return;
	for (int i = 0; i < MAX_PENDING && !fc->own.on_pending; i++)
		if (!pending[i]) {
			pending[i] = fc;
			__atomic_store_n(&fc->own.on_pending, 1, __ATOMIC_RELEASE);
			__atomic_add_fetch(&flare_n_pending, 1, __ATOMIC_RELEASE);
			if (i >= pending_top)
				pending_top = i + 1;
		}
	flare_unlock(&pending_lock);
}

/* [pending_lock] */
static void lower_top(void)
{
	while (pending_top > 0 && !pending[pending_top - 1])
		pending_top--;
}

static void pending_remove(struct fconn *fc)
{
	/* only the thread moving fc lists it (fconn_enter): not listed, nothing
	 * to take the lock for (every recycle asks) */
	if (!__atomic_load_n(&fc->own.on_pending, __ATOMIC_ACQUIRE))
		return;
	if (flare_lock(&pending_lock) == EDEADLK) {
		owed_set(OWED_UNLIST); /* a signal handler's close (lock.h) */
		return;
	}
	for (int i = 0; i < pending_top && fc->own.on_pending; i++)
		if (pending[i] == fc) {
			pending[i] = NULL;
			__atomic_store_n(&fc->own.on_pending, 0, __ATOMIC_RELEASE);
			__atomic_sub_fetch(&flare_n_pending, 1, __ATOMIC_RELEASE);
		}
	lower_top();
	flare_unlock(&pending_lock);
}

void pending_unlist_stale(void)
{
	if (flare_lock(&pending_lock) == EDEADLK) {
		owed_set(OWED_UNLIST);
		return;
	}
	for (int i = 0; i < pending_top; i++) {
		struct fconn *fc = pending[i];
		if (fc && !fconn_is_pending(fconn_state(fc))) {
			pending[i] = NULL;
			__atomic_store_n(&fc->own.on_pending, 0, __ATOMIC_RELEASE);
			__atomic_sub_fetch(&flare_n_pending, 1, __ATOMIC_RELEASE);
		}
	}
	lower_top();
	flare_unlock(&pending_lock);
}

int fconn_enter(struct fconn *fc, int to)
{
	int from = fconn_state(fc);
	if (!fconn_transition_legal(from, to)) {
		log_error("internal: connection state %s -> %s refused", fconn_state_name(from),
			  fconn_state_name(to));
		return -1;
	}
	/* joins the list before the state says pending, leaves it after: a
	 * reader that sees a pending state finds the connection listed */
	int was = fconn_is_pending(from), is = fconn_is_pending(to);
	if (is && !was)
		pending_add(fc);
	__atomic_store_n(&fc->link.state, to, __ATOMIC_RELEASE);
	if (was && !is)
		pending_remove(fc);
	return 0;
}

void fconn_leave_pending(struct fconn *fc) { pending_remove(fc); }

int fconn_take_owed_error(struct fconn *fc)
{
	/* a plain load on every read and write; the exchange only when owed */
	if (__atomic_load_n(&fc->link.state, __ATOMIC_RELAXED) != FC_FAILED)
		return 0;
	int err = __atomic_exchange_n(&fc->link.conn_err, 0, __ATOMIC_ACQ_REL);
	int expected = FC_FAILED;
	if (err) /* only the taker moves on: FAILED is never pending */
		__atomic_compare_exchange_n(&fc->link.state, &expected, FC_READY, 0,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	return err;
}

int pending_collect(int (*want)(struct fconn *, void *), void *arg, struct fconn **out, int max)
{
	int n = 0;
	if (flare_lock(&pending_lock) == EDEADLK)
		return 0;
	for (int i = 0; i < pending_top && n < max; i++)
		if (pending[i] && want(pending[i], arg))
			out[n++] = pending[i];
	flare_unlock(&pending_lock);
	return n;
}

/* the calling thread's id, asked of the kernel once (a fork child's only
 * thread forgets it: conn_atfork_child) */
static __thread pid_t my_tid;

static pid_t self_tid(void)
{
	if (!my_tid)
		my_tid = (pid_t)syscall(SYS_gettid);
	return my_tid;
}

void conn_atfork_child(void)
{
	my_tid = 0;
	flare_locks_held = 0; /* every lock is made anew */
	flare_mutex_init(&pending_lock);
}

int fconn_claim(struct fconn *fc)
{
	int expected = 0;
	if (__atomic_compare_exchange_n(&fc->own.claim, &expected, 1, 0, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE)) {
		__atomic_store_n(&fc->own.claim_tid, self_tid(), __ATOMIC_RELAXED);
		return 1;
	}
	/* our own stale claim: a siglongjmp (wget's connect timeout) left it */
	return __atomic_load_n(&fc->own.claim_tid, __ATOMIC_RELAXED) == self_tid();
}

int fconn_claim_wait(struct fconn *fc)
{
	/* the holders this is used against (connect moves, replays) make only
	 * non-blocking calls: a few microseconds */
	for (int i = 0; i < 2000; i++) {
		if (fconn_claim(fc))
			return 1;
		sched_yield();
	}
	return 0;
}

void fconn_unclaim(struct fconn *fc)
{
	__atomic_store_n(&fc->own.claim_tid, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fc->own.claim, 0, __ATOMIC_SEQ_CST);
	fconn_release_owed(fc); /* closed while claimed: recycled now */
}

int fconn_claimed(const struct fconn *fc)
{
	return __atomic_load_n(&fc->own.claim, __ATOMIC_ACQUIRE);
}
