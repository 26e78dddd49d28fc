/* The library's side of NAME.user.UID (common/usershm.h): this user's own
 * segment, opened (or made) on the first managed connection, a slot claimed
 * in it for this process's counters and its round-robin page used for
 * turns. Only a segment this user owns, that nobody else can write and of
 * exactly the right size is mapped, so no other user can truncate it under
 * a client (SIGBUS) or write into it. Without one the process counts and
 * takes turns for itself (FLARE_STATS still works). */
#include "core.h"
#include "real.h"
#include "usershm.h"

#include "route/route.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct flare_user_slot *flare_user_slot;
struct flare_user_waits *flare_user_waits;
static struct flare_user_seg *seg; /* only its head is mapped (FLARE_USER_HEAD_SIZE) */
static ino_t seg_ino;              /* the segment seg's head is of */
static int tried;

/* NAME.user.UID, without stdio: snprintf would fault printf's pages of
 * libc into a program that may never print. A name that does not fit is
 * empty: it opens nothing (a cut one could be another segment's) */
static void user_seg_name(char *name, size_t size)
{
	char digits[16];
	int nd = 0;
	unsigned uid = (unsigned)geteuid();
	do
		digits[nd++] = (char)('0' + uid % 10);
	while ((uid /= 10) && nd < (int)sizeof(digits));
	size_t n = 0;
	for (const char *p = route_shm_name(); *p && n + 1 < size; p++)
		name[n++] = *p;
	for (const char *p = FLARE_USER_INFIX; *p && n + 1 < size; p++)
		name[n++] = *p;
	while (nd > 0 && n + 1 < size)
		name[n++] = digits[--nd];
	name[nd ? 0 : n] = '\0';
}

/* 1 usable, 0 not, -1 not yet: another process made it a moment ago and
 * has not sized it */
static int usable(int fd, int made)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
		return 0;
	if (made) /* whatever the umask: readable by the agent, writable by us */
		return fchmod(fd, 0644) == 0 && ftruncate(fd, FLARE_USER_SEG_SIZE) == 0;
	if (st.st_size == 0)
		return -1;
	return (st.st_mode & 022) == 0 && st.st_size == FLARE_USER_SEG_SIZE;
}

/* This user's segment, opened (or made) and checked (usable); -1 when
 * there is none to use (*busy: not yet). *made: this call made it. */
static int open_fd(int *made, int *busy, char *name, size_t size)
{
	user_seg_name(name, size);
	*made = 1;
	*busy = 0;
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0 && errno == EEXIST) {
		*made = 0;
		fd = shm_open(name, O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
	}
	if (fd < 0)
		return -1;
	int ok = usable(fd, *made);
	if (ok <= 0) {
		real.close(fd);
		*busy = ok < 0;
		if (*made)
			shm_unlink(name); /* not left behind half made: the next process tries again */
		return -1;
	}
	return fd;
}

/* The segment's head (header and tickets), filled in when made; NULL with
 * *busy when its maker has not filled it in yet */
static struct flare_user_seg *map_head(int fd, int made, int *busy)
{
	*busy = 0;
	struct flare_user_seg *s =
	    mmap(NULL, FLARE_USER_HEAD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s == MAP_FAILED)
		return NULL;
	if (made) {
		s->hdr.version = FLARE_USER_VERSION;
		s->hdr.uid = (uint32_t)geteuid();
		s->hdr.n_slots = FLARE_USER_SLOTS;
		s->hdr.n_services = FLARE_USER_SERVICES;
		s->hdr.n_fields = SS_N;
		__atomic_store_n(&s->hdr.magic, FLARE_USER_MAGIC, __ATOMIC_RELEASE);
	} else if (__atomic_load_n(&s->hdr.magic, __ATOMIC_ACQUIRE) != FLARE_USER_MAGIC ||
		   s->hdr.version != FLARE_USER_VERSION) {
		/* another layout, or its maker is still filling it in */
		*busy = __atomic_load_n(&s->hdr.magic, __ATOMIC_ACQUIRE) == 0;
		munmap(s, FLARE_USER_HEAD_SIZE);
		return NULL;
	}
	return s;
}

