/* Framed exchanges: a connection whose protocol has a framer (frame.h)
 * knows where each request and reply ends. buf[head, len) holds every
 * request written whose reply the program has not read whole (a pipeline,
 * in order), q_* where each ends and what it is. A heal replays them all,
 * after the session log (session.c), and never while a reply is half
 * read: what the program has is never delivered twice or spliced. At a
 * reply boundary with nothing outstanding, a failure is healed too (the
 * next request goes to a live replica), unless the server said it closes.
 * Everything here runs under the connection's lock. */
#include "clock.h"
#include "flare.h"
#include "log.h"

#include "conn/conn.h"
#include "frame/frame.h"
#include "frame/framed.h"

#include <stdlib.h>
#include <string.h>

/* the i-th oldest unanswered request's slot */
static inline int q_at(const struct fconn *fc, int i)
{
	return (fc->fr.q_first + i) & (FLARE_MAX_PIPELINE - 1);
}

void framed_start(struct fconn *fc, int proto)
{
	fr_req_init(&fc->fr.frq, proto);
	fr_rep_init(&fc->fr.frp, proto);
	fc->fr.head = fc->ex.len = 0;
	fc->fr.q_n = fc->fr.q_first = 0;
	__atomic_store_n(&fc->fr.proto, (uint8_t)proto, __ATOMIC_RELEASE);
	trust_event(fc, TE_FRAMED);
}

/* The framer met what it does not know: the connection is opaque from
 * here, and nothing written so far can be replayed (boundaries lost). */
static void lose_framing(struct fconn *fc, const char *why)
{
	log_debug("framing %s ends (%s): opaque from here", flare_protocol_name(fc->fr.proto), why);
	__atomic_store_n(&fc->fr.proto, PROTO_OPAQUE, __ATOMIC_RELEASE);
	fc->ex.len = fc->fr.head = 0;
	fc->fr.q_n = fc->fr.q_first = 0;
	trust_event(fc, TE_FRAMING_LOST);
	exchange_set(fc, FX_OVERSIZE); /* no heal until a reply byte (exchange.c) */
}

/* Everything written was answered and framing is at a boundary: buf can
 * start over, an overflow is forgotten. */
static void settle(struct fconn *fc, int read)
{
	int busy = fc->fr.q_n > 0 || fc->fr.frq.st != 0;
	if (!busy) {
		fc->fr.overflow = 0;
		fc->ex.len = fc->fr.head = 0;
	}
	int from = __atomic_load_n(&fc->ex.state, __ATOMIC_ACQUIRE);
	int to = busy ? FX_REQUEST : read || from != FX_FRESH ? FX_ANSWERED : FX_FRESH;
	if (to != from)
		exchange_set(fc, to);
}

/* Old answered bytes out of the way, when no replay reads buf. */
static void compact(struct fconn *fc, size_t incoming)
{
	if (!fc->fr.head || fconn_state(fc) != FC_READY ||
	    (fc->fr.head < fc->ex.len && (uint64_t)fc->ex.len + incoming <= fc->cap))
		return;
	memmove(fc->buf, fc->buf + fc->fr.head, fc->ex.len - fc->fr.head);
	for (int i = 0; i < fc->fr.q_n; i++)
		fc->fr.q_end[q_at(fc, i)] -= fc->fr.head;
	fc->ex.len -= fc->fr.head;
	fc->fr.head = 0;
}

/* A request ended at buf offset end (meaningless while overflowing). */
static inline __attribute__((always_inline)) void request_ended(struct fconn *fc, uint32_t end,
								uint16_t flags)
{
	if (__builtin_expect(flags != 0, 0)) { /* GET, SET...: none */
		if (flags & RQ_ENDS)
			fc->fr.framing_over = 1;
		if (flags & RQ_TXN_BEGIN)
			fc->fr.in_txn = 1;
		if (flags & RQ_NOREPLY) {
			if (!fc->fr.q_n && !fc->fr.overflow)
				fc->fr.head = end; /* nothing answers it: it is done */
			return;
		}
	}
	if (fc->fr.q_n == FLARE_MAX_PIPELINE) {
		fc->fr.framing_over = 1; /* deeper than we track: no more heals here */
		return;
	}
	int at = q_at(fc, fc->fr.q_n++);
	fc->fr.q_end[at] = end;
	fc->fr.q_flags[at] = flags;
}

