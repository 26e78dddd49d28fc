#include "clock.h"
#include "table_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm" /* where glibc's shm_open keeps segments */

/* Release stores: a reader whose acquire load sees any of these words also
 * sees the odd `seq` stored before them, so its closing re-read of `seq`
 * differs and it retries. No fences (ThreadSanitizer does not model them);
 * on x86 these are plain moves. */
static void copy_out(void *dst, const void *src, size_t n)
{
	uint64_t *d = dst;
	const uint64_t *s = src;
	for (size_t i = 0; i < n / 8; i++)
		__atomic_store_n(&d[i], s[i], __ATOMIC_RELEASE);
}

static struct flare_tbl_hdr *hdr_of(uint8_t *base) { return (struct flare_tbl_hdr *)base; }

static void seq_enter(struct flare_tbl_hdr *h)
{
	uint64_t s = __atomic_load_n(&h->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&h->seq, s + 1, __ATOMIC_RELEASE);
}

static void seq_leave(struct flare_tbl_hdr *h)
{
	uint64_t s = __atomic_load_n(&h->seq, __ATOMIC_RELAXED);
	__atomic_store_n(&h->seq, s + 1, __ATOMIC_RELEASE);
}

int flare_tbl_writer_init(struct flare_tbl_writer *w, const char *name, uint32_t stale_ms)
{
	memset(w, 0, sizeof(*w));
	if (!name || name[0] != '/' || strchr(name + 1, '/') ||
	    strlen(name) >= sizeof(w->name) - 16)
		return -1;
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->stale_ms = stale_ms;
	return 0;
}

static uint32_t slots_for(uint32_t n)
{
	uint32_t s = 8;
	while (s < 2 * n)
		s *= 2;
	return s;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static int insert_slot(uint32_t *slots, uint32_t n_slots, const struct flare_addr *a, uint32_t idx,
		       const uint8_t *recs, size_t rec_size, size_t addr_off)
{
	uint32_t mask = n_slots - 1, h = flare_addr_hash(a) & mask;
	for (uint32_t i = 0; i < n_slots; i++) {
		uint32_t *s = &slots[(h + i) & mask];
		if (*s == 0) {
			*s = idx + 1;
			return 0;
		}
		const struct flare_addr *other =
		    (const void *)(recs + (size_t)(*s - 1) * rec_size + addr_off);
		if (flare_addr_equal(other, a))
			return -1;
	}
	return -1;
}

static void fill_host(struct flare_tbl_host *t, const struct fw_rank_host *h)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->name, h->name, sizeof(t->name));
	memcpy(t->monitor_socket, h->monitor_socket, sizeof(t->monitor_socket));
	t->alive = h->alive;
	t->util_ppm = h->util_ppm;
}

static void fill_service(struct flare_tbl_service *t, const struct fw_rank_service *s)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->name, s->name, sizeof(t->name));
	t->addr = s->addr;
	t->strategy = s->strategy;
	t->failover = s->failover;
	t->replay = s->replay;
	t->protocol = s->protocol;
	t->replay_unsafe = s->replay_unsafe;
	t->n_order = s->n_order;
	t->connect_timeout_ms = s->connect_timeout_ms;
	t->user_timeout_ms = s->user_timeout_ms;
	t->replay_buffer = s->replay_buffer;
	t->request_timeout_ms = s->request_timeout_ms;
	t->keepalive_idle_s = s->keepalive_idle_s;
	t->keepalive_interval_s = s->keepalive_interval_s;
	t->keepalive_count = s->keepalive_count;
	t->first_replica = s->first_replica;
	t->n_replicas = s->n_replicas;
	t->primary = s->primary;
	t->balance = s->balance;
	t->binding = s->binding;
	t->rebind_interval_ms = s->rebind_interval_ms;
	t->band_ppm = s->band_ppm;
	memcpy(t->order, s->order, s->n_order);
}

