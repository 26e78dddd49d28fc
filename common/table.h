/* The shared-memory ranking table: written by one flare-agent, read by every
 * client's libflare.so. Layout (all offsets from the start, 8-byte aligned,
 * no pointers):
 *
 *   header | hosts[n_hosts] | services[n_services] | replicas[n_replicas]
 *          | svc_slots[n_slots] | rep_slots[n_slots] | moves[moves_cap]
 *
 * The slot arrays are open-addressing hash indexes (linear probing) keyed by
 * address: slot = index + 1, 0 = empty. Services and replicas have one each,
 * so a service whose address is also its primary replica's is found by both.
 *
 * Concurrency: a seqlock. The writer makes `seq` odd, stores, makes it even;
 * a reader copies what it needs between two reads of `seq` and retries when
 * they differ or are odd. Copies go word by word through relaxed atomics, so
 * the racing accesses are defined behaviour (and ThreadSanitizer agrees).
 *
 * A layout change (different counts) is never done in place: the writer
 * builds a new segment under a temporary name, renames it over the old one
 * and marks the old one RETIRED, and readers re-open by name. */
#ifndef FLARE_TABLE_H
#define FLARE_TABLE_H

#include "addr.h"
#include "flare.h"

#include <stddef.h>
#include <stdint.h>

#define FLARE_TBL_MAGIC 0x54524c46u /* "FLRT" little endian */
#define FLARE_TBL_VERSION 3u
#define FLARE_TBL_FLAG_RETIRED 1u
/* The agent ends condemned connections through the kernel (SOCK_DESTROY,
 * agent/wake.c): a blocking read registered with it needs no slicing */
#define FLARE_TBL_FLAG_WAKE 2u
/* ... as long as the agent has been heard from this recently */
#define FLARE_WAKE_FRESH_MS 1000
#define FLARE_TBL_NEW_INFIX ".new." /* NAME.new.PID.RANDOM while a new layout is made */

struct flare_tbl_hdr {
	uint32_t magic, version;
	uint64_t size; /* bytes of the segment */
	uint64_t seq;
	uint64_t updated_ns; /* CLOCK_MONOTONIC of the last news from a manager */
	uint64_t gen;        /* the manager's ranking generation */
	uint32_t stale_ms;   /* readers ignore a table older than this */
	uint32_t flags;
	uint32_t n_hosts, n_services, n_replicas, n_slots;
	uint32_t off_hosts, off_services, off_replicas, off_svc_slots, off_rep_slots;
	uint32_t writer_pid;
	uint32_t n_moves, off_moves; /* on-demand rebinding: moves[n_moves] */
	uint64_t moves_gen;          /* changes whenever the moves do */
	uint32_t moves_cap, pad;     /* room for this many moves (FLARE_MAX_MOVES) */
	uint64_t reserved[1];
};

struct flare_tbl_host {
	char name[FLARE_NAME_MAX];
	char monitor_socket[FLARE_SOCK_PATH_MAX];
	uint32_t util_ppm;
	uint8_t alive;
	uint8_t pad[7];
} __attribute__((aligned(8)));

struct flare_tbl_service {
	char name[FLARE_NAME_MAX];
	struct flare_addr addr;
	uint8_t strategy, failover, replay, n_order;
	uint32_t connect_timeout_ms, user_timeout_ms, replay_buffer;
	uint16_t keepalive_idle_s, keepalive_interval_s, keepalive_count, pad;
	uint32_t first_replica, n_replicas;
	int32_t primary;                 /* local index, -1 for a virtual address */
	uint32_t request_timeout_ms;     /* 0: none */
	uint8_t protocol, replay_unsafe; /* enum flare_protocol; POST may be replayed */
	uint8_t balance, binding;        /* enum flare_balance, enum flare_binding */
	uint8_t pad2[4];
	uint32_t rebind_interval_ms;       /* least time between rebinds of a connection */
	uint32_t band_ppm;                 /* least-loaded: rates this close to the least tie */
	uint8_t order[FLARE_MAX_REPLICAS]; /* for new connections, best first */
} __attribute__((aligned(8)));

struct flare_tbl_replica {
	char name[FLARE_NAME_MAX];
	struct flare_addr addr;
	uint32_t service, host;
	uint32_t load_ppm, weight_ppm; /* CPU share; headroom weight (spare x ramp) */
	uint32_t rate_milli;           /* smoothed requests/s it serves, x1000 */
	uint32_t ramp_ppm;             /* slow start: its share of new bindings so far */
	uint8_t alive, flags, n_failover;
	uint8_t reason;                       /* enum flare_death while dead */
	uint8_t failover[FLARE_MAX_REPLICAS]; /* local indexes to try when this one fails */
} __attribute__((aligned(8)));