static void *map_page(int fd, long off)
{
	void *p = mmap(NULL, FLARE_USER_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	return p == MAP_FAILED ? NULL : p;
}

/* A free slot first; else one whose process exited (its counts stay and
 * this process adds to them). Only the header page is read; the slot's
 * two pages are mapped once it is claimed (given back if they cannot be). */
static struct flare_user_slot *claim(struct flare_user_seg *s, int fd,
				     struct flare_user_waits **waits)
{
	uint32_t me = (uint32_t)flare_pid;
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < FLARE_USER_SLOTS; i++) {
			uint32_t *owner = &s->hdr.pid[i];
			uint32_t was = __atomic_load_n(owner, __ATOMIC_RELAXED);
			if (pass == 0 ? was != 0
				      : was == 0 || was == me ||
					    !(kill((pid_t)was, 0) < 0 && errno == ESRCH))
				continue;
			if (!__atomic_compare_exchange_n(owner, &was, me, 0, __ATOMIC_ACQ_REL,
							 __ATOMIC_RELAXED))
				continue;
			struct flare_user_slot *slot = map_page(fd, FLARE_USER_SLOT_OFF(i));
			*waits = map_page(fd, FLARE_USER_WAITS_OFF(i));
			if (slot && *waits)
				return slot;
			if (slot)
				munmap(slot, FLARE_USER_PAGE);
			if (*waits)
				munmap(*waits, FLARE_USER_PAGE);
			__atomic_store_n(owner, was, __ATOMIC_RELEASE);
			return NULL;
		}
	return NULL; /* every slot held by a live process: count for itself */
}

void usershm_attach(void)
{
	/* a vfork child shares the parent's memory: it must not claim a slot
	 * into the parent's pointer (once per process: one getpid) */
	if (__atomic_load_n(&tried, __ATOMIC_ACQUIRE) || flare_in_foreign_child() ||
	    __atomic_exchange_n(&tried, 1, __ATOMIC_ACQ_REL))
		return;
	int saved = errno; /* the program's errno survives the attempt */
	char name[160];
	struct flare_user_seg *s = __atomic_load_n(&seg, __ATOMIC_ACQUIRE);
	struct stat st;
	int fd = -1;
	/* processes that start together meet a segment one of them is making:
	 * it is sized and filled in within microseconds (bounded: 20 x 100 us) */
	for (int tries = 0; tries < 20; tries++) {
		int made, busy;
		fd = open_fd(&made, &busy, name, sizeof(name));
		if (fd >= 0 && fstat(fd, &st) < 0) {
			real.close(fd);
			fd = -1;
		}
		/* a fork child keeps its parent's head: the same segment's,
		 * unless the name now names another (then its turns stay the
		 * old one's) */
		if (fd >= 0 && !s && (s = map_head(fd, made, &busy)) != NULL) {
			seg_ino = st.st_ino;
			__atomic_store_n(&seg, s, __ATOMIC_RELEASE);
		} else if (fd >= 0 && !s && made) {
			shm_unlink(name); /* not left behind half made */
		}
		if ((fd >= 0 && s) || !busy)
			break;
		if (fd >= 0)
			real.close(fd);
		fd = -1;
		struct timespec pause = {0, 100000};
		nanosleep(&pause, NULL);
	}
	if (fd < 0) {
		errno = saved;
		return;
	}
	struct flare_user_waits *waits = NULL;
	struct flare_user_slot *mine = s && st.st_ino == seg_ino ? claim(s, fd, &waits) : NULL;
	real.close(fd); /* the program's descriptors are its own: none kept */
	if (mine) {
		/* a slot taken over keeps its counts, not its exited owner's waits */
		for (int i = 0; i < FLARE_USER_WAITS; i++)
			if (__atomic_load_n(&waits->cookie[i], __ATOMIC_RELAXED))
				__atomic_store_n(&waits->cookie[i], 0, __ATOMIC_RELAXED);
		__atomic_store_n(&flare_user_waits, waits, __ATOMIC_RELEASE);
		__atomic_store_n(&flare_user_slot, mine, __ATOMIC_RELEASE);
	}
	errno = saved;
}

uint64_t usershm_rr_ticket(uint32_t svc_index)
{
	static uint64_t own;
	usershm_attach();
	struct flare_user_seg *s = __atomic_load_n(&seg, __ATOMIC_ACQUIRE);
	if (s)
		return __atomic_fetch_add(&s->rr[svc_index % FLARE_RR_SLOTS], 1, __ATOMIC_RELAXED);
	uint64_t k = __atomic_fetch_add(&own, 1, __ATOMIC_RELAXED);
	return k + (uint64_t)flare_pid; /* processes start their turns apart */
}

void usershm_atfork_child(void)
{
	/* the parent's slot is the parent's: the child claims its own in the
	 * head it inherited, and maps that slot's pages */
	__atomic_store_n(&flare_user_slot, NULL, __ATOMIC_RELAXED);
	__atomic_store_n(&flare_user_waits, NULL, __ATOMIC_RELAXED);
	__atomic_store_n(&tried, 0, __ATOMIC_RELAXED);
}
