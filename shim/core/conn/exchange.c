/* The exchange state machine (conn.h): what the program has written and
 * read on a connection since its last request began, and so whether a
 * failure may be healed. A request is "outstanding" from its first byte
 * written until the first byte of its reply is read; only then may it be
 * replayed on another replica. No system calls here but the clock (when a
 * request began, for request_timeout_ms). */
#include "clock.h"
#include "core.h"
#include "flare.h"
#include "lock.h"

#include "conn/conn.h"
#include "frame/frame.h"
#include "frame/framed.h"

#include <string.h>

int flare_n_outstanding;

static int xchg_load(const struct fconn *fc)
{
	return __atomic_load_n(&fc->ex.state, __ATOMIC_ACQUIRE);
}

static int is_outstanding(int x) { return x == FX_REQUEST || x == FX_OVERSIZE; }

/* Every move of fc->ex.state goes through here once it happened: the count of
 * connections waiting for a reply, which slices the readiness waits. */
static void moved(int from, int to)
{
	int d = is_outstanding(to) - is_outstanding(from);
	if (!d)
		return;
	if (flare_threaded())
		__atomic_add_fetch(&flare_n_outstanding, d, __ATOMIC_RELEASE);
	else
		__atomic_store_n(&flare_n_outstanding,
				 __atomic_load_n(&flare_n_outstanding, __ATOMIC_RELAXED) + d,
				 __ATOMIC_RELAXED);
}

/* fc->ex.state moved from -> to: the count, and a new request's start time */
static void entered(struct fconn *fc, int from, int to)
{
	moved(from, to);
	if (fc->svc.request_timeout_ms && is_outstanding(to) && !is_outstanding(from))
		__atomic_store_n(&fc->ex.req_start_ms, flare_monotonic_ms(), __ATOMIC_RELAXED);
}

void exchange_set(struct fconn *fc, int to)
{
	int from;
	if (flare_threaded()) {
		from = __atomic_exchange_n(&fc->ex.state, to, __ATOMIC_ACQ_REL);
	} else {
		from = xchg_load(fc);
		__atomic_store_n(&fc->ex.state, to, __ATOMIC_RELEASE);
	}
	entered(fc, from, to);
}

void exchange_retire(struct fconn *fc)
{
	moved(__atomic_exchange_n(&fc->ex.state, FX_FRESH, __ATOMIC_ACQ_REL), FX_FRESH);
}