static void fill_replica(struct flare_tbl_replica *t, const struct fw_rank_replica *p)
{
	memset(t, 0, sizeof(*t));
	memcpy(t->name, p->name, sizeof(t->name));
	t->addr = p->addr;
	t->service = p->service;
	t->host = p->host;
	t->alive = p->alive;
	t->reason = p->alive ? FLARE_DEATH_NONE : p->reason;
	t->load_ppm = p->load_ppm;
	t->weight_ppm = p->weight_ppm;
	t->rate_milli = p->rate_milli;
	t->ramp_ppm = p->ramp_ppm;
	t->flags = p->flags;
	t->n_failover = p->n_failover;
	memcpy(t->failover, p->failover, p->n_failover);
}

struct view {
	struct flare_tbl_hdr *h;
	struct flare_tbl_host *hosts;
	struct flare_tbl_service *svcs;
	struct flare_tbl_replica *reps;
};

static struct view view_of(uint8_t *img)
{
	struct flare_tbl_hdr *h = hdr_of(img);
	return (struct view){h, (void *)(img + h->off_hosts), (void *)(img + h->off_services),
			     (void *)(img + h->off_replicas)};
}

static const char *check_service(const struct flare_tbl_service *s, uint32_t n_replicas)
{
	if (s->n_replicas == 0 || s->n_replicas > FLARE_MAX_REPLICAS ||
	    s->first_replica > n_replicas || s->n_replicas > n_replicas - s->first_replica)
		return "service replica range outside the table";
	if (s->addr.family == 0)
		return "service without an address";
	return NULL;
}

static const char *check_replica(const struct view *v, uint32_t idx)
{
	const struct flare_tbl_replica *p = &v->reps[idx];
	if (p->service >= v->h->n_services || p->host >= v->h->n_hosts)
		return "replica names a service or host out of range";
	const struct flare_tbl_service *s = &v->svcs[p->service];
	if (idx < s->first_replica || idx >= s->first_replica + s->n_replicas)
		return "replica outside its service's range";
	if (p->n_failover > s->n_replicas)
		return "failover order longer than the service";
	for (uint32_t k = 0; k < p->n_failover; k++)
		if (p->failover[k] >= s->n_replicas)
			return "failover order names a replica out of range";
	if (p->addr.family == 0)
		return "replica without an address";
	return NULL;
}

static const char *check_order(const struct flare_tbl_service *s)
{
	for (uint32_t k = 0; k < s->n_order; k++)
		if (s->order[k] >= s->n_replicas)
			return "service order names a replica out of range";
	return NULL;
}

/* Replaces the image's moves; every move must stay within one service. */
static const char *put_moves(uint8_t *img, const struct fw_rank *m)
{
	struct view v = view_of(img);
	struct flare_tbl_move *mv = (void *)(img + v.h->off_moves);
	if (m->n_moves > FLARE_MAX_MOVES)
		return "too many moves";
	for (uint32_t i = 0; i < m->n_moves; i++) {
		const struct fw_move *x = &m->moves[i];
		if (x->from >= v.h->n_replicas || x->to >= v.h->n_replicas ||
		    v.reps[x->from].service != v.reps[x->to].service)
			return "a move between replicas of different services or out of range";
	}
	for (uint32_t i = 0; i < m->n_moves; i++)
		mv[i] =
		    (struct flare_tbl_move){m->moves[i].client, m->moves[i].from, m->moves[i].to};
	v.h->n_moves = m->n_moves;
	v.h->moves_gen++;
	return NULL;
}

