/* The one shared segment a client writes: NAME.user.UID, made by the first
 * managed process of user UID (mode 0644, so only that user can write or
 * truncate it) and written only by that user's processes. It holds
 *
 *   page 0: header and the slot owners (pids)
 *   page 1: round-robin tickets, one per service index modulo FLARE_RR_SLOTS,
 *           so turns alternate across the user's processes
 *   page 2..: one slot of counters per process (what the library did, per
 *           service, for the agent's metrics)
 *   then:   one page of waits per slot: the socket cookies of the process's
 *           blocking reads waiting for a reply, which the agent ends through
 *           the kernel when the evidence condemns them (agent/wake.c)
 *
 * A process claims a free slot, or the slot of a process that exited, with
 * a compare-and-swap of its pid, and counts into it with relaxed atomic
 * adds: no thread, no system call on the library's paths. Counts are never
 * reset: a slot taken over keeps adding, so the agent's sum only grows.
 * Each page a process touches is its own: a client maps three pages of it.
 *
 * The agent never maps these segments: it pread(2)s them, so a user who
 * truncates their own segment cannot fault the agent, and it checks that
 * the segment's owner is the UID in its name. Another user's processes
 * never open it: nothing one user does reaches another user's clients. */
#ifndef FLARE_USERSHM_H
#define FLARE_USERSHM_H

#include <stddef.h>
#include <stdint.h>

#define FLARE_USER_MAGIC 0x55524c46u /* "FLRU" little endian */
#define FLARE_USER_VERSION 2u
#define FLARE_USER_INFIX ".user." /* NAME.user.UID */
#define FLARE_USER_PAGE 4096u
#define FLARE_USER_SLOTS 256   /* processes of one user at once */
#define FLARE_USER_SERVICES 64 /* services counted apart; others share index % 64 */
#define FLARE_RR_SLOTS 512

enum flare_svcstat {
	SS_MANAGED,           /* connections managed */
	SS_CONNECT_FAILOVERS, /* connects that moved down the ranking */
	SS_HEALS,             /* failed connections moved to another replica */
	SS_REPLAYS,           /* requests replayed by heals */
	SS_REPLAY_BYTES,      /* their bytes */
	SS_PASSED_ERRORS,     /* failures passed to the program */
	SS_REBINDS,           /* on-demand moves at request boundaries */
	SS_SWITCHES,          /* per-request switches */
	SS_N
};

struct flare_user_hdr {
	uint32_t magic, version; /* magic is stored last by the maker */
	uint32_t uid, n_slots, n_services, n_fields;
	uint32_t pid[FLARE_USER_SLOTS]; /* 0: never used */
};

struct flare_user_slot {
	uint64_t v[FLARE_USER_SERVICES][SS_N];
};

/* A slot's waits: SO_COOKIE of each socket a blocking read waits on (0:
 * a free entry), written by its process, read by the agent */
#define FLARE_USER_WAITS 512
struct flare_user_waits {
	uint64_t cookie[FLARE_USER_WAITS];
};

struct flare_user_seg {
	struct flare_user_hdr hdr;
	uint8_t pad0[FLARE_USER_PAGE - sizeof(struct flare_user_hdr)];
	uint64_t rr[FLARE_RR_SLOTS];
	struct flare_user_slot slots[FLARE_USER_SLOTS];
	struct flare_user_waits waits[FLARE_USER_SLOTS];
};

_Static_assert(sizeof(struct flare_user_hdr) <= FLARE_USER_PAGE, "header fits a page");
_Static_assert(sizeof(uint64_t) * FLARE_RR_SLOTS == FLARE_USER_PAGE, "tickets fill a page");
_Static_assert(sizeof(struct flare_user_slot) == FLARE_USER_PAGE, "a slot is a page");
_Static_assert(sizeof(struct flare_user_waits) == FLARE_USER_PAGE, "a slot's waits are a page");

#define FLARE_USER_SEG_SIZE ((long)sizeof(struct flare_user_seg))
/* A client maps the header and tickets (the head), then its own slot and
 * waits pages apart: a read of one page of a shared mapping maps its
 * neighbours too (the kernel's fault-around), and the other processes'
 * pages are not the client's to carry. */
#define FLARE_USER_HEAD_SIZE ((long)offsetof(struct flare_user_seg, slots))
#define FLARE_USER_SLOT_OFF(i)                                                                     \
	((long)offsetof(struct flare_user_seg, slots) + (long)(i)*FLARE_USER_PAGE)
#define FLARE_USER_WAITS_OFF(i)                                                                    \
	((long)offsetof(struct flare_user_seg, waits) + (long)(i)*FLARE_USER_PAGE)

#endif
