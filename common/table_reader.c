#include "table.h"

#include "clock.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A writer holds the lock for microseconds, but can be preempted inside it:
 * spin a little, then sleep in 50 us steps, about 20 ms in all, before
 * calling the table busy (and the caller passing through). */
#define SPIN_TRIES 1024
#define READ_TRIES (SPIN_TRIES + 400)

/* Acquire loads for the protected data: the re-read of `seq` that closes a
 * read section cannot move before them, which is what a seqlock reader
 * needs, without a fence (plain moves on x86; ThreadSanitizer models them,
 * where it does not model fences). */
static inline uint32_t ld32(const void *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

static inline uint64_t ld64(const void *p)
{
	return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}

/* Word-wise atomic copy out of the shared segment (n and both pointers are
 * multiples of 8 by construction of the layout). */
static void copy_in(void *dst, const void *src, size_t n)
{
	uint64_t *d = dst;
	const uint64_t *s = src;
	for (size_t i = 0; i < n / 8; i++)
		d[i] = ld64(&s[i]);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void wait_writer(int try_)
{
	if (try_ < SPIN_TRIES) {
		cpu_relax();
		return;
	}
	struct timespec ts = {0, 50000};
	nanosleep(&ts, NULL);
}

const char *flare_tbl_rc_name(int rc)
{
	static const char *const names[] = {"ok",      "not found", "stale",  "corrupt",
					    "retired", "busy",      "absent", "untrusted"};
	return rc >= 0 && rc <= FLARE_TBL_UNTRUSTED ? names[rc] : "?";
}

static int region_ok(uint64_t off, uint64_t count, uint64_t elem, uint64_t size)
{
	return off % 8 == 0 && off <= size && count <= (size - off) / elem;
}

/* The layout fields never change within one segment; a writer that wants
 * other counts makes a new segment. So checking them here once per read is
 * enough to keep every index below in bounds. */
struct layout {
	uint32_t n_hosts, n_services, n_replicas, n_slots;
	uint32_t off_hosts, off_services, off_replicas, off_svc_slots, off_rep_slots;
	uint32_t off_moves, moves_cap;
};

static int read_layout(const uint8_t *base, size_t size, struct layout *l, const char **why)
{
	const struct flare_tbl_hdr *h = (const void *)base;
	if (size < sizeof(*h)) {
		*why = "segment smaller than its header";
		return -1;
	}
	if (ld32(&h->magic) != FLARE_TBL_MAGIC) {
		*why = "bad magic";
		return -1;
	}
	if (ld32(&h->version) != FLARE_TBL_VERSION) {
		*why = "unsupported layout version";
		return -1;
	}
	if (ld64(&h->size) != size) {
		*why = "header size differs from the segment size";
		return -1;
	}
	l->n_hosts = ld32(&h->n_hosts);
	l->n_services = ld32(&h->n_services);
	l->n_replicas = ld32(&h->n_replicas);
	l->n_slots = ld32(&h->n_slots);
	l->off_hosts = ld32(&h->off_hosts);
	l->off_services = ld32(&h->off_services);
	l->off_replicas = ld32(&h->off_replicas);
	l->off_svc_slots = ld32(&h->off_svc_slots);
	l->off_rep_slots = ld32(&h->off_rep_slots);
	l->off_moves = ld32(&h->off_moves);
	l->moves_cap = ld32(&h->moves_cap);
	if (l->n_slots == 0 || (l->n_slots & (l->n_slots - 1)) != 0 || l->n_slots < l->n_services ||
	    l->n_slots < l->n_replicas) {
		*why = "hash index size is not a power of two above the counts";
		return -1;
	}
	if (!region_ok(l->off_hosts, l->n_hosts, sizeof(struct flare_tbl_host), size) ||
	    !region_ok(l->off_services, l->n_services, sizeof(struct flare_tbl_service), size) ||
	    !region_ok(l->off_replicas, l->n_replicas, sizeof(struct flare_tbl_replica), size) ||
	    !region_ok(l->off_svc_slots, l->n_slots, sizeof(uint32_t), size) ||
	    !region_ok(l->off_rep_slots, l->n_slots, sizeof(uint32_t), size) ||
	    l->moves_cap > FLARE_MAX_MOVES ||
	    !region_ok(l->off_moves, l->moves_cap, sizeof(struct flare_tbl_move), size)) {
		*why = "a section lies outside the segment";
		return -1;
	}
	return 0;
}

int flare_tbl_check_layout(const uint8_t *base, size_t size, const char **why)
{
	struct layout l;
	const char *dummy;
	return read_layout(base, size, &l, why ? why : &dummy) == 0 ? FLARE_TBL_OK
								    : FLARE_TBL_CORRUPT;
}

int flare_tbl_reader_open_from(struct flare_tbl_reader *r, const char *name,
			       int (*trusted)(uint32_t uid), const char **why)
{
	const char *dummy;
	struct stat st;
	if (!why)
		why = &dummy;
	r->base = NULL;
	r->size = 0;
	int fd = shm_open(name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0) {
		*why = "no such shared-memory segment";
		return FLARE_TBL_ABSENT;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size < (off_t)sizeof(struct flare_tbl_hdr)) {
		close(fd);
		*why = "segment smaller than its header";
		return FLARE_TBL_CORRUPT;
	}
	/* before it is mapped: a segment its owner may truncate would fault */
	if (trusted && !trusted((uint32_t)st.st_uid)) {
		close(fd);
		r->owner = (uint32_t)st.st_uid;
		*why = "its owner is not trusted";
		return FLARE_TBL_UNTRUSTED;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		*why = "mmap failed";
		return FLARE_TBL_ABSENT;
	}
	if (flare_tbl_check_layout(p, (size_t)st.st_size, why) != FLARE_TBL_OK) {
		munmap(p, (size_t)st.st_size);
		return FLARE_TBL_CORRUPT;
	}
	r->base = p;
	r->size = (size_t)st.st_size;
	r->owner = (uint32_t)st.st_uid;
	r->ino = (uint64_t)st.st_ino;
	return FLARE_TBL_OK;
}

int flare_tbl_reader_open(struct flare_tbl_reader *r, const char *name, const char **why)
{
	return flare_tbl_reader_open_from(r, name, NULL, why);
}

void flare_tbl_reader_close(struct flare_tbl_reader *r)
{
	if (r->base)
		munmap((void *)r->base, r->size);
	r->base = NULL;
	r->size = 0;
}

uint64_t flare_tbl_gen(const struct flare_tbl_reader *r)
{
	if (!r->base)
		return 0;
	return ld64(&((const struct flare_tbl_hdr *)r->base)->gen);
}

uint64_t flare_tbl_moves_gen(const struct flare_tbl_reader *r)
{
	if (!r->base)
		return 0;
	return ld64(&((const struct flare_tbl_hdr *)r->base)->moves_gen);
}

int flare_tbl_wakes(const struct flare_tbl_reader *r, uint64_t now_ns)
{
	if (!r->base)
		return 0;
	const struct flare_tbl_hdr *h = (const void *)r->base;
	uint32_t fl = ld32(&h->flags);
	uint64_t updated = ld64(&h->updated_ns);
	/* now_ns may be the coarse clock, up to a tick behind the agent's
	 * stamp; a stamp further ahead (or garbage) wraps to old */
	uint64_t age = now_ns + FLARE_COARSE_SLACK_NS - updated;
	return (fl & FLARE_TBL_FLAG_WAKE) && !(fl & FLARE_TBL_FLAG_RETIRED) &&
	       age < (uint64_t)FLARE_WAKE_FRESH_MS * 1000000ull + FLARE_COARSE_SLACK_NS;
}

int flare_tbl_health(const struct flare_tbl_reader *r, uint64_t now_ns)
{
	if (!r->base)
		return FLARE_TBL_ABSENT;
	const struct flare_tbl_hdr *h = (const void *)r->base;
	if (ld32(&h->flags) & FLARE_TBL_FLAG_RETIRED)
		return FLARE_TBL_RETIRED;
	uint64_t updated = ld64(&h->updated_ns);
	uint64_t stale_ns = (uint64_t)ld32(&h->stale_ms) * 1000000ull;
	if (updated == 0 || (now_ns > updated && now_ns - updated > stale_ns))
		return FLARE_TBL_STALE;
	return FLARE_TBL_OK;
}

static int route_valid(const struct flare_route *o, uint32_t svc_index, const struct layout *l)
{
	const struct flare_tbl_service *s = &o->svc;
	if (s->n_replicas == 0 || s->n_replicas > FLARE_MAX_REPLICAS ||
	    s->first_replica > l->n_replicas || s->n_replicas > l->n_replicas - s->first_replica)
		return 0;
	if (s->n_order > s->n_replicas || s->primary < -1 || s->primary >= (int32_t)s->n_replicas)
		return 0;
	for (uint32_t i = 0; i < s->n_order; i++)
		if (s->order[i] >= s->n_replicas)
			return 0;
	for (uint32_t i = 0; i < s->n_replicas; i++) {
		const struct flare_tbl_replica *p = &o->reps[i];
		if (p->service != svc_index || p->n_failover > s->n_replicas)
			return 0;
		for (uint32_t k = 0; k < p->n_failover; k++)
			if (p->failover[k] >= s->n_replicas)
				return 0;
	}
	return 1;
}

/* Copies service idx and its replicas; returns 1 when the copy is valid. */
static int copy_route(const uint8_t *base, const struct layout *l, uint32_t idx,
		      struct flare_route *out)
{
	copy_in(&out->svc, base + l->off_services + (size_t)idx * sizeof(out->svc),
		sizeof(out->svc));
	out->svc.name[FLARE_NAME_MAX - 1] = '\0';
	out->svc_index = idx;
	uint32_t n = out->svc.n_replicas, first = out->svc.first_replica;
	if (n == 0 || n > FLARE_MAX_REPLICAS || first > l->n_replicas || n > l->n_replicas - first)
		return 0;
	copy_in(out->reps, base + l->off_replicas + (size_t)first * sizeof(out->reps[0]),
		(size_t)n * sizeof(out->reps[0]));
	for (uint32_t i = 0; i < n; i++)
		out->reps[i].name[FLARE_NAME_MAX - 1] = '\0';
	return route_valid(out, idx, l);
}

enum { PROBE_FOUND, PROBE_MISS, PROBE_BAD };

/* Linear probing over one slot array; compares the address stored in the
 * record each slot points to. */
static int probe(const uint8_t *base, const struct layout *l, uint32_t off_slots, uint32_t off_recs,
		 uint32_t rec_size, uint32_t n_recs, uint32_t addr_off, const struct flare_addr *a,
		 uint32_t *idx)
{
	uint32_t mask = l->n_slots - 1, h = flare_addr_hash(a) & mask;
	const uint32_t *slots = (const uint32_t *)(base + off_slots);
	for (uint32_t i = 0; i < l->n_slots; i++) {
		uint32_t s = ld32(&slots[(h + i) & mask]);
		if (s == 0)
			return PROBE_MISS;
		if (s > n_recs)
			return PROBE_BAD;
		struct flare_addr ra;
		const uint8_t *rec = base + off_recs + (size_t)(s - 1) * rec_size + addr_off;
		/* flare_addr sits at offset 32 in both records: 8-aligned, 24 bytes read */
		uint64_t w[3];
		copy_in(w, rec, sizeof(w));
		memcpy(&ra, w, sizeof(ra));
		if (flare_addr_equal(&ra, a)) {
			*idx = s - 1;
			return PROBE_FOUND;
		}
	}
	return PROBE_MISS;
}

/* Runs body under the seqlock until a consistent copy is made. */
#define SEQ_READ(r, l, body)                                                                       \
	do {                                                                                       \
		const struct flare_tbl_hdr *h_ = (const void *)(r)->base;                          \
		const char *why_;                                                                  \
		if (!(r)->base)                                                                    \
			return FLARE_TBL_ABSENT;                                                   \
		for (int try_ = 0; try_ < READ_TRIES; try_++) {                                    \
			uint64_t s1_ = __atomic_load_n(&h_->seq, __ATOMIC_ACQUIRE);                \
			if (s1_ & 1) {                                                             \
				wait_writer(try_);                                                 \
				continue;                                                          \
			}                                                                          \
			int rc_;                                                                   \
			if (read_layout((r)->base, (r)->size, &(l), &why_) < 0)                    \
				rc_ = FLARE_TBL_CORRUPT;                                           \
			else                                                                       \
				rc_ = (body);                                                      \
			if (__atomic_load_n(&h_->seq, __ATOMIC_ACQUIRE) != s1_)                    \
				continue;                                                          \
			return rc_;                                                                \
		}                                                                                  \
		return FLARE_TBL_BUSY;                                                             \
	} while (0)

static int do_lookup_service(const uint8_t *base, const struct layout *l,
			     const struct flare_addr *a, struct flare_route *out)
{
	uint32_t idx;
	int p = probe(base, l, l->off_svc_slots, l->off_services, sizeof(struct flare_tbl_service),
		      l->n_services, offsetof(struct flare_tbl_service, addr), a, &idx);
	if (p != PROBE_FOUND)
		return p == PROBE_MISS ? FLARE_TBL_NOTFOUND : FLARE_TBL_CORRUPT;
	out->gen = ld64(&((const struct flare_tbl_hdr *)base)->gen);
	return copy_route(base, l, idx, out) ? FLARE_TBL_OK : FLARE_TBL_CORRUPT;
}

static int lookup_service(const struct flare_tbl_reader *r, const struct flare_addr *a,
			  struct flare_route *out)
{
	struct layout l;
	SEQ_READ(r, l, do_lookup_service(r->base, &l, a, out));
}

/* A stale table is still read (fail-static: its readers keep the last
 * ranking); the result says it is stale when the read itself succeeded. */
static int with_health(int health, int rc) { return rc == FLARE_TBL_OK ? health : rc; }

int flare_tbl_lookup_service(const struct flare_tbl_reader *r, const struct flare_addr *a,
			     struct flare_route *out)
{
	int health = flare_tbl_health(r, flare_coarse_ns());
	if (health != FLARE_TBL_OK && health != FLARE_TBL_STALE)
		return health;
	return with_health(health, lookup_service(r, a, out));
}

static int do_read_route(const uint8_t *base, const struct layout *l, uint32_t idx,
			 struct flare_route *out)
{
	if (idx >= l->n_services)
		return FLARE_TBL_NOTFOUND;
	out->gen = ld64(&((const struct flare_tbl_hdr *)base)->gen);
	return copy_route(base, l, idx, out) ? FLARE_TBL_OK : FLARE_TBL_CORRUPT;
}

static int read_route(const struct flare_tbl_reader *r, uint32_t svc_index, struct flare_route *out)
{
	struct layout l;
	SEQ_READ(r, l, do_read_route(r->base, &l, svc_index, out));
}

int flare_tbl_read_route(const struct flare_tbl_reader *r, uint32_t svc_index,
			 struct flare_route *out)
{
	int health = flare_tbl_health(r, flare_coarse_ns());
	if (health != FLARE_TBL_OK && health != FLARE_TBL_STALE)
		return health;
	return with_health(health, read_route(r, svc_index, out));
}

static int do_lookup_replica(const uint8_t *base, const struct layout *l,
			     const struct flare_addr *a, struct flare_replica_info *out)
{
	uint32_t idx;
	int p = probe(base, l, l->off_rep_slots, l->off_replicas, sizeof(struct flare_tbl_replica),
		      l->n_replicas, offsetof(struct flare_tbl_replica, addr), a, &idx);
	if (p != PROBE_FOUND)
		return p == PROBE_MISS ? FLARE_TBL_NOTFOUND : FLARE_TBL_CORRUPT;
	out->rep_index = idx;
	copy_in(&out->rep, base + l->off_replicas + (size_t)idx * sizeof(out->rep),
		sizeof(out->rep));
	out->rep.name[FLARE_NAME_MAX - 1] = '\0';
	if (out->rep.host >= l->n_hosts)
		return FLARE_TBL_CORRUPT;
	copy_in(&out->host, base + l->off_hosts + (size_t)out->rep.host * sizeof(out->host),
		sizeof(out->host));
	out->host.name[FLARE_NAME_MAX - 1] = '\0';
	out->host.monitor_socket[FLARE_SOCK_PATH_MAX - 1] = '\0';
	return FLARE_TBL_OK;
}

/* Replica lookups serve the server side (registration), which must work
 * even when the table is stale: a stale ranking says nothing about where
 * this process's monitor listens. */
int flare_tbl_lookup_replica(const struct flare_tbl_reader *r, const struct flare_addr *a,
			     struct flare_replica_info *out)
{
	struct layout l;
	SEQ_READ(r, l, do_lookup_replica(r->base, &l, a, out));
}

static int do_find_move(const uint8_t *base, const struct layout *l,
			const struct flare_addr *client, uint32_t from, uint32_t *to)
{
	const struct flare_tbl_hdr *h = (const void *)base;
	uint32_t n = ld32(&h->n_moves);
	if (n > l->moves_cap)
		return FLARE_TBL_CORRUPT;
	const struct flare_tbl_move *mv = (const void *)(base + l->off_moves);
	for (uint32_t i = 0; i < n; i++) {
		struct flare_tbl_move m;
		copy_in(&m, &mv[i], sizeof(m));
		if (m.from == from && flare_addr_equal(&m.client, client)) {
			if (m.to >= l->n_replicas)
				return FLARE_TBL_CORRUPT;
			*to = m.to;
			return FLARE_TBL_OK;
		}
	}
	return FLARE_TBL_NOTFOUND;
}

int flare_tbl_find_move(const struct flare_tbl_reader *r, const struct flare_addr *client,
			uint32_t from, uint32_t *to)
{
	struct layout l;
	SEQ_READ(r, l, do_find_move(r->base, &l, client, from, to));
}