/* Builds a complete private image from a full ranking. */
static uint8_t *build_image(const struct fw_rank *m, uint32_t stale_ms, size_t *size_out,
			    const char **why)
{
	uint32_t nh = m->n_hosts, ns = m->n_services, nr = m->n_replicas;
	if (!m->full) {
		*why = "a delta cannot build a table";
		return NULL;
	}
	if (nh > (1u << 20) || ns > (1u << 22) || nr > (1u << 22)) {
		*why = "table counts too large";
		return NULL;
	}
	uint32_t n_slots = slots_for(ns > nr ? ns : nr);
	size_t off = align8(sizeof(struct flare_tbl_hdr));
	size_t off_hosts = off;
	off += (size_t)nh * sizeof(struct flare_tbl_host);
	size_t off_svcs = off;
	off += (size_t)ns * sizeof(struct flare_tbl_service);
	size_t off_reps = off;
	off += (size_t)nr * sizeof(struct flare_tbl_replica);
	size_t off_ss = off;
	off = align8(off + n_slots * sizeof(uint32_t));
	size_t off_rs = off;
	off = align8(off + n_slots * sizeof(uint32_t));
	size_t off_mv = off;
	off += FLARE_MAX_MOVES * sizeof(struct flare_tbl_move);
	uint8_t *img = calloc(1, off);
	if (!img) {
		*why = "out of memory";
		return NULL;
	}
	struct flare_tbl_hdr *h = hdr_of(img);
	h->magic = FLARE_TBL_MAGIC;
	h->version = FLARE_TBL_VERSION;
	h->size = off;
	h->gen = m->gen;
	h->stale_ms = stale_ms;
	h->n_hosts = nh;
	h->n_services = ns;
	h->n_replicas = nr;
	h->n_slots = n_slots;
	h->off_hosts = (uint32_t)off_hosts;
	h->off_services = (uint32_t)off_svcs;
	h->off_replicas = (uint32_t)off_reps;
	h->off_svc_slots = (uint32_t)off_ss;
	h->off_rep_slots = (uint32_t)off_rs;
	h->off_moves = (uint32_t)off_mv;
	h->moves_cap = FLARE_MAX_MOVES;
	h->writer_pid = (uint32_t)getpid();
	struct view v = view_of(img);
	*why = NULL;
	for (uint32_t i = 0; i < nh && !*why; i++) {
		if (m->hosts[i].idx != i)
			*why = "full table entries out of order";
		fill_host(&v.hosts[i], &m->hosts[i]);
	}
	for (uint32_t i = 0; i < ns && !*why; i++) {
		if (m->services[i].idx != i)
			*why = "full table entries out of order";
		fill_service(&v.svcs[i], &m->services[i]);
		if (!*why)
			*why = check_service(&v.svcs[i], nr);
		if (!*why)
			*why = check_order(&v.svcs[i]);
		if (!*why && insert_slot((uint32_t *)(img + off_ss), n_slots, &v.svcs[i].addr, i,
					 (uint8_t *)v.svcs, sizeof(*v.svcs),
					 offsetof(struct flare_tbl_service, addr)) < 0)
			*why = "two services with one address";
	}
	for (uint32_t i = 0; i < nr && !*why; i++) {
		if (m->replicas[i].idx != i)
			*why = "full table entries out of order";
		fill_replica(&v.reps[i], &m->replicas[i]);
		if (!*why)
			*why = check_replica(&v, i);
		if (!*why && insert_slot((uint32_t *)(img + off_rs), n_slots, &v.reps[i].addr, i,
					 (uint8_t *)v.reps, sizeof(*v.reps),
					 offsetof(struct flare_tbl_replica, addr)) < 0)
			*why = "two replicas with one address";
	}
	if (!*why && m->has_moves)
		*why = put_moves(img, m);
	if (*why) {
		free(img);
		return NULL;
	}
	*size_out = off;
	return img;
}

/* Makes a new segment holding img under a temporary name and renames it
 * over the published one, so a reader opening by name always finds a
 * complete table. */
static uint8_t *create_segment(const char *name, const uint8_t *img, size_t size, const char **why)
{
	char tmp[128], from[160], to[160];
	/* NAME.new.PID.RANDOM: a name another user cannot guess and hold first */
	uint64_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = flare_monotonic_ns();
	snprintf(tmp, sizeof(tmp), "%s" FLARE_TBL_NEW_INFIX "%ld.%016llx", name, (long)getpid(),
		 (unsigned long long)r);
	int fd = shm_open(tmp, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		*why = "shm_open failed";
		return NULL;
	}
	(void)fchmod(fd, 0644); /* readable by clients of any user, whatever the umask */
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		shm_unlink(tmp);
		*why = "ftruncate of the segment failed";
		return NULL;
	}
	uint8_t *seg = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (seg == MAP_FAILED) {
		shm_unlink(tmp);
		*why = "mmap of the segment failed";
		return NULL;
	}
	memcpy(seg, img, size);
	snprintf(from, sizeof(from), SHM_DIR "%s", tmp);
	snprintf(to, sizeof(to), SHM_DIR "%s", name);
	if (rename(from, to) < 0) {
		munmap(seg, size);
		shm_unlink(tmp);
		*why = "rename of the new segment failed";
		return NULL;
	}
	return seg;
}