void exchange_reset(struct fconn *fc)
{
	fc->ex.len = 0;
	__atomic_store_n(&fc->ex.replayed, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fc->ex.trust, TR_FIRST, __ATOMIC_RELAXED);
	fc->ex.n_req = fc->ex.heal_req = 0;
	fc->ex.heal_answered = 0;
	fc->ex.heal_ms = fc->ex.dead_seen_ms = 0;
	exchange_retire(fc);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int exchange_session_proto(const uint8_t *p, size_t n)
{
	/* PostgreSQL's first packet: a length, then the protocol version 3.0,
	 * or the SSLRequest, GSSENCRequest or CancelRequest code */
	if (n >= 8) {
		uint32_t len = be32(p), code = be32(p + 4);
		if (len >= 8 && len <= 10000 &&
		    (code == 196608u || code == 80877103u || code == 80877104u ||
		     code == 80877102u))
			return SESSION_POSTGRES;
	}
	/* a TLS handshake record (SSL 3.0 to TLS 1.3 all say 3.x) */
	if (n >= 3 && p[0] == 0x16 && p[1] == 3 && p[2] <= 4)
		return SESSION_TLS;
	if (n >= 4 && memcmp(p, "SSH-", 4) == 0)
		return SESSION_SSH;
	if (n >= 8 && memcmp(p, "PRI * HT", 8) == 0) /* the HTTP/2 preface */
		return SESSION_HTTP2;
	if (n >= 4 && memcmp(p, "AMQP", 4) == 0)
		return SESSION_AMQP;
	return SESSION_NONE;
}

void exchange_wrote_buf(struct fconn *fc, const void *data, size_t n)
{
	struct iovec iov = {(void *)data, n};
	exchange_wrote(fc, &iov, 1, n);
}

/* The request path's lock: none in a program without threads
 * (flare_threaded). Returns whether it was taken, for request_unlock. */
static int request_lock(struct fconn *fc)
{
	int locked = flare_threaded();
	if (locked)
		flare_lock(&fc->lock);
	return locked;
}

static void request_unlock(struct fconn *fc, int locked)
{
	if (locked)
		flare_unlock(&fc->lock);
}

/* The connection's very first bytes: a session protocol's (whatever
 * framer the service configured: its bytes are not that protocol's; a
 * TLS session is known for what it is, tls_link.c), or what a framer
 * reads (with the service's protocol "auto"). [lock] */
static void first_bytes(struct fconn *fc, const struct iovec *iov, size_t n)
{
	const uint8_t *p = iov[0].iov_base;
	size_t k = iov[0].iov_len < n ? iov[0].iov_len : n;
	fc->ex.sess_proto = (uint8_t)exchange_session_proto(p, k);
	if (fc->ex.sess_proto != SESSION_NONE) {
		if (fconn_framed(fc)) {
			fc->fr.head = fc->ex.len = 0;
			fc->fr.q_n = fc->fr.q_first = 0;
		}
		if (fc->fr.proto != PROTO_OPAQUE)
			__atomic_store_n(&fc->fr.proto, PROTO_OPAQUE, __ATOMIC_RELEASE);
		trust_event(fc, TE_SESSION_PROTO);
		return;
	}
	if (fc->fr.proto != PROTO_AUTO || fconn_trust(fc) != TR_FIRST)
		return;
	int proto = fr_detect(p, k);
	if (proto == PROTO_OPAQUE)
		__atomic_store_n(&fc->fr.proto, PROTO_OPAQUE, __ATOMIC_RELEASE);
	else
		framed_start(fc, proto);
}

void exchange_wrote(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n)
{
	int locked = request_lock(fc);
	int from = xchg_load(fc), to = from;
	if (n && from != FX_REQUEST) {
		if (from == FX_FRESH && iovcnt > 0 && !fc->ex.n_req)
			first_bytes(fc, iov, n);
		fc->ex.n_req++; /* a request begins (dead_req, heal_req read it) */
	}
	if (fconn_framed(fc)) {
		framed_wrote(fc, iov, iovcnt, n);
		request_unlock(fc, locked);
		return;
	}
	if (from == FX_ANSWERED) {
		fc->ex.len = 0; /* the first byte written after a reply starts a new request */
		if (n)
			to = FX_REQUEST;
	} else if (from == FX_FRESH && n) {
		to = FX_REQUEST;
	}
	if (to == FX_REQUEST && (uint64_t)fc->ex.len + n > fc->cap) {
		to = FX_OVERSIZE; /* too big to replay: a failure now surfaces */
		fc->ex.len = 0;
	}
	for (int i = 0; i < iovcnt && n && to == FX_REQUEST; i++) {
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
		memcpy(fc->buf + fc->ex.len, iov[i].iov_base, k);
		fc->ex.len += (uint32_t)k;
		n -= k;
	}
	/* a reader thread may have seen reply bytes meanwhile: it wins */
	if (to != from && __atomic_compare_exchange_n(&fc->ex.state, &from, to, 0, __ATOMIC_ACQ_REL,
						      __ATOMIC_ACQUIRE))
		entered(fc, from, to);
	request_unlock(fc, locked);
}

void exchange_write_failed(struct fconn *fc)
{
	if (fconn_framed(fc))
		return; /* framed: nothing of it was taken as written */
	flare_lock(&fc->lock);
	int from = xchg_load(fc);
	if (from == FX_ANSWERED) {
		fc->ex.len = 0;
		__atomic_compare_exchange_n(&fc->ex.state, &from, FX_FRESH, 0, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE);
	}
	flare_unlock(&fc->lock);
}

void exchange_read(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n)
{
	if (__builtin_expect(fc->ex.heal_ms && !fc->ex.heal_answered, 0))
		__atomic_store_n(&fc->ex.heal_answered, 1, __ATOMIC_RELAXED);
	/* the server's first byte: the connection is what it is from here */
	if (__builtin_expect(fconn_trust(fc) <= TR_FIRST_SESSION, 0))
		trust_event(fc,
			    xchg_load(fc) == FX_FRESH && !fc->ex.n_req ? TE_SERVER_FIRST : TE_READ);
	if (fconn_framed(fc)) {
		if (!iov)
			return;
		int locked = request_lock(fc);
		framed_read(fc, iov, iovcnt, n);
		request_unlock(fc, locked);
		return;
	}
	int from = xchg_load(fc);
	if (from == FX_ANSWERED)
		return;
	/* progress: the next failure may go to every replica again */
	__atomic_store_n(&fc->ex.replayed, 0, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&fc->ex.state, &from, FX_ANSWERED, 0, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE))
		if (from == FX_ANSWERED)
			return;
	entered(fc, from, FX_ANSWERED);
}

