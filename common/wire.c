#include "wire.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- output ---- */

void fw_buf_init_fixed(struct fw_buf *b, void *mem, size_t cap)
{
	b->data = mem;
	b->len = 0;
	b->cap = cap;
	b->fixed = 1;
	b->err = 0;
}

void fw_buf_free(struct fw_buf *b)
{
	if (!b->fixed)
		free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void fw_buf_consume(struct fw_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

uint8_t *fw_buf_reserve(struct fw_buf *b, size_t n)
{
	if (b->err)
		return NULL;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *d = b->fixed ? NULL : realloc(b->data, cap);
		if (!d) {
			b->err = 1;
			return NULL;
		}
		b->data = d;
		b->cap = cap;
	}
	uint8_t *p = b->data + b->len;
	b->len += n;
	return p;
}

static void put_u8(struct fw_buf *b, uint8_t v)
{
	uint8_t *p = fw_buf_reserve(b, 1);
	if (p)
		p[0] = v;
}

static void put_u16(struct fw_buf *b, uint16_t v)
{
	uint8_t *p = fw_buf_reserve(b, 2);
	if (p) {
		p[0] = (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
	}
}

static void put_u32(struct fw_buf *b, uint32_t v)
{
	uint8_t *p = fw_buf_reserve(b, 4);
	if (p)
		for (int i = 0; i < 4; i++)
			p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_u64(struct fw_buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b, (uint32_t)v);
}

static void put_bytes(struct fw_buf *b, const void *s, size_t n)
{
	uint8_t *p = fw_buf_reserve(b, n);
	if (p && n)
		memcpy(p, s, n);
}

static void put_str(struct fw_buf *b, const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	put_u16(b, (uint16_t)n);
	put_bytes(b, s, n);
}

static void put_addr(struct fw_buf *b, const struct flare_addr *a)
{
	put_u8(b, a->family == AF_INET6 ? 6 : a->family == AF_INET ? 4 : 0);
	put_u16(b, a->port);
	if (a->family == AF_INET)
		put_bytes(b, a->ip, 4);
	else if (a->family == AF_INET6)
		put_bytes(b, a->ip, 16);
}

void fw_put_header(uint8_t *out, uint8_t type, uint32_t len)
{
	out[0] = (uint8_t)(FW_MAGIC >> 8);
	out[1] = (uint8_t)FW_MAGIC;
	out[2] = FW_VERSION;
	out[3] = type;
	for (int i = 0; i < 4; i++)
		out[4 + i] = (uint8_t)(len >> (24 - 8 * i));
}

static size_t frame_begin(struct fw_buf *b, uint8_t type)
{
	size_t start = b->len;
	put_u16(b, FW_MAGIC);
	put_u8(b, FW_VERSION);
	put_u8(b, type);
	put_u32(b, 0);
	return start;
}

static int frame_end(struct fw_buf *b, size_t start)
{
	if (b->err)
		return -1;
	size_t plen = b->len - start - FW_HDR_LEN;
	if (plen > FW_MAX_PAYLOAD) {
		b->len = start;
		b->err = 1;
		return -1;
	}
	uint8_t *p = b->data + start + 4;
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(plen >> (24 - 8 * i));
	return 0;
}

/* ---- input ---- */

struct rd {
	const uint8_t *p;
	size_t len, off;
	const char *err;
};

static int need(struct rd *r, size_t n)
{
	if (r->err)
		return 0;
	if (r->len - r->off < n) {
		r->err = "truncated payload";
		return 0;
	}
	return 1;
}

static uint8_t get_u8(struct rd *r)
{
	if (!need(r, 1))
		return 0;
	return r->p[r->off++];
}

static uint16_t get_u16(struct rd *r)
{
	if (!need(r, 2))
		return 0;
	uint16_t v = (uint16_t)(r->p[r->off] << 8 | r->p[r->off + 1]);
	r->off += 2;
	return v;
}

static uint32_t get_u32(struct rd *r)
{
	if (!need(r, 4))
		return 0;
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v = v << 8 | r->p[r->off + (size_t)i];
	r->off += 4;
	return v;
}

static uint64_t get_u64(struct rd *r)
{
	uint64_t hi = get_u32(r);
	return hi << 32 | get_u32(r);
}

/* Strings must fit their destination with the NUL and hold no NUL byte. */
static void get_str(struct rd *r, char *out, size_t cap)
{
	uint16_t n = get_u16(r);
	out[0] = '\0';
	if (!need(r, n))
		return;
	if (n >= cap) {
		r->err = "string too long";
		return;
	}
	if (memchr(r->p + r->off, '\0', n)) {
		r->err = "NUL byte inside a string";
		return;
	}
	memcpy(out, r->p + r->off, n);
	out[n] = '\0';
	r->off += n;
}

static void get_addr(struct rd *r, struct flare_addr *a)
{
	memset(a, 0, sizeof(*a));
	uint8_t fam = get_u8(r);
	a->port = get_u16(r);
	size_t n = fam == 4 ? 4 : fam == 6 ? 16 : 0;
	if (fam != 4 && fam != 6) {
		if (!r->err)
			r->err = "bad address family";
		return;
	}
	if (!need(r, n))
		return;
	a->family = fam == 4 ? AF_INET : AF_INET6;
	memcpy(a->ip, r->p + r->off, n);
	r->off += n;
}

static uint8_t get_bool(struct rd *r)
{
	uint8_t v = get_u8(r);
	if (v > 1 && !r->err)
		r->err = "boolean is not 0 or 1";
	return v;
}

static uint32_t get_ppm(struct rd *r, int allow_unknown)
{
	uint32_t v = get_u32(r);
	if (v > FLARE_PPM && !(allow_unknown && v == FW_LOAD_UNKNOWN) && !r->err)
		r->err = "load or utilization above 1";
	return v;
}

/* Element counts are checked against the bytes left before allocating, so
 * a 4-byte lie cannot make the decoder allocate gigabytes. */
static void *get_array(struct rd *r, uint32_t n, size_t min_wire, size_t elem)
{
	if (r->err)
		return NULL;
	if (n == 0)
		return NULL;
	if ((r->len - r->off) / min_wire < n) {
		r->err = "element count larger than the payload";
		return NULL;
	}
	void *p = calloc(n, elem);
	if (!p)
		r->err = "out of memory";
	return p;
}

static void get_order(struct rd *r, uint8_t *n_out, uint8_t *order, uint32_t limit)
{
	uint8_t n = get_u8(r);
	*n_out = 0;
	if (r->err)
		return;
	if (n > FLARE_MAX_REPLICAS || n > limit) {
		r->err = "ranking longer than the replica count";
		return;
	}
	for (uint8_t i = 0; i < n; i++) {
		order[i] = get_u8(r);
		if (!r->err && order[i] >= limit)
			r->err = "ranking names a replica out of range";
	}
	if (!r->err)
		*n_out = n;
}

/* ---- messages ---- */

int fw_encode_hello(struct fw_buf *b, const struct fw_hello *m)
{
	size_t s = frame_begin(b, FW_HELLO);
	put_u8(b, m->role);
	put_u32(b, m->pid);
	put_str(b, m->name, sizeof(m->name));
	return frame_end(b, s);
}

static void dec_hello(struct rd *r, struct fw_hello *m)
{
	m->role = get_u8(r);
	m->pid = get_u32(r);
	get_str(r, m->name, sizeof(m->name));
	if (!r->err && (m->role < FW_ROLE_MONITOR || m->role > FW_ROLE_LIB))
		r->err = "unknown peer role";
}

int fw_encode_heartbeat(struct fw_buf *b, const struct fw_heartbeat *m)
{
	size_t s = frame_begin(b, FW_HEARTBEAT);
	put_u64(b, m->seq);
	put_u64(b, m->time_ns);
	return frame_end(b, s);
}

static void dec_heartbeat(struct rd *r, struct fw_heartbeat *m)
{
	m->seq = get_u64(r);
	m->time_ns = get_u64(r);
}

int fw_encode_register(struct fw_buf *b, const struct fw_register *m)
{
	size_t s = frame_begin(b, FW_REGISTER);
	uint16_t n = m->n_addrs > FW_MAX_REG_ADDRS ? FW_MAX_REG_ADDRS : m->n_addrs;
	put_u32(b, m->pid);
	put_u16(b, n);
	for (uint16_t i = 0; i < n; i++)
		put_addr(b, &m->addrs[i]);
	return frame_end(b, s);
}

static void dec_register(struct rd *r, struct fw_register *m)
{
	m->pid = get_u32(r);
	m->n_addrs = get_u16(r);
	if (!r->err && m->n_addrs > FW_MAX_REG_ADDRS) {
		r->err = "too many addresses in a registration";
		m->n_addrs = 0;
		return;
	}
	for (uint16_t i = 0; i < m->n_addrs && !r->err; i++)
		get_addr(r, &m->addrs[i]);
}

int fw_encode_report(struct fw_buf *b, const struct fw_report *m)
{
	size_t s = frame_begin(b, FW_REPORT);
	put_str(b, m->host, sizeof(m->host));
	put_u64(b, m->seq);
	put_u32(b, m->util_ppm);
	put_u32(b, m->n_replicas);
	for (uint32_t i = 0; i < m->n_replicas; i++) {
		const struct fw_report_replica *rr = &m->replicas[i];
		put_str(b, rr->name, sizeof(rr->name));
		put_u8(b, rr->alive);
		put_u8(b, rr->registered);
		put_u8(b, rr->reason);
		put_u32(b, rr->pid);
		put_u32(b, rr->load_ppm);
		put_u32(b, rr->rate_milli);
	}
	put_u32(b, m->n_conns);
	for (uint32_t i = 0; i < m->n_conns; i++) {
		put_u16(b, m->conns[i].replica);
		put_addr(b, &m->conns[i].peer);
		put_u32(b, m->conns[i].rate_milli);
	}
	return frame_end(b, s);
}

static void dec_report(struct rd *r, struct fw_report *m)
{
	get_str(r, m->host, sizeof(m->host));
	m->seq = get_u64(r);
	m->util_ppm = get_ppm(r, 0);
	uint32_t n = get_u32(r);
	m->replicas = get_array(r, n, 16, sizeof(*m->replicas));
	if (r->err)
		return;
	m->n_replicas = n;
	for (uint32_t i = 0; i < n && !r->err; i++) {
		struct fw_report_replica *rr = &m->replicas[i];
		get_str(r, rr->name, sizeof(rr->name));
		rr->alive = get_bool(r);
		rr->registered = get_bool(r);
		rr->reason = get_u8(r);
		if (!r->err && rr->reason >= FLARE_DEATH_N)
			r->err = "unknown death reason";
		rr->pid = get_u32(r);
		rr->load_ppm = get_ppm(r, 1);
		rr->rate_milli = get_u32(r);
	}
	n = get_u32(r);
	if (!r->err && n > FW_MAX_REPORT_CONNS)
		r->err = "too many connections in a report";
	m->conns = get_array(r, n, 13, sizeof(*m->conns));
	for (uint32_t i = 0; i < n && !r->err; i++, m->n_conns++) {
		struct fw_report_conn *c = &m->conns[i];
		c->replica = get_u16(r);
		get_addr(r, &c->peer);
		c->rate_milli = get_u32(r);
		if (!r->err && c->replica >= m->n_replicas)
			r->err = "connection of a replica out of range";
	}
}

static void enc_rank_host(struct fw_buf *b, const struct fw_rank_host *h)
{
	put_u32(b, h->idx);
	put_str(b, h->name, sizeof(h->name));
	put_str(b, h->monitor_socket, sizeof(h->monitor_socket));
	put_u8(b, h->alive);
	put_u32(b, h->util_ppm);
}

static void dec_rank_host(struct rd *r, struct fw_rank_host *h)
{
	h->idx = get_u32(r);
	get_str(r, h->name, sizeof(h->name));
	get_str(r, h->monitor_socket, sizeof(h->monitor_socket));
	h->alive = get_bool(r);
	h->util_ppm = get_ppm(r, 0);
}

static void enc_rank_service(struct fw_buf *b, const struct fw_rank_service *s)
{
	put_u32(b, s->idx);
	put_str(b, s->name, sizeof(s->name));
	put_addr(b, &s->addr);
	put_u8(b, s->strategy);
	put_u8(b, s->failover);
	put_u8(b, s->replay);
	put_u8(b, s->protocol);
	put_u8(b, s->replay_unsafe);
	put_u32(b, s->connect_timeout_ms);
	put_u32(b, s->user_timeout_ms);
	put_u32(b, s->replay_buffer);
	put_u32(b, s->request_timeout_ms);
	put_u16(b, s->keepalive_idle_s);
	put_u16(b, s->keepalive_interval_s);
	put_u16(b, s->keepalive_count);
	put_u32(b, s->first_replica);
	put_u32(b, s->n_replicas);
	put_u32(b, (uint32_t)s->primary);
	put_u8(b, s->balance);
	put_u8(b, s->binding);
	put_u32(b, s->rebind_interval_ms);
	put_u32(b, s->band_ppm);
	put_u8(b, s->n_order);
	put_bytes(b, s->order, s->n_order);
}

static void dec_rank_service(struct rd *r, struct fw_rank_service *s)
{
	s->idx = get_u32(r);
	get_str(r, s->name, sizeof(s->name));
	get_addr(r, &s->addr);
	s->strategy = get_u8(r);
	s->failover = get_u8(r);
	s->replay = get_u8(r);
	s->protocol = get_u8(r);
	s->replay_unsafe = get_u8(r);
	s->connect_timeout_ms = get_u32(r);
	s->user_timeout_ms = get_u32(r);
	s->replay_buffer = get_u32(r);
	s->request_timeout_ms = get_u32(r);
	s->keepalive_idle_s = get_u16(r);
	s->keepalive_interval_s = get_u16(r);
	s->keepalive_count = get_u16(r);
	s->first_replica = get_u32(r);
	s->n_replicas = get_u32(r);
	s->primary = (int32_t)get_u32(r);
	s->balance = get_u8(r);
	s->binding = get_u8(r);
	s->rebind_interval_ms = get_u32(r);
	s->band_ppm = get_u32(r);
	if (r->err)
		return;
	if (s->strategy > FLARE_STRATEGY_LEAST_LOADED || s->failover > FLARE_FAILOVER_STATIC ||
	    s->replay > FLARE_REPLAY_AUTO || s->protocol > FLARE_PROTO_MEMCACHED ||
	    s->replay_unsafe > 1 || s->balance > FLARE_BALANCE_HEADROOM ||
	    s->binding > FLARE_BINDING_REQUEST)
		r->err = "unknown strategy, failover, replay, protocol, balance or binding";
	else if (s->n_replicas == 0 || s->n_replicas > FLARE_MAX_REPLICAS)
		r->err = "service replica count out of range";
	else if (s->primary < -1 || s->primary >= (int32_t)s->n_replicas)
		r->err = "service primary out of range";
	else
		get_order(r, &s->n_order, s->order, s->n_replicas);
}

static void enc_rank_replica(struct fw_buf *b, const struct fw_rank_replica *p)
{
	put_u32(b, p->idx);
	put_str(b, p->name, sizeof(p->name));
	put_addr(b, &p->addr);
	put_u32(b, p->service);
	put_u32(b, p->host);
	put_u8(b, p->alive);
	put_u32(b, p->load_ppm);
	put_u32(b, p->weight_ppm);
	put_u32(b, p->rate_milli);
	put_u32(b, p->ramp_ppm);
	put_u8(b, p->flags);
	put_u8(b, p->reason);
	put_u8(b, p->n_failover);
	put_bytes(b, p->failover, p->n_failover);
}

static void dec_rank_replica(struct rd *r, struct fw_rank_replica *p)
{
	p->idx = get_u32(r);
	get_str(r, p->name, sizeof(p->name));
	get_addr(r, &p->addr);
	p->service = get_u32(r);
	p->host = get_u32(r);
	p->alive = get_bool(r);
	p->load_ppm = get_ppm(r, 0);
	p->weight_ppm = get_ppm(r, 0);
	p->rate_milli = get_u32(r);
	p->ramp_ppm = get_ppm(r, 0);
	p->flags = get_u8(r);
	p->reason = get_u8(r);
	if (!r->err && p->reason >= FLARE_DEATH_N)
		r->err = "unknown death reason";
	if (!r->err && p->flags & ~FLARE_REP_DRAINED)
		r->err = "unknown replica flags";
	/* range of the failover indexes is checked against the service by the
	 * table builder, which knows it */
	get_order(r, &p->n_failover, p->failover, FLARE_MAX_REPLICAS);
}

int fw_encode_rank(struct fw_buf *b, const struct fw_rank *m)
{
	size_t s = frame_begin(b, FW_RANK);
	put_u8(b, m->full);
	put_u64(b, m->gen);
	put_u32(b, m->n_hosts);
	for (uint32_t i = 0; i < m->n_hosts; i++)
		enc_rank_host(b, &m->hosts[i]);
	put_u32(b, m->n_services);
	for (uint32_t i = 0; i < m->n_services; i++)
		enc_rank_service(b, &m->services[i]);
	put_u32(b, m->n_replicas);
	for (uint32_t i = 0; i < m->n_replicas; i++)
		enc_rank_replica(b, &m->replicas[i]);
	put_u8(b, m->has_moves);
	if (m->has_moves) {
		put_u32(b, m->n_moves);
		for (uint32_t i = 0; i < m->n_moves; i++) {
			put_addr(b, &m->moves[i].client);
			put_u32(b, m->moves[i].from);
			put_u32(b, m->moves[i].to);
		}
	}
	return frame_end(b, s);
}

static void dec_rank(struct rd *r, struct fw_rank *m)
{
	uint32_t n;
	m->full = get_bool(r);
	m->gen = get_u64(r);
	n = get_u32(r);
	m->hosts = get_array(r, n, 12, sizeof(*m->hosts));
	for (uint32_t i = 0; i < n && !r->err; i++, m->n_hosts++)
		dec_rank_host(r, &m->hosts[i]);
	n = get_u32(r);
	m->services = get_array(r, n, 40, sizeof(*m->services));
	for (uint32_t i = 0; i < n && !r->err; i++, m->n_services++)
		dec_rank_service(r, &m->services[i]);
	n = get_u32(r);
	m->replicas = get_array(r, n, 35, sizeof(*m->replicas));
	for (uint32_t i = 0; i < n && !r->err; i++, m->n_replicas++)
		dec_rank_replica(r, &m->replicas[i]);
	m->has_moves = get_bool(r);
	if (!m->has_moves || r->err)
		return;
	n = get_u32(r);
	if (!r->err && n > FLARE_MAX_MOVES)
		r->err = "too many moves";
	m->moves = get_array(r, n, 15, sizeof(*m->moves));
	for (uint32_t i = 0; i < n && !r->err; i++, m->n_moves++) {
		get_addr(r, &m->moves[i].client);
		m->moves[i].from = get_u32(r);
		m->moves[i].to = get_u32(r);
	}
}

int fw_encode_text(struct fw_buf *b, uint8_t type, const struct fw_text *m)
{
	size_t s = frame_begin(b, type);
	uint32_t n = m->text ? (uint32_t)strnlen(m->text, FW_MAX_TEXT) : 0;
	put_u8(b, m->format);
	put_u32(b, n);
	put_bytes(b, m->text, n);
	return frame_end(b, s);
}

static void dec_text(struct rd *r, struct fw_text *m)
{
	m->format = get_u8(r);
	m->len = get_u32(r);
	if (!need(r, m->len))
		return;
	if (m->len > FW_MAX_TEXT) {
		r->err = "text too long";
		return;
	}
	m->text = malloc((size_t)m->len + 1);
	if (!m->text) {
		r->err = "out of memory";
		return;
	}
	memcpy(m->text, r->p + r->off, m->len);
	m->text[m->len] = '\0';
	r->off += m->len;
}

int fw_encode_query(struct fw_buf *b, uint8_t type, const struct fw_query *m)
{
	size_t s = frame_begin(b, type);
	uint8_t n = m->n_addrs > FLARE_MAX_REPLICAS ? FLARE_MAX_REPLICAS : m->n_addrs;
	put_addr(b, &m->service);
	put_addr(b, &m->failed);
	put_u8(b, n);
	for (uint8_t i = 0; i < n; i++)
		put_addr(b, &m->addrs[i]);
	return frame_end(b, s);
}

static void dec_query(struct rd *r, struct fw_query *m)
{
	get_addr(r, &m->service);
	get_addr(r, &m->failed);
	m->n_addrs = get_u8(r);
	if (!r->err && m->n_addrs > FLARE_MAX_REPLICAS) {
		r->err = "too many addresses in a query";
		m->n_addrs = 0;
		return;
	}
	for (uint8_t i = 0; i < m->n_addrs && !r->err; i++)
		get_addr(r, &m->addrs[i]);
}

int fw_encode(struct fw_buf *b, const struct fw_msg *m)
{
	switch (m->type) {
	case FW_HELLO: return fw_encode_hello(b, &m->u.hello);
	case FW_HEARTBEAT: return fw_encode_heartbeat(b, &m->u.heartbeat);
	case FW_REGISTER: return fw_encode_register(b, &m->u.reg);
	case FW_REPORT: return fw_encode_report(b, &m->u.report);
	case FW_RANK: return fw_encode_rank(b, &m->u.rank);
	case FW_STATUS_REQ:
	case FW_STATUS_RESP:
	case FW_COMMAND:
	case FW_ERROR: return fw_encode_text(b, m->type, &m->u.text);
	case FW_QUERY_REQ:
	case FW_QUERY_RESP: return fw_encode_query(b, m->type, &m->u.query);
	default: b->err = 1; return -1;
	}
}

long fw_frame_check(const uint8_t *buf, size_t len, struct fw_hdr *h, const char **why)
{
	const char *dummy;
	if (!why)
		why = &dummy;
	if (len >= 2 && (buf[0] != (FW_MAGIC >> 8) || buf[1] != (FW_MAGIC & 0xff))) {
		*why = "bad magic";
		return -1;
	}
	if (len >= 3 && buf[2] != FW_VERSION) {
		*why = "unsupported protocol version";
		return -1;
	}
	if (len >= 4 && (buf[3] == 0 || buf[3] > FW_TYPE_MAX)) {
		*why = "unknown frame type";
		return -1;
	}
	if (len < FW_HDR_LEN)
		return 0;
	h->version = buf[2];
	h->type = buf[3];
	h->len = (uint32_t)buf[4] << 24 | (uint32_t)buf[5] << 16 | (uint32_t)buf[6] << 8 | buf[7];
	if (h->len > FW_MAX_PAYLOAD) {
		*why = "frame larger than the protocol allows";
		return -1;
	}
	if (len < FW_HDR_LEN + (size_t)h->len)
		return 0;
	return (long)(FW_HDR_LEN + h->len);
}

int fw_decode(uint8_t type, const uint8_t *payload, size_t len, struct fw_msg *out,
	      const char **why)
{
	struct rd r = {.p = payload, .len = len};
	const char *dummy;
	if (!why)
		why = &dummy;
	memset(out, 0, sizeof(*out));
	out->type = type;
	switch (type) {
	case FW_HELLO: dec_hello(&r, &out->u.hello); break;
	case FW_HEARTBEAT: dec_heartbeat(&r, &out->u.heartbeat); break;
	case FW_REGISTER: dec_register(&r, &out->u.reg); break;
	case FW_REPORT: dec_report(&r, &out->u.report); break;
	case FW_RANK: dec_rank(&r, &out->u.rank); break;
	case FW_STATUS_REQ:
	case FW_STATUS_RESP:
	case FW_COMMAND:
	case FW_ERROR: dec_text(&r, &out->u.text); break;
	case FW_QUERY_REQ:
	case FW_QUERY_RESP: dec_query(&r, &out->u.query); break;
	case FW_AUTH:
	case FW_SEALED: r.err = "an authentication frame where none belongs"; break;
	default: r.err = "unknown frame type";
	}
	if (!r.err && r.off != r.len)
		r.err = "trailing bytes after the message";
	if (r.err) {
		*why = r.err;
		return -1;
	}
	return 0;
}

void fw_msg_free(struct fw_msg *m)
{
	switch (m->type) {
	case FW_REPORT:
		free(m->u.report.replicas);
		free(m->u.report.conns);
		break;
	case FW_RANK:
		free(m->u.rank.hosts);
		free(m->u.rank.services);
		free(m->u.rank.replicas);
		free(m->u.rank.moves);
		break;
	case FW_STATUS_REQ:
	case FW_STATUS_RESP:
	case FW_COMMAND:
	case FW_ERROR: free(m->u.text.text); break;
	default: break;
	}
	memset(m, 0, sizeof(*m));
}

const char *fw_type_name(int type)
{
	static const char *const names[] = {
	    "?",           "hello",     "heartbeat",  "register", "report", "rank",   "status-req",
	    "status-resp", "query-req", "query-resp", "error",    "auth",   "sealed", "command"};
	return type > 0 && type <= FW_TYPE_MAX ? names[type] : "?";
}