static void retire(uint8_t *seg, size_t size)
{
	struct flare_tbl_hdr *h = hdr_of(seg);
	__atomic_fetch_or(&h->flags, FLARE_TBL_FLAG_RETIRED, __ATOMIC_RELEASE);
	munmap(seg, size);
}

static int same_layout(const uint8_t *a, const uint8_t *b)
{
	const struct flare_tbl_hdr *x = (const void *)a, *y = (const void *)b;
	return x->size == y->size && x->n_hosts == y->n_hosts && x->n_services == y->n_services &&
	       x->n_replicas == y->n_replicas && x->n_slots == y->n_slots;
}

int flare_tbl_write_full(struct flare_tbl_writer *w, const struct fw_rank *m, const char **why)
{
	const char *dummy;
	size_t size;
	if (!why)
		why = &dummy;
	uint8_t *img = build_image(m, w->stale_ms, &size, why);
	if (!img)
		return -1;
	hdr_of(img)->updated_ns = flare_monotonic_ns();
	hdr_of(img)->flags = w->flags;
	if (w->img) /* readers compare it for change: it never goes back */
		hdr_of(img)->moves_gen = hdr_of(w->img)->moves_gen + 1;
	if (w->seg && same_layout(w->seg, img)) {
		struct flare_tbl_hdr *h = hdr_of(w->seg);
		/* header first 16 bytes (magic, version, size) are equal; the seq
		 * word is the writer's: copy everything after it */
		size_t skip = offsetof(struct flare_tbl_hdr, updated_ns);
		seq_enter(h);
		copy_out(w->seg + skip, img + skip, size - skip);
		seq_leave(h);
		hdr_of(img)->seq = h->seq;
		free(w->img);
		w->img = img;
		return 0;
	}
	uint8_t *seg = create_segment(w->name, img, size, why);
	if (!seg) {
		free(img);
		return -1;
	}
	if (w->seg)
		retire(w->seg, w->size);
	free(w->img);
	w->img = img;
	w->seg = seg;
	w->size = size;
	return 0;
}

void flare_tbl_writer_flags(struct flare_tbl_writer *w, uint32_t bits, int on)
{
	w->flags = on ? w->flags | bits : w->flags & ~bits;
	if (w->img)
		hdr_of(w->img)->flags = w->flags;
	if (w->seg) {
		if (on)
			__atomic_fetch_or(&hdr_of(w->seg)->flags, bits, __ATOMIC_RELEASE);
		else
			__atomic_fetch_and(&hdr_of(w->seg)->flags, ~bits, __ATOMIC_RELEASE);
	}
}

