/* The library's view of the shared table. Opened lazily on the first
 * connect; when missing it is retried at most once a second; a retired
 * segment is re-opened at once. Old mappings are never unmapped, because
 * another thread may still be reading them (they only appear when the
 * deployment's layout changes). Every fail-open reason is logged once.
 *
 * A stale table (no news from a manager for agent.stale_ms) is used all
 * the same: its last ranking is better than none, and connection errors
 * move down it (fail-static). Only a missing or corrupt table means
 * passing through. */
#include "addr.h"
#include "clock.h"
#include "lock.h"
#include "log.h"
#include "real.h"
#include "table.h"

#include "conn/fdtab.h"
#include "route/route.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define RETRY_NS 1000000000ull

struct table {
	struct flare_tbl_reader r; /* first: the API takes &t->r; r.owner made it */
};
static struct table *cur; /* immutable once published */
static uint64_t next_check_ns;
static int opening; /* a thread is opening the table right now */
static uint64_t next_try_ns;
static pthread_mutex_t open_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

void route_atfork_child(void)
{
	flare_mutex_init(&open_lock);
	opening = 0;
}
static int said[FLARE_TBL_UNTRUSTED + 1];

const char *route_shm_name(void)
{
	const char *n = getenv("FLARE_SHM");
	return n && *n ? n : "/flare";
}

static void say_once(int rc, const char *why)
{
	if (rc <= FLARE_TBL_NOTFOUND || rc > FLARE_TBL_UNTRUSTED)
		return;
	if (__atomic_exchange_n(&said[rc], 1, __ATOMIC_RELAXED))
		return;
	if (rc == FLARE_TBL_STALE)
		log_warn("table %s is stale (no news from a manager): failing over on its last "
			 "ranking",
			 route_shm_name());
	else
		log_warn("table %s is %s%s%s: passing connections through unchanged",
			 route_shm_name(), flare_tbl_rc_name(rc), why ? ": " : "", why ? why : "");
}

