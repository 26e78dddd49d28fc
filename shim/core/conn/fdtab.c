/* Descriptor -> managed connection. The array is one anonymous mapping
 * sized to the descriptor limit and reserved lazily, so untouched pages
 * cost no memory. fconns are recycled through a free list and never freed:
 * a thread still holding a pointer after a close reads a valid object whose
 * generation has moved on, never freed memory. A connection whose claim
 * is held (a heal, a connect move) is recycled only when its holder lets
 * go: a heal never acts on an object that became another connection.
 *
 * close() must not deadlock when a signal handler calls it while its own
 * thread was inside the library holding the connection's mutex (lock.h):
 * there the close only forgets the number in the table and owes the
 * prune (fdtab_prune_all), and every user of fds[] checks the table first
 * (fconn_prune_locked). */
#include "lock.h"
#include "log.h"
#include "real.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "dial/dial.h"
#include "io/io.h"
#include "route/route.h"
#include "server/register.h"
#include "tls/tls.h"
#include "tls/tls_call.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define MAX_TRACKED_FDS (1 << 20)

/* the table fdtab_get reads inline (shim.h): set once, at init */
struct fconn **flare_fdtab;
size_t flare_fdtab_size;
static uint16_t *opts_set; /* FLARE_BUF_*, FLARE_SET_* and FLARE_FL_* bits per descriptor */
/* one past the highest number whose O_NONBLOCK is known (FLARE_FL_KNOWN) */
static unsigned fl_known_top;
static struct fconn *free_list, *all_list; /* free_list: pushed lock-free, popped under tab_lock */
static pthread_mutex_t tab_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

int fdtab_init(void)
{
	struct rlimit rl;
	size_t n = 65536;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY && rl.rlim_max > n)
		n = rl.rlim_max;
	if (n > MAX_TRACKED_FDS)
		n = MAX_TRACKED_FDS;
	void *p = mmap(NULL, n * sizeof(*flare_fdtab), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	void *b = mmap(NULL, n * sizeof(*opts_set), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b == MAP_FAILED) {
		munmap(p, n * sizeof(*flare_fdtab));
		return -1;
	}
	flare_fdtab = p;
	opts_set = b;
	flare_fdtab_size = n;
	return 0;
}

