/* Descriptor -> managed connection. The array is one anonymous mapping
 * sized to the descriptor limit and reserved lazily, so untouched pages
 * cost no memory. fconns are recycled through a free list and never freed:
 * a thread still holding a pointer after a close reads a valid object whose
 * generation has moved on, never freed memory. A connection whose claim
 * is held (a heal, a connect move) is recycled only when its holder lets
 * go: a heal never acts on an object that became another connection.
 *
 * close() must not deadlock when a signal handler calls it while its own
 * thread was inside the library holding the connection's mutex: the
 * mutexes are error-checking, and there the close only forgets the number
 * in the table; the connection drops it from fds[] at its next locked step
 * (fconn_prune_locked), and every user of fds[] checks the table first. */
#include "log.h"
#include "real.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "dial/dial.h"
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
static uint8_t *opts_set;                  /* FLARE_BUF_* and FLARE_SET_* bits per descriptor */
static struct fconn *free_list, *all_list; /* free_list: pushed lock-free, popped under tab_lock */
static pthread_mutex_t tab_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

void flare_mutex_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
}

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
	void *b = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
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
	pthread_mutex_lock(&tab_lock);
	/* the only popper (tab_lock): a push racing it cannot make it see a
	 * node twice (no ABA) */
	struct fconn *fc = __atomic_load_n(&free_list, __ATOMIC_ACQUIRE);
	while (fc && !__atomic_compare_exchange_n(&free_list, &fc, fc->next_free, 0,
						  __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
	pthread_mutex_unlock(&tab_lock);
	if (fc && fc->on_pending)
		fconn_leave_pending(fc); /* a release that could not take the list's lock */
	if (!fc) {
		fc = calloc(1, sizeof(*fc));
		if (!fc)
			return NULL;
		flare_mutex_init(&fc->lock);
		pthread_mutex_lock(&tab_lock);
		fc->all_next = all_list;
		all_list = fc;
		pthread_mutex_unlock(&tab_lock);
	}
	__atomic_add_fetch(&fc->gen, 1, __ATOMIC_RELEASE);
	memset(&fc->state, 0, sizeof(*fc) - offsetof(struct fconn, state));
	fc->pending_fd = -1;
	exchange_reset(fc);
	fconn_enter(fc, FC_READY);
	__atomic_add_fetch(&flare_n_managed, 1, __ATOMIC_RELEASE);
	return fc;
}

void fdtab_attach(int fd, struct fconn *fc)
{
	if ((unsigned)fd >= flare_fdtab_size || pthread_mutex_lock(&fc->lock) == EDEADLK)
		return; /* (a dup from a signal handler inside the library: left unmanaged) */
	if (fc->n_fds < FLARE_MAX_ALIASES)
		fc->fds[fc->n_fds++] = fd;
	pthread_mutex_unlock(&fc->lock);
	__atomic_store_n(&flare_fdtab[fd], fc, __ATOMIC_RELEASE);
}

void fconn_prune_locked(struct fconn *fc)
{
	if (!__atomic_load_n(&fc->fds_stale, __ATOMIC_ACQUIRE))
		return;
	__atomic_store_n(&fc->fds_stale, 0, __ATOMIC_RELAXED);
	for (int i = 0; i < fc->n_fds;)
		if (fdtab_get(fc->fds[i]) != fc)
			fc->fds[i] = fc->fds[--fc->n_fds];
		else
			i++;
	if (!fc->n_fds)
		__atomic_store_n(&fc->release_owed, 1, __ATOMIC_SEQ_CST);
}

/* Drops fd from fc; 1 when it was its last descriptor. */
static int unlink_fd(int fd, struct fconn *fc)
{
	__atomic_store_n(&flare_fdtab[fd], NULL, __ATOMIC_RELEASE);
	if (pthread_mutex_lock(&fc->lock) == EDEADLK) {
		/* this thread holds it: a signal handler interrupted the library */
		__atomic_store_n(&fc->fds_stale, 1, __ATOMIC_RELEASE);
		return 0;
	}
	fconn_prune_locked(fc);
	for (int i = 0; i < fc->n_fds; i++)
		if (fc->fds[i] == fd) {
			fc->fds[i] = fc->fds[--fc->n_fds];
			break;
		}
	int last = fc->n_fds == 0;
	pthread_mutex_unlock(&fc->lock);
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
	pthread_mutex_lock(&fc->lock);
	fconn_prune_locked(fc);
	int fd = fc->n_fds ? fc->fds[0] : -1;
	pthread_mutex_unlock(&fc->lock);
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
	__atomic_store_n(&fc->tls_sess, NULL, __ATOMIC_RELEASE);
	__atomic_store_n(&fc->tls, FT_OFF, __ATOMIC_RELEASE);
	if (__atomic_exchange_n(&fc->state, FC_FREE, __ATOMIC_ACQ_REL) == FC_FREE)
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
	if (!__atomic_load_n(&fc->release_owed, __ATOMIC_SEQ_CST))
		return;
	/* the claim's holder recycles it when it lets go (fconn_unclaim) */
	int expected = 0;
	if (!__atomic_compare_exchange_n(&fc->claim, &expected, 1, 0, __ATOMIC_SEQ_CST,
					 __ATOMIC_SEQ_CST))
		return;
	if (__atomic_exchange_n(&fc->release_owed, 0, __ATOMIC_SEQ_CST))
		recycle(fc); /* the claim stays taken until fconn_new clears it */
	else
		__atomic_store_n(&fc->claim, 0, __ATOMIC_SEQ_CST);
}

void fconn_release(struct fconn *fc)
{
	__atomic_store_n(&fc->release_owed, 1, __ATOMIC_SEQ_CST);
	fconn_release_owed(fc);
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
	fdtab_set_opts(newfd, fdtab_opts(oldfd));
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
		__atomic_or_fetch(&opts_set[fd], (uint8_t)bits, __ATOMIC_RELAXED);
}

void fdtab_set_opts(int fd, int bits)
{
	if ((unsigned)fd < flare_fdtab_size)
		__atomic_store_n(&opts_set[fd], (uint8_t)bits, __ATOMIC_RELAXED);
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
}

void fdtab_detach_range(unsigned first, unsigned last)
{
	int fds[64];
	int n;
	do {
		/* collect under the lock, detach outside it (detach takes it) */
		n = 0;
		/* from a signal handler that interrupted this thread inside the
		 * library (EDEADLK): what it holds is skipped, its numbers are
		 * found stale later (EBADF, or a new socket on the number) */
		if (pthread_mutex_lock(&tab_lock) == EDEADLK)
			return;
		for (struct fconn *fc = all_list; fc && n < 64; fc = fc->all_next) {
			if (pthread_mutex_lock(&fc->lock) == EDEADLK) /* fds are [lock] */
				continue;
			for (int i = 0; i < fc->n_fds && n < 64; i++)
				if ((unsigned)fc->fds[i] >= first && (unsigned)fc->fds[i] <= last &&
				    fdtab_get(fc->fds[i]) == fc)
					fds[n++] = fc->fds[i];
			pthread_mutex_unlock(&fc->lock);
		}
		pthread_mutex_unlock(&tab_lock);
		for (int i = 0; i < n; i++)
			fdtab_detach(fds[i]);
	} while (n == 64);
}

int fdtab_collect(int (*want)(struct fconn *, void *), void *arg, struct fconn **out, int max)
{
	int n = 0;
	pthread_mutex_lock(&tab_lock);
	for (struct fconn *fc = all_list; fc && n < max; fc = fc->all_next)
		if (fconn_state(fc) != FC_FREE && want(fc, arg))
			out[n++] = fc;
	pthread_mutex_unlock(&tab_lock);
	return n;
}

/* After a fork both processes hold every connection's socket, and any
 * epoll instance made before it: an epoll registration is one for both,
 * and a swap in either would take it from the other. */
void fdtab_atfork_parent(void)
{
	pthread_mutex_lock(&tab_lock);
	for (struct fconn *fc = all_list; fc; fc = fc->all_next)
		__atomic_store_n(&fc->forked, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&tab_lock);
}

/* A fork child may have been created while another thread held a lock. */
void fdtab_atfork_child(void)
{
	flare_mutex_init(&tab_lock);
	for (struct fconn *fc = all_list; fc; fc = fc->all_next) {
		__atomic_store_n(&fc->forked, 1, __ATOMIC_RELAXED);
		flare_mutex_init(&fc->lock);
		fc->claim = 0;
	}
	conn_atfork_child();
	tls_atfork_child();
}