static ino_t name_ino(void)
{
	struct stat st;
	int fd = shm_open(route_shm_name(), O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	ino_t ino = fstat(fd, &st) == 0 ? st.st_ino : 0;
	real.close(fd);
	return ino;
}

/* FLARE_AGENT_UID (flare-run sets it from agent.user), or -1 */
static long agent_uid(void)
{
	const char *v = getenv("FLARE_AGENT_UID");
	char *end;
	if (!v || !*v)
		return -1;
	long u = strtol(v, &end, 10);
	return *end || u < 0 ? -1 : u;
}

/* Whose table decides where this process connects: root's, this user's
 * own (nobody else can make a segment owned by it), or the configured
 * agent user's. Any other user could have made the name first. */
static int table_trusted(uint32_t uid)
{
	return uid == 0 || uid == (uint32_t)geteuid() || (long)uid == agent_uid();
}

static struct table *reopen(struct table *seen, int eager)
{
	uint64_t now = flare_monotonic_ns();
	if (flare_lock(&open_lock) == EDEADLK) /* a handler inside a reopen (lock.h) */
		return seen;
	struct table *r = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	if (r != seen || (!seen && !eager && now < next_try_ns)) {
		flare_unlock(&open_lock); /* someone else did it, or too soon */
		return r;
	}
	__atomic_store_n(&opening, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&next_try_ns, now + RETRY_NS, __ATOMIC_RELEASE);
	struct flare_tbl_reader tmp;
	const char *why = NULL;
	int rc = flare_tbl_reader_open_from(&tmp, route_shm_name(), table_trusted, &why);
	if (rc == FLARE_TBL_OK) {
		struct table *n = malloc(sizeof(*n));
		if (n) {
			n->r = tmp;
			__atomic_store_n(&cur, n, __ATOMIC_RELEASE);
			r = n;
			memset(said, 0, sizeof(said));
		} else {
			flare_tbl_reader_close(&tmp);
		}
	} else {
		__atomic_store_n(&cur, NULL, __ATOMIC_RELEASE);
		r = NULL;
		char untrusted[128];
		if (rc == FLARE_TBL_UNTRUSTED) {
			snprintf(untrusted, sizeof(untrusted),
				 "it belongs to uid %u, not to root, this user or FLARE_AGENT_UID",
				 (unsigned)tmp.owner);
			why = untrusted;
		}
		say_once(rc, why);
	}
	__atomic_store_n(&opening, 0, __ATOMIC_RELEASE);
	flare_unlock(&open_lock);
	return r;
}

/* A table that is stale, busy or corrupt may have been replaced under its
 * name (a restarted agent makes a new segment; the old one is never marked
 * retired when its writer died): look, at most once a second. */
static struct table *replaced(struct table *t)
{
	uint64_t now = flare_monotonic_ns();
	if (now < __atomic_load_n(&next_check_ns, __ATOMIC_RELAXED))
		return NULL;
	__atomic_store_n(&next_check_ns, now + RETRY_NS, __ATOMIC_RELAXED);
	ino_t ino = name_ino();
	return ino && (uint64_t)ino != t->r.ino ? reopen(t, 0) : NULL;
}

/* eager: a server's registration (its callers retry at most every 100 ms)
 * looks for the table every time, so that a server started before its
 * agent published registers as soon as the table is there */
static struct table *reader_of(int eager)
{
	struct table *r = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	if (r)
		return r;
	/* too soon after a failed open: pass through without the lock; but
	 * while another thread is opening it, wait for its result (the first
	 * connects of a multi-threaded program arrive together) */
	if (!eager && flare_monotonic_ns() < __atomic_load_n(&next_try_ns, __ATOMIC_ACQUIRE) &&
	    !__atomic_load_n(&opening, __ATOMIC_ACQUIRE))
		return __atomic_load_n(&cur, __ATOMIC_ACQUIRE); /* an open that just ended */
	return reopen(NULL, eager);
}

#define WITH_TABLE(eager, call)                                                                    \
	do {                                                                                       \
		struct table *t = reader_of(eager);                                                \
		if (!t)                                                                            \
			return FLARE_TBL_ABSENT;                                                   \
		int rc = (call);                                                                   \
		if (rc == FLARE_TBL_RETIRED) {                                                     \
			t = reopen(t, 0);                                                          \
			rc = t ? (call) : FLARE_TBL_ABSENT;                                        \
		} else if (rc == FLARE_TBL_STALE || rc == FLARE_TBL_BUSY ||                        \
			   rc == FLARE_TBL_CORRUPT) {                                              \
			struct table *n = replaced(t);                                             \
			if (n && n != t) {                                                         \
				t = n;                                                             \
				rc = (call);                                                       \
			}                                                                          \
		}                                                                                  \
		say_once(rc, NULL);                                                                \
		/* fail-static: a stale table's last ranking still serves */                       \
		return rc == FLARE_TBL_STALE ? FLARE_TBL_OK : rc;                                  \
	} while (0)

int route_lookup(const struct flare_addr *a, struct flare_route *out)
{
	WITH_TABLE(0, flare_tbl_lookup_service(&t->r, a, out));
}

int route_read(uint32_t svc_index, struct flare_route *out)
{
	WITH_TABLE(0, flare_tbl_read_route(&t->r, svc_index, out));
}

int route_lookup_replica(const struct flare_addr *a, struct flare_replica_info *out)
{
	WITH_TABLE(1, flare_tbl_lookup_replica(&t->r, a, out));
}

int route_peer_trusted(int fd, uid_t *peer_uid)
{
	/* a local socket's peer speaks for the deployment when it runs as the
	 * user who made the table (its agent) or as root: another user holding
	 * the socket's name first cannot steer clients or hear servers */
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct table *t = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	if (real.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		*peer_uid = (uid_t)-1;
		return 0;
	}
	*peer_uid = cred.uid;
	return cred.uid == 0 || (t && cred.uid == (uid_t)t->r.owner);
}

uint64_t route_table_gen(void)
{
	struct table *t = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	return t ? flare_tbl_gen(&t->r) : 0;
}

int route_wakes(void)
{
	struct table *t = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	return t && flare_tbl_wakes(&t->r, flare_coarse_ns());
}

uint64_t route_moves_gen(void)
{
	struct table *t = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	return t ? flare_tbl_moves_gen(&t->r) : 0;
}

int route_find_move(const struct flare_addr *client, uint32_t from, uint32_t *to)
{
	struct table *t = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	return t ? flare_tbl_find_move(&t->r, client, from, to) : FLARE_TBL_ABSENT;
}