void framed_wrote(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n)
{
	compact(fc, n);
	for (int i = 0; i < iovcnt && n && fconn_framed(fc); i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
		n -= k;
		uint32_t base = fc->ex.len;
		if (!fc->fr.overflow && (uint64_t)fc->ex.len + k <= fc->cap) {
			memcpy(fc->buf + fc->ex.len, p, k);
			fc->ex.len += (uint32_t)k;
		} else {
			fc->fr.overflow = 1;
		}
		for (size_t off = 0; off < k;) {
			if (fc->fr.proto == PROTO_REDIS && fr_req_idle(&fc->fr.frq)) {
				/* a pipeline's requests, many a call */
				size_t ends[16];
				uint16_t fl[16];
				int m = fr_redis_req_whole(p + off, k - off, ends, fl, 16);
				for (int j = 0; j < m; j++)
					request_ended(fc, base + (uint32_t)(off + ends[j]), fl[j]);
				if (m) {
					off += ends[m - 1];
					continue;
				}
			}
			int ended;
			uint16_t flags;
			long used = fr_req_step(&fc->fr.frq, p + off, k - off, &ended, &flags);
			if (used < 0) {
				lose_framing(fc, "a request it cannot read");
				return;
			}
			off += (size_t)used;
			if (ended)
				request_ended(fc, base + (uint32_t)off, flags);
		}
	}
	settle(fc, 0);
}

/* A session command's reply ended: the command and the reply go into the
 * session log, to be replayed and checked on a new connection. */
static void session_keep(struct fconn *fc, uint32_t req_end, uint32_t rep_len, int error)
{
	uint32_t req = req_end - fc->fr.head;
	uint32_t need = 2 + req + 1 + 2 + fc->fr.sess_rep_len;
	if (error)
		return; /* it changed nothing */
	if (fc->fr.overflow || req > 0xffff) {
		fc->fr.sess_broken = 1;
		return;
	}
	if (!fc->sess)
		fc->sess = malloc(FLARE_SESSION_LOG);
	if (!fc->sess || fc->fr.sess_len + need > FLARE_SESSION_LOG) {
		fc->fr.sess_broken = 1;
		return;
	}
	uint8_t *o = fc->sess + fc->fr.sess_len;
	int whole = rep_len <= FLARE_SESSION_REPLY; /* the reply was kept whole */
	o[0] = (uint8_t)(req >> 8);
	o[1] = (uint8_t)req;
	memcpy(o + 2, fc->buf + fc->fr.head, req);
	o += 2 + req;
	o[0] = (uint8_t)whole;
	o[1] = (uint8_t)(fc->fr.sess_rep_len >> 8);
	o[2] = (uint8_t)fc->fr.sess_rep_len;
	memcpy(o + 3, fc->fr.sess_rep, fc->fr.sess_rep_len);
	fc->fr.sess_len += need;
}

/* The m oldest requests are answered: buf can drop them. */
static void dequeue(struct fconn *fc, int m)
{
	if (!fc->fr.overflow)
		fc->fr.head = fc->fr.q_end[q_at(fc, m - 1)];
	fc->fr.q_n -= m;
	fc->fr.q_first = q_at(fc, m);
}

/* The oldest request's reply is whole. */
static void reply_ended(struct fconn *fc, uint32_t rep_len, uint8_t rflags)
{
	int at = fc->fr.q_first;
	uint16_t f = fc->fr.q_flags[at];
	if (__builtin_expect(
		(rflags & (RP_ENDS | RP_CLOSE)) || (f & (RQ_SESSION | RQ_RESET | RQ_TXN_END)), 0)) {
		if (rflags & RP_ENDS)
			fc->fr.framing_over = 1;
		if (rflags & RP_CLOSE)
			fc->fr.server_closes = 1;
		if (f & RQ_SESSION)
			session_keep(fc, fc->fr.q_end[at], rep_len, rflags & RP_ERROR);
		if (f & RQ_RESET) {
			fc->fr.sess_len = 0;
			fc->fr.sess_broken = 0;
		}
		if (f & RQ_TXN_END)
			fc->fr.in_txn = 0;
		fc->fr.sess_rep_len = 0;
	}
	dequeue(fc, 1);
}