int exchange_outstanding(const struct fconn *fc)
{
	int x = xchg_load(fc);
	return x == FX_REQUEST || x == FX_OVERSIZE;
}

int exchange_healable(struct fconn *fc)
{
	int trust = fconn_trust(fc);
	if (trust == TR_FRAMED && fconn_framed(fc)) {
		flare_lock(&fc->lock);
		int ok = framed_healable(fc);
		flare_unlock(&fc->lock);
		return ok;
	}
	switch (trust) {
	case TR_FIRST:
	case TR_FIRST_SESSION:
	case TR_STATELESS: break;
	default: return 0; /* a session, a tainted or broken connection */
	}
	switch (xchg_load(fc)) {
	case FX_FRESH: return 1;
	case FX_REQUEST: return fc->svc.replay != FLARE_REPLAY_NONE;
	default: return 0;
	}
}

int exchange_boundary(struct fconn *fc, int sessionless)
{
	int trust = fconn_trust(fc);
	if (__atomic_load_n(&fc->ex.shut_wr, __ATOMIC_ACQUIRE))
		return 0;
	int x = xchg_load(fc);
	if (x == FX_REQUEST || x == FX_OVERSIZE)
		return 0;
	if (trust == TR_FIRST)
		return x == FX_FRESH; /* nothing exchanged yet */
	if (trust == TR_STATELESS)
		return 1;
	if (trust != TR_FRAMED || !fconn_framed(fc))
		return 0;
	flare_lock(&fc->lock);
	int ok = !fc->fr.framing_over && !fc->fr.in_txn && !fc->fr.rep_read && !fc->fr.overflow &&
		 !fc->fr.sess_broken && !fc->fr.server_closes && fc->fr.q_n == 0 &&
		 fc->fr.frq.st == 0 && (!sessionless || fc->fr.sess_len == 0);
	flare_unlock(&fc->lock);
	return ok;
}

uint32_t exchange_replay_len(struct fconn *fc)
{
	flare_lock(&fc->lock);
	uint32_t len = fconn_framed(fc) ? fc->ex.len : xchg_load(fc) == FX_REQUEST ? fc->ex.len : 0;
	flare_unlock(&fc->lock);
	return len;
}

uint32_t exchange_replay_from(struct fconn *fc)
{
	flare_lock(&fc->lock);
	uint32_t from = fconn_framed(fc) ? fc->fr.head : 0;
	flare_unlock(&fc->lock);
	return from;
}

void exchange_healed(struct fconn *fc)
{
	flare_lock(&fc->lock);
	fc->fr.server_closes = 0; /* a new connection, a new server */
	flare_unlock(&fc->lock);
}