struct fconn *fconn_new(void)
{
	if (flare_lock(&tab_lock) == EDEADLK)
		return NULL; /* a handler's connect inside the table (lock.h): unmanaged */
	/* the only popper (tab_lock): a push racing it cannot make it see a
	 * node twice (no ABA) */
	struct fconn *fc = __atomic_load_n(&free_list, __ATOMIC_ACQUIRE);
	while (fc && !__atomic_compare_exchange_n(&free_list, &fc, fc->next_free, 0,
						  __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	flare_unlock(&tab_lock);
	if (fc && __atomic_load_n(&fc->own.on_pending, __ATOMIC_ACQUIRE))
		fconn_leave_pending(fc); /* a release that could not take the list's lock */
	if (!fc) {
		fc = calloc(1, sizeof(*fc));
		if (!fc)
			return NULL;
		flare_mutex_init(&fc->lock);
		flare_lock(&tab_lock);
		fc->all_next = all_list;
		all_list = fc;
		flare_unlock(&tab_lock);
	}
	__atomic_add_fetch(&fc->gen, 1, __ATOMIC_RELEASE);
	memset(&fc->link, 0, sizeof(*fc) - offsetof(struct fconn, link));
	fc->own.pending_fd = -1;
	exchange_reset(fc);
	fconn_enter(fc, FC_READY);
	__atomic_add_fetch(&flare_n_managed, 1, __ATOMIC_RELEASE);
	return fc;
}

void fdtab_attach(int fd, struct fconn *fc)
{
	if ((unsigned)fd >= flare_fdtab_size || flare_lock(&fc->lock) == EDEADLK)
		return; /* (a dup from a signal handler inside the library: left unmanaged) */
	if (fc->own.n_fds < FLARE_MAX_ALIASES)
		fc->own.fds[fc->own.n_fds++] = fd;
	flare_unlock(&fc->lock);
	__atomic_store_n(&flare_fdtab[fd], fc, __ATOMIC_RELEASE);
}

void fconn_prune_locked(struct fconn *fc)
{
	if (!__atomic_load_n(&fc->own.fds_stale, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&fc->own.fds_stale, 0, __ATOMIC_RELAXED);
	for (int i = 0; i < fc->own.n_fds;)
		if (fdtab_get(fc->own.fds[i]) != fc)
			fc->own.fds[i] = fc->own.fds[--fc->own.n_fds];
		else
			i++;
	if (!fc->own.n_fds)
		__atomic_store_n(&fc->own.release_owed, 1, __ATOMIC_SEQ_CST);
}

/* Drops fd from fc; 1 when it was its last descriptor. */
static int unlink_fd(int fd, struct fconn *fc)
{
	__atomic_store_n(&flare_fdtab[fd], NULL, __ATOMIC_RELEASE);
	if (flare_lock(&fc->lock) == EDEADLK) {
		/* this thread holds it: a signal handler interrupted the library
		 * (lock.h: owed, pruned when the thread lets go) */
		__atomic_store_n(&fc->own.fds_stale, 1, __ATOMIC_RELEASE);
		owed_set(OWED_PRUNE);
		return 0;
	}
	fconn_prune_locked(fc);
	for (int i = 0; i < fc->own.n_fds; i++)
		if (fc->own.fds[i] == fd) {
			fc->own.fds[i] = fc->own.fds[--fc->own.n_fds];
			break;
		}
	int last = fc->own.n_fds == 0;
	flare_unlock(&fc->lock);
	return last;
}

void fdtab_detach(int fd)
{
	struct fconn *fc = fdtab_get(fd);
	if (fc && unlink_fd(fd, fc))
		fconn_release(fc);
}

void fdtab_unlink(int fd)
{
	struct fconn *fc = fdtab_get(fd);
	if (fc)
		unlink_fd(fd, fc);
}

int fconn_first_fd(struct fconn *fc)
{
	flare_lock(&fc->lock);
	fconn_prune_locked(fc);
	int fd = fc->own.n_fds ? fc->own.fds[0] : -1;
	flare_unlock(&fc->lock);
	if (fd < 0)
		fconn_release_owed(fc);
	return fd;
}

static void recycle(struct fconn *fc)
{
	rebind_release(fc);
	timeouts_forget(fc);
	fconn_leave_pending(fc);
	exchange_retire(fc); /* no longer waiting for a reply */
	/* a TLS session over it (still the program's until SSL_free) is no
	 * longer this connection's: a heal under way on it ends */
	__atomic_store_n(&fc->tls.sess, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&fc->tls.mode, FT_OFF, __ATOMIC_RELEASE);
	if (__atomic_exchange_n(&fc->link.state, FC_FREE, __ATOMIC_ACQ_REL) == FC_FREE)
		return; /* already on the free list */
	__atomic_sub_fetch(&flare_n_managed, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&fc->gen, 1, __ATOMIC_RELEASE);
	struct fconn *head = __atomic_load_n(&free_list, __ATOMIC_ACQUIRE);
	do
		fc->next_free = head;
	while (!__atomic_compare_exchange_n(&free_list, &head, fc, 0, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE));
}

void fconn_release_owed(struct fconn *fc)
{
	if (!__atomic_load_n(&fc->own.release_owed, __ATOMIC_SEQ_CST))
		return;
	/* the claim's holder recycles it when it lets go (fconn_unclaim) */
	int expected = 0;
	if (!__atomic_compare_exchange_n(&fc->own.claim, &expected, 1, 0, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		return;
	if (__atomic_exchange_n(&fc->own.release_owed, 0, __ATOMIC_SEQ_CST))
		recycle(fc); /* the claim stays taken until fconn_new clears it */
	else
		__atomic_store_n(&fc->own.claim, 0, __ATOMIC_SEQ_CST);
}

void fconn_release(struct fconn *fc)
{
	__atomic_store_n(&fc->own.release_owed, 1, __ATOMIC_SEQ_CST);
	fconn_release_owed(fc);
}

static void flags_unknown(int fd)
{
	if ((unsigned)fd < flare_fdtab_size &&
	    (__atomic_load_n(&opts_set[fd], __ATOMIC_RELAXED) & FLARE_FL_BITS))
		__atomic_and_fetch(&opts_set[fd], (uint16_t)~FLARE_FL_BITS, __ATOMIC_RELAXED);
}

/* A duplicate of a managed descriptor names the same connection, so a
 * heal lands on every number; dup2/dup3 onto a managed descriptor closes
 * it. Called only when there is something to change. */
static void alias(int oldfd, int newfd)
{
	struct fconn *fc = fdtab_get(oldfd);
	if (fdtab_get(newfd))
		fdtab_detach(newfd);
	if (fc)
		fdtab_attach(newfd, fc);
}

int fdtab_after_dup(int oldfd, int newfd)
{
	if (newfd < 0 || newfd == oldfd)
		return newfd;
	/* both numbers now share one file description: a flag set through
	 * one is not seen on the other's record */
	fdtab_set_opts(newfd, fdtab_opts(oldfd) & ~FLARE_FL_BITS);
	flags_unknown(oldfd);
	if ((fdtab_get(oldfd) || fdtab_get(newfd) || register_knows(newfd)) &&
	    !flare_in_foreign_child()) {
		register_forget_fd(newfd);
		alias(oldfd, newfd);
	}
	return newfd;
}

void fdtab_note_opt(int fd, int bits)
{
	if ((unsigned)fd < flare_fdtab_size)
		__atomic_or_fetch(&opts_set[fd], (uint16_t)bits, __ATOMIC_RELAXED);
}

void fdtab_set_opts(int fd, int bits)
{
	if ((unsigned)fd < flare_fdtab_size)
		__atomic_store_n(&opts_set[fd], (uint16_t)bits, __ATOMIC_RELAXED);
}

int fdtab_opts(int fd)
{
	return (unsigned)fd < flare_fdtab_size ? __atomic_load_n(&opts_set[fd], __ATOMIC_RELAXED)
					       : 0;
}

void fdtab_clear_opts(int fd)
{
	if ((unsigned)fd < flare_fdtab_size && __atomic_load_n(&opts_set[fd], __ATOMIC_RELAXED))
		__atomic_store_n(&opts_set[fd], 0, __ATOMIC_RELAXED);
}

void fdtab_flags_set(int fd, int nonblock)
{
	if ((unsigned)fd >= flare_fdtab_size)
		return;
	uint16_t o = __atomic_load_n(&opts_set[fd], __ATOMIC_RELAXED), to;
	do {
		if (!(o & FLARE_FL_KNOWN))
			return;
		to = (uint16_t)((o & ~FLARE_FL_NONBLOCK) | (nonblock ? FLARE_FL_NONBLOCK : 0));
	} while (!__atomic_compare_exchange_n(&opts_set[fd], &o, to, 0, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
}

/* After a fork the other process shares every file description: what
 * either knew of O_NONBLOCK may change where it cannot see */
static void forget_flags(void)
{
	unsigned top = __atomic_exchange_n(&fl_known_top, 0, __ATOMIC_RELAXED);
	for (unsigned fd = 0; fd < top && fd < flare_fdtab_size; fd++)
		flags_unknown((int)fd);
	for (struct fconn *fc = all_list; fc; fc = fc->all_next)
		fd_flags_changed(fc);
}

void fdtab_fresh(int fd, int opts)
{
	if ((unsigned)fd >= flare_fdtab_size)
		return;
	/* a vfork child's new descriptors are in its own table, not ours */
	if ((fdtab_get(fd) || register_knows(fd) || fdtab_opts(fd)) && !flare_in_foreign_child()) {
		if (fdtab_get(fd))
			log_debug("fd %d: a new descriptor on a number the library managed "
				  "(closed where no hook saw it): forgotten",
				  fd);
		fdtab_detach(fd);
		register_forget_fd(fd);
	}
	if (fdtab_opts(fd) != opts)
		fdtab_set_opts(fd, opts);
	if (opts & FLARE_FL_KNOWN) {
		unsigned top = __atomic_load_n(&fl_known_top, __ATOMIC_RELAXED);
		while ((unsigned)fd >= top &&
		       !__atomic_compare_exchange_n(&fl_known_top, &top, (unsigned)fd + 1, 0,
						    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
	}
}

/* From a signal handler that interrupted this thread inside the library
 * (lock.h): the numbers in [first, last] naming fc (any connection when
 * fc is NULL) are forgotten in the table now, lock-free, and their
 * connections pruned when the thread lets go of its locks. */
static void forget_range_owed(unsigned first, unsigned last, const struct fconn *fc)
{
	if (last >= flare_fdtab_size)
		last = flare_fdtab_size - 1;
	for (unsigned fd = first; fd <= last && fd < flare_fdtab_size; fd++) {
		struct fconn *c = fdtab_get((int)fd);
		if (!c || (fc && c != fc))
			continue;
		__atomic_store_n(&flare_fdtab[fd], NULL, __ATOMIC_RELEASE);
		__atomic_store_n(&c->own.fds_stale, 1, __ATOMIC_RELEASE);
	}
	owed_set(OWED_PRUNE);
}

void fdtab_detach_range(unsigned first, unsigned last)
{
	int fds[64];
	int n;
	do {
		/* collect under the lock, detach outside it (detach takes it) */
		n = 0;
		if (flare_lock(&tab_lock) == EDEADLK) {
			forget_range_owed(first, last, NULL);
			return;
		}
		for (struct fconn *fc = all_list; fc && n < 64; fc = fc->all_next) {
			if (flare_lock(&fc->lock) == EDEADLK) { /* fds are [lock] */
				forget_range_owed(first, last, fc);
				continue;
			}
			for (int i = 0; i < fc->own.n_fds && n < 64; i++)
				if ((unsigned)fc->own.fds[i] >= first &&
				    (unsigned)fc->own.fds[i] <= last &&
				    fdtab_get(fc->own.fds[i]) == fc)
					fds[n++] = fc->own.fds[i];
			flare_unlock(&fc->lock);
		}
		flare_unlock(&tab_lock);
		for (int i = 0; i < n; i++)
			fdtab_detach(fds[i]);
	} while (n == 64);
}

void fdtab_prune_all(void)
{
	struct fconn *stale[64];
	int n;
	do {
		n = 0;
		if (flare_lock(&tab_lock) == EDEADLK) {
			owed_set(OWED_PRUNE); /* still inside: the next let-go does it */
			return;
		}
		for (struct fconn *fc = all_list; fc && n < 64; fc = fc->all_next)
			if (__atomic_load_n(&fc->own.fds_stale, __ATOMIC_ACQUIRE))
				stale[n++] = fc;
		flare_unlock(&tab_lock);
		for (int i = 0; i < n; i++) {
			struct fconn *fc = stale[i];
			if (flare_lock(&fc->lock) == EDEADLK) {
				owed_set(OWED_PRUNE);
				return;
			}
			fconn_prune_locked(fc);
			flare_unlock(&fc->lock);
			fconn_release_owed(fc);
		}
	} while (n == 64);
}

int fdtab_collect(int (*want)(struct fconn *, void *), void *arg, struct fconn **out, int max)
{
	int n = 0;
	if (flare_lock(&tab_lock) == EDEADLK)
		return 0; /* a handler inside the table (lock.h): nothing looked at */
	for (struct fconn *fc = all_list; fc && n < max; fc = fc->all_next)
		if (fconn_state(fc) != FC_FREE && want(fc, arg))
			out[n++] = fc;
	flare_unlock(&tab_lock);
	return n;
}

/* After a fork both processes hold every connection's socket, and any
 * epoll instance made before it: an epoll registration is one for both,
 * and a swap in either would take it from the other. */
void fdtab_atfork_parent(void)
{
	flare_lock(&tab_lock);
	for (struct fconn *fc = all_list; fc; fc = fc->all_next)
		__atomic_store_n(&fc->own.forked, 1, __ATOMIC_RELAXED);
	forget_flags();
	flare_unlock(&tab_lock);
}

/* A fork child may have been created while another thread held a lock. */
void fdtab_atfork_child(void)
{
	flare_mutex_init(&tab_lock);
	for (struct fconn *fc = all_list; fc; fc = fc->all_next) {
		__atomic_store_n(&fc->own.forked, 1, __ATOMIC_RELAXED);
		flare_mutex_init(&fc->lock);
		fc->own.claim = 0;
	}
	forget_flags();
	conn_atfork_child();
	tls_atfork_child();
}