/* A session command's reply bytes, kept (the first FLARE_SESSION_REPLY)
 * to be checked against the replayed command's. */
static void session_reply(struct fconn *fc, const uint8_t *p, size_t n)
{
	size_t room = FLARE_SESSION_REPLY - fc->fr.sess_rep_len;
	size_t c = n < room ? n : room;
	memcpy(fc->fr.sess_rep + fc->fr.sess_rep_len, p, c);
	fc->fr.sess_rep_len += (uint32_t)c;
}

void framed_read(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n)
{
	int replies = 0;
	for (int i = 0; i < iovcnt && n && fconn_framed(fc) && !fc->fr.framing_over; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
		n -= k;
		for (size_t off = 0; off < k && !fc->fr.framing_over;) {
			if (fc->fr.proto == PROTO_REDIS && fc->fr.q_n && !fc->fr.rep_read &&
			    fr_rep_idle(&fc->fr.frp)) {
				/* a pipeline's replies, many a call */
				size_t ends[16];
				uint8_t fl[16];
				int m = fr_redis_rep_whole(p + off, k - off, ends, fl,
							   fc->fr.q_n < 16 ? fc->fr.q_n : 16);
				unsigned any = 0;
				for (int j = 0; j < m; j++)
					any |= fl[j] | fc->fr.q_flags[q_at(fc, j)];
				if (m && !any)
					dequeue(fc, m); /* plain replies to plain commands */
				for (int j = 0; j < m && any; j++) {
					size_t from = j ? ends[j - 1] : 0;
					if (fc->fr.q_flags[fc->fr.q_first] & RQ_SESSION)
						session_reply(fc, p + off + from, ends[j] - from);
					reply_ended(fc, (uint32_t)(ends[j] - from), fl[j]);
				}
				replies += m;
				if (m) {
					off += ends[m - 1];
					continue;
				}
			}
			int ended;
			uint8_t flags;
			uint16_t rq = fc->fr.q_n ? fc->fr.q_flags[fc->fr.q_first] : 0;
			if (!fc->fr.rep_read)
				fc->fr.frp.rq = rq;
			long used = fr_rep_step(&fc->fr.frp, p + off, k - off, &ended, &flags);
			if (used < 0) {
				lose_framing(fc, "a reply it cannot read");
				return;
			}
			if (rq & RQ_SESSION)
				session_reply(fc, p + off, (size_t)used);
			off += (size_t)used;
			fc->fr.rep_read += (uint32_t)used;
			if (!ended)
				continue;
			uint32_t whole = fc->fr.rep_read;
			fc->fr.rep_read = 0;
			if (flags & RP_PUSH)
				continue; /* out of band, answers nothing */
			if (!fc->fr.q_n) {
				lose_framing(fc, "a reply nobody asked for");
				return;
			}
			reply_ended(fc, whole, flags);
			replies++;
		}
	}
	if (replies) {
		/* progress: the next failure may go to every replica again */
		__atomic_store_n(&fc->ex.replayed, 0, __ATOMIC_RELAXED);
		if (fc->fr.q_n && fc->svc.request_timeout_ms) /* the next reply's time starts */
			__atomic_store_n(&fc->ex.req_start_ms, flare_monotonic_ms(),
					 __ATOMIC_RELAXED);
	}
	if (fconn_framed(fc))
		settle(fc, 1);
}

int framed_healable(struct fconn *fc)
{
	if (fc->fr.framing_over || fc->fr.in_txn || fc->fr.rep_read || fc->fr.overflow ||
	    fc->fr.sess_broken)
		return 0;
	for (int i = 0; i < fc->fr.q_n && !fc->svc.unsafe_ok; i++)
		if (fc->fr.q_flags[q_at(fc, i)] & RQ_UNSAFE)
			return 0;
	int busy = fc->fr.q_n > 0 || fc->fr.frq.st != 0;
	if (!busy && (fc->fr.server_closes || __atomic_load_n(&fc->ex.shut_wr, __ATOMIC_ACQUIRE)))
		return 0; /* the close it announced, or the answer to the program's own FIN */
	if (busy && fc->svc.replay == FLARE_REPLAY_NONE)
		return 0;
	return 1;
}