int flare_tbl_write_delta(struct flare_tbl_writer *w, const struct fw_rank *m, const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	if (!w->img) {
		*why = "delta before any full table";
		return -1;
	}
	if (m->full) {
		*why = "not a delta";
		return -1;
	}
	struct view v = view_of(w->img);
	/* check everything against a scratch copy of the records a delta may
	 * touch before changing the image */
	for (uint32_t i = 0; i < m->n_hosts; i++)
		if (m->hosts[i].idx >= v.h->n_hosts) {
			*why = "delta names a host out of range";
			return -1;
		}
	for (uint32_t i = 0; i < m->n_services; i++) {
		const struct fw_rank_service *s = &m->services[i];
		struct flare_tbl_service t;
		if (s->idx >= v.h->n_services) {
			*why = "delta names a service out of range";
			return -1;
		}
		fill_service(&t, s);
		const struct flare_tbl_service *old = &v.svcs[s->idx];
		if (!flare_addr_equal(&t.addr, &old->addr) ||
		    t.first_replica != old->first_replica || t.n_replicas != old->n_replicas) {
			*why = "delta changes a service's address or replicas (needs a full table)";
			return -1;
		}
		if ((*why = check_order(&t)) != NULL)
			return -1;
	}
	for (uint32_t i = 0; i < m->n_replicas; i++) {
		const struct fw_rank_replica *p = &m->replicas[i];
		if (p->idx >= v.h->n_replicas) {
			*why = "delta names a replica out of range";
			return -1;
		}
		const struct flare_tbl_replica *old = &v.reps[p->idx];
		if (!flare_addr_equal(&p->addr, &old->addr) || p->service != old->service ||
		    p->host != old->host) {
			*why = "delta changes a replica's address, service or host (needs a full "
			       "table)";
			return -1;
		}
		if (p->n_failover > v.svcs[p->service].n_replicas) {
			*why = "failover order longer than the service";
			return -1;
		}
		for (uint32_t k = 0; k < p->n_failover; k++)
			if (p->failover[k] >= v.svcs[p->service].n_replicas) {
				*why = "failover order names a replica out of range";
				return -1;
			}
	}
	if (m->has_moves && m->n_moves > FLARE_MAX_MOVES) {
		*why = "too many moves";
		return -1;
	}
	if (m->has_moves)
		for (uint32_t i = 0; i < m->n_moves; i++) {
			const struct fw_move *x = &m->moves[i];
			if (x->from >= v.h->n_replicas || x->to >= v.h->n_replicas ||
			    v.reps[x->from].service != v.reps[x->to].service) {
				*why =
				    "a move between replicas of different services or out of range";
				return -1;
			}
		}
	struct flare_tbl_hdr *sh = w->seg ? hdr_of(w->seg) : NULL;
	if (sh)
		seq_enter(sh);
	if (m->has_moves && (*why = put_moves(w->img, m)) == NULL && sh) {
		size_t mv = v.h->off_moves;
		copy_out(w->seg + mv, w->img + mv, v.h->n_moves * sizeof(struct flare_tbl_move));
		__atomic_store_n(&sh->n_moves, v.h->n_moves, __ATOMIC_RELEASE);
		__atomic_store_n(&sh->moves_gen, v.h->moves_gen, __ATOMIC_RELEASE);
	}
	*why = NULL;
	for (uint32_t i = 0; i < m->n_hosts; i++) {
		struct flare_tbl_host *t = &v.hosts[m->hosts[i].idx];
		fill_host(t, &m->hosts[i]);
		if (sh)
			copy_out(w->seg + ((uint8_t *)t - w->img), t, sizeof(*t));
	}
	for (uint32_t i = 0; i < m->n_services; i++) {
		struct flare_tbl_service *t = &v.svcs[m->services[i].idx];
		fill_service(t, &m->services[i]);
		if (sh)
			copy_out(w->seg + ((uint8_t *)t - w->img), t, sizeof(*t));
	}
	for (uint32_t i = 0; i < m->n_replicas; i++) {
		struct flare_tbl_replica *t = &v.reps[m->replicas[i].idx];
		fill_replica(t, &m->replicas[i]);
		if (sh)
			copy_out(w->seg + ((uint8_t *)t - w->img), t, sizeof(*t));
	}
	v.h->gen = m->gen;
	v.h->updated_ns = flare_monotonic_ns();
	if (sh) {
		__atomic_store_n(&sh->gen, m->gen, __ATOMIC_RELEASE);
		__atomic_store_n(&sh->updated_ns, v.h->updated_ns, __ATOMIC_RELEASE);
		seq_leave(sh);
	}
	return 0;
}

void flare_tbl_touch(struct flare_tbl_writer *w)
{
	uint64_t now = flare_monotonic_ns();
	if (w->img)
		hdr_of(w->img)->updated_ns = now;
	if (w->seg)
		__atomic_store_n(&hdr_of(w->seg)->updated_ns, now, __ATOMIC_RELEASE);
}

void flare_tbl_writer_close(struct flare_tbl_writer *w, int unlink_segment)
{
	if (w->seg) {
		if (unlink_segment) {
			retire(w->seg, w->size);
			shm_unlink(w->name);
		} else {
			munmap(w->seg, w->size);
		}
	}
	free(w->img);
	w->img = w->seg = NULL;
	w->size = 0;
}
