/* Descriptor -> managed connection. The array is one anonymous mapping
 * sized to the descriptor limit and reserved lazily, so untouched pages
 * cost no memory. fconns are recycled through a free list and never freed:
 * a thread still holding a pointer after a close reads a valid object whose
 * generation has moved on, never freed memory. */
#include "shim.h"

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
static uint8_t *opts_set; /* FLARE_BUF_* and FLARE_SET_* bits per descriptor */
static struct fconn *free_list, *all_list;
static pthread_mutex_t tab_lock = PTHREAD_MUTEX_INITIALIZER;

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
	struct fconn *fc = free_list;
	if (fc)
		free_list = fc->next_free;
	pthread_mutex_unlock(&tab_lock);
	if (!fc) {
		fc = calloc(1, sizeof(*fc));
		if (!fc)
			return NULL;
		pthread_mutex_init(&fc->lock, NULL);
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
	if ((unsigned)fd >= flare_fdtab_size)
		return;
	pthread_mutex_lock(&fc->lock);
	if (fc->n_fds < FLARE_MAX_ALIASES)
		fc->fds[fc->n_fds++] = fd;
	pthread_mutex_unlock(&fc->lock);
	__atomic_store_n(&flare_fdtab[fd], fc, __ATOMIC_RELEASE);
}

/* Drops fd from fc; 1 when it was its last descriptor. */
static int unlink_fd(int fd, struct fconn *fc)
{
	__atomic_store_n(&flare_fdtab[fd], NULL, __ATOMIC_RELEASE);
	pthread_mutex_lock(&fc->lock);
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
	int fd = fc->n_fds ? fc->fds[0] : -1;
	pthread_mutex_unlock(&fc->lock);
	return fd;
}

void fconn_release(struct fconn *fc)
{
	rebind_release(fc);
	timeouts_forget(fc);
	fconn_leave_pending(fc);
	exchange_retire(fc); /* no longer waiting for a reply */
	if (__atomic_exchange_n(&fc->state, FC_FREE, __ATOMIC_ACQ_REL) != FC_FREE)
		__atomic_sub_fetch(&flare_n_managed, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&fc->gen, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&tab_lock);
	fc->next_free = free_list;
	free_list = fc;
	pthread_mutex_unlock(&tab_lock);
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

void fdtab_detach_range(unsigned first, unsigned last)
{
	int fds[64];
	int n;
	do {
		/* collect under the lock, detach outside it (detach takes it) */
		n = 0;
		pthread_mutex_lock(&tab_lock);
		for (struct fconn *fc = all_list; fc && n < 64; fc = fc->all_next) {
			pthread_mutex_lock(&fc->lock); /* fds are [lock] */
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

/* A fork child may have been created while another thread held a lock. */
void fdtab_atfork_child(void)
{
	pthread_mutex_init(&tab_lock, NULL);
	for (struct fconn *fc = all_list; fc; fc = fc->all_next) {
		pthread_mutex_init(&fc->lock, NULL);
		fc->claim = 0;
	}
	conn_atfork_child();
}