/* The connection from `client` to replica `from` is to move to replica `to`
 * (global replica indexes of one service) at its next request boundary. */
struct flare_tbl_move {
	struct flare_addr client;
	uint32_t from, to;
} __attribute__((aligned(8)));

_Static_assert(sizeof(struct flare_tbl_move) % 8 == 0, "move must be 8-byte sized");
_Static_assert(sizeof(struct flare_tbl_hdr) % 8 == 0, "header must be 8-byte sized");
_Static_assert(sizeof(struct flare_tbl_host) % 8 == 0, "host must be 8-byte sized");
_Static_assert(sizeof(struct flare_tbl_service) % 8 == 0, "service must be 8-byte sized");
_Static_assert(sizeof(struct flare_tbl_replica) % 8 == 0, "replica must be 8-byte sized");

enum flare_tbl_rc {
	FLARE_TBL_OK = 0,
	FLARE_TBL_NOTFOUND = 1,  /* destination not managed */
	FLARE_TBL_STALE = 2,     /* no news from a manager for stale_ms; lookups
				  * still fill their result (the last ranking) */
	FLARE_TBL_CORRUPT = 3,   /* failed validation */
	FLARE_TBL_RETIRED = 4,   /* re-open by name */
	FLARE_TBL_BUSY = 5,      /* the writer held the lock through every retry */
	FLARE_TBL_ABSENT = 6,    /* not open */
	FLARE_TBL_UNTRUSTED = 7, /* made by a user the reader does not trust */
};

const char *flare_tbl_rc_name(int rc);

/* ---- reader (libflare.so) ---- */

struct flare_tbl_reader {
	const uint8_t *base;
	size_t size;
	uint32_t owner; /* the segment's owner and inode, from the descriptor mapped */
	uint64_t ino;
};

/* Everything a client needs to connect to a service and fail over. */
struct flare_route {
	uint32_t svc_index;
	uint64_t gen;
	struct flare_tbl_service svc;
	struct flare_tbl_replica reps[FLARE_MAX_REPLICAS]; /* svc.n_replicas, local order */
};

struct flare_replica_info {
	uint32_t rep_index;
	struct flare_tbl_replica rep;
	struct flare_tbl_host host;
};

/* Maps NAME read-only and closes the descriptor. Returns an enum flare_tbl_rc
 * (ABSENT when there is no such segment, CORRUPT with a reason in why).
 * The owner and inode are those of the descriptor mapped. */
int flare_tbl_reader_open(struct flare_tbl_reader *r, const char *name, const char **why);
/* The same, refusing (UNTRUSTED, nothing mapped) a segment whose owner
 * trusted() does not accept. */
int flare_tbl_reader_open_from(struct flare_tbl_reader *r, const char *name,
			       int (*trusted)(uint32_t uid), const char **why);
void flare_tbl_reader_close(struct flare_tbl_reader *r);
/* Checks header, offsets and sizes of a mapping (also used by the fuzzer). */
int flare_tbl_check_layout(const uint8_t *base, size_t size, const char **why);
/* OK, STALE, RETIRED, CORRUPT or BUSY for the table as a whole. */
int flare_tbl_health(const struct flare_tbl_reader *r, uint64_t now_ns);
/* Does the table's agent wake blocked readers (FLARE_TBL_FLAG_WAKE), and
 * did it write within FLARE_WAKE_FRESH_MS of now_ns? */
int flare_tbl_wakes(const struct flare_tbl_reader *r, uint64_t now_ns);
/* Looks a destination up; O(1) expected, no allocation, no syscall but
 * clock_gettime. */
int flare_tbl_lookup_service(const struct flare_tbl_reader *r, const struct flare_addr *a,
			     struct flare_route *out);
int flare_tbl_lookup_replica(const struct flare_tbl_reader *r, const struct flare_addr *a,
			     struct flare_replica_info *out);
/* Re-reads one service's route by index (after a lookup), e.g. to learn
 * that the connected replica died. */
int flare_tbl_read_route(const struct flare_tbl_reader *r, uint32_t svc_index,
			 struct flare_route *out);
uint64_t flare_tbl_gen(const struct flare_tbl_reader *r);
/* Changes whenever the manager's list of moves does (one load). */
uint64_t flare_tbl_moves_gen(const struct flare_tbl_reader *r);
/* The replica (global index) the connection from `client` to replica `from`
 * is to move to: OK with *to set, or NOTFOUND. */
int flare_tbl_find_move(const struct flare_tbl_reader *r, const struct flare_addr *client,
			uint32_t from, uint32_t *to);

#endif
