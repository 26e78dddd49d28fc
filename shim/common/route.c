/* The library's view of the shared table. Opened lazily on the first
 * connect; when missing it is retried at most once a second; a retired
 * segment is re-opened at once. Old mappings are never unmapped, because
 * another thread may still be reading them (they only appear when the
 * deployment's layout changes). Every fail-open reason is logged once. */
#include "shim.h"

#include <stdlib.h>
#include <string.h>

#define RETRY_NS 1000000000ull

static struct flare_tbl_reader *cur; /* immutable once published */
static uint64_t next_try_ns;
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static int said[FLARE_TBL_ABSENT + 1];

static const char *shm_name(void)
{
	const char *n = getenv("FLARE_SHM");
	return n && *n ? n : "/flare";
}

static void say_once(int rc, const char *why)
{
	if (rc <= FLARE_TBL_NOTFOUND || rc > FLARE_TBL_ABSENT)
		return;
	if (__atomic_exchange_n(&said[rc], 1, __ATOMIC_RELAXED))
		return;
	log_warn("table %s is %s%s%s: passing connections through unchanged", shm_name(),
		 flare_tbl_rc_name(rc), why ? ": " : "", why ? why : "");
}

static struct flare_tbl_reader *reopen(struct flare_tbl_reader *seen)
{
	uint64_t now = flare_monotonic_ns();
	pthread_mutex_lock(&open_lock);
	struct flare_tbl_reader *r = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	if (r != seen || (!seen && now < next_try_ns)) {
		pthread_mutex_unlock(&open_lock); /* someone else did it, or too soon */
		return r;
	}
	next_try_ns = now + RETRY_NS;
	struct flare_tbl_reader tmp;
	const char *why = NULL;
	int rc = flare_tbl_reader_open(&tmp, shm_name(), &why);
	if (rc == FLARE_TBL_OK) {
		struct flare_tbl_reader *n = malloc(sizeof(*n));
		if (n) {
			*n = tmp;
			__atomic_store_n(&cur, n, __ATOMIC_RELEASE);
			r = n;
			memset(said, 0, sizeof(said));
		} else {
			flare_tbl_reader_close(&tmp);
		}
	} else {
		__atomic_store_n(&cur, NULL, __ATOMIC_RELEASE);
		r = NULL;
		say_once(rc, why);
	}
	pthread_mutex_unlock(&open_lock);
	return r;
}

static struct flare_tbl_reader *reader(void)
{
	struct flare_tbl_reader *r = __atomic_load_n(&cur, __ATOMIC_ACQUIRE);
	if (r)
		return r;
	if (flare_monotonic_ns() < __atomic_load_n(&next_try_ns, __ATOMIC_RELAXED))
		return NULL;
	return reopen(NULL);
}

#define WITH_TABLE(call)                                                       \
	do {                                                                   \
		struct flare_tbl_reader *r = reader();                         \
		if (!r)                                                        \
			return FLARE_TBL_ABSENT;                               \
		int rc = (call);                                               \
		if (rc == FLARE_TBL_RETIRED) {                                 \
			r = reopen(r);                                         \
			rc = r ? (call) : FLARE_TBL_ABSENT;                    \
		}                                                              \
		say_once(rc, NULL);                                            \
		return rc;                                                     \
	} while (0)

int route_lookup(const struct flare_addr *a, struct flare_route *out)
{
	WITH_TABLE(flare_tbl_lookup_service(r, a, out));
}

int route_read(uint32_t svc_index, struct flare_route *out)
{
	WITH_TABLE(flare_tbl_read_route(r, svc_index, out));
}

int route_lookup_replica(const struct flare_addr *a, struct flare_replica_info *out)
{
	WITH_TABLE(flare_tbl_lookup_replica(r, a, out));
}
