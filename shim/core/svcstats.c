/* The library's side of NAME.stats (common/svcstats.h): one slot per
 * process, claimed on the first managed connection; counting is one
 * relaxed atomic add into it. A segment that is missing, the wrong size or
 * not the table owner's (another user made it first) is not used: the
 * process then counts only for itself (FLARE_STATS). */
#include "shim.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct flare_svcstats_slot *flare_svcstats_slot;
static int tried;

void svcstats_attach(void)
{
	/* a vfork child shares the parent's memory: it must not claim a slot
	 * into the parent's pointer (once per process: one getpid) */
	if (__atomic_load_n(&tried, __ATOMIC_ACQUIRE) || flare_in_foreign_child() ||
	    __atomic_exchange_n(&tried, 1, __ATOMIC_ACQ_REL))
		return;
	char name[128];
	snprintf(name, sizeof(name), "%s" FLARE_SVCSTATS_SUFFIX, route_shm_name());
	int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0)
		return;
	struct stat st;
	struct flare_svcstats *s = MAP_FAILED;
	uid_t owner;
	if (fstat(fd, &st) == 0 && route_owner(&owner) == 0 && st.st_uid == owner &&
	    st.st_size == (off_t)sizeof(*s))
		s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	real.close(fd);
	if (s == MAP_FAILED)
		return;
	if (__atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != FLARE_SVCSTATS_MAGIC) {
		munmap(s, sizeof(*s));
		return;
	}
	uint32_t me = (uint32_t)flare_pid;
	for (int i = 0; i < FLARE_SVCSTATS_SLOTS; i++) {
		uint32_t free_slot = 0;
		if (__atomic_compare_exchange_n(&s->slots[i].pid, &free_slot, me, 0,
						__ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
			__atomic_store_n(&flare_svcstats_slot, &s->slots[i], __ATOMIC_RELEASE);
			return;
		}
	}
	munmap(s, sizeof(*s)); /* every slot taken: this process counts for itself */
}

void svcstats_atfork_child(void)
{
	/* the parent's slot is the parent's: the child claims its own */
	__atomic_store_n(&flare_svcstats_slot, NULL, __ATOMIC_RELAXED);
	__atomic_store_n(&tried, 0, __ATOMIC_RELAXED);
}
