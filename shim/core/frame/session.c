/* The session log of a framed connection (framed.c keeps it): the
 * commands that set per-connection state (Redis SELECT, AUTH, HELLO,
 * CLIENT SETNAME, READONLY...) with the replies the program got. A heal
 * replays them in order on the new connection before anything else and
 * reads their replies itself: a reply kept whole must come back the same,
 * a longer one (HELLO's map names this connection) of the same type and
 * not an error. Any difference, and the new connection is not used. A
 * blocking heal does it at once (session_replay); an asynchronous one a
 * step at a time from the program's calls and waits, never blocking
 * (session_async_step). */
#include "clock.h"
#include "lock.h"
#include "log.h"
#include "real.h"

#include "conn/conn.h"
#include "conn/proof.h"
#include "frame/frame.h"
#include "frame/session.h"
#include "heal/heal.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

int session_pending(struct fconn *fc)
{
	flare_lock(&fc->lock);
	int n = fc->fr.sess_len > 0;
	flare_unlock(&fc->lock);
	return n;
}

static int wait_readable(int fd, int64_t end)
{
	int64_t left = end - (int64_t)flare_monotonic_ms();
	if (left <= 0)
		return -1;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return real.poll(&p, 1, (int)left) == 1 ? 0 : -1;
}

int session_reply_feed(struct fr_rep *f, const uint8_t *p, size_t n, uint8_t *got,
		       uint32_t *got_len, uint8_t *rflags)
{
	for (size_t off = 0; off < n;) {
		int ended;
		long used = fr_rep_step(f, p + off, n - off, &ended, rflags);
		if (used < 0)
			return -1;
		size_t room = FLARE_SESSION_REPLY - *got_len;
		size_t c = (size_t)used < room ? (size_t)used : room;
		memcpy(got + *got_len, p + off, c);
		*got_len += (uint32_t)c;
		off += (size_t)used;
		if (ended && !(*rflags & RP_PUSH))
			return off == n ? 1
					: -1; /* nothing may follow it: nothing else was asked */
	}
	return 0;
}

/* Reads one reply, keeping its first bytes; -1 on anything but exactly
 * one whole reply in time. */
static int read_reply(int fd, int proto, uint8_t *kept, uint32_t *kept_len, uint8_t *rflags,
		      int64_t end)
{
	struct fr_rep f;
	uint8_t tmp[512];
	fr_rep_init(&f, proto);
	*kept_len = 0;
	for (;;) {
		ssize_t r = real.recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (r == 0)
			return -1;
		if (r < 0) {
			if ((errno != EAGAIN && errno != EINTR) || wait_readable(fd, end) < 0)
				return -1;
			continue;
		}
		int k = session_reply_feed(&f, tmp, (size_t)r, kept, kept_len, rflags);
		if (k)
			return k > 0 ? 0 : -1;
	}
}

void session_entry_at(const uint8_t *log, uint32_t off, struct sess_entry *e)
{
	e->req = (uint32_t)log[off] << 8 | log[off + 1];
	e->cmd = log + off + 2;
	e->whole = log[off + 2 + e->req];
	e->rep_len = (uint32_t)log[off + 3 + e->req] << 8 | log[off + 4 + e->req];
	e->rep = log + off + 5 + e->req;
	e->next = off + 5 + e->req + e->rep_len;
}

/* A reply kept whole must come back the same; a longer one of the same
 * type and not an error. */
int session_same_reply(const struct sess_entry *e, const uint8_t *got, uint32_t got_len,
		       uint8_t rflags, const char *replica)
{
	int same = e->whole ? got_len == e->rep_len && memcmp(got, e->rep, e->rep_len) == 0
			    : got_len && e->rep_len && got[0] == e->rep[0] && !(rflags & RP_ERROR);
	if (!same)
		log_warn("session replay to %s: the reply differs from the original "
			 "connection's (%.*s): not used",
			 replica, (int)(got_len < 40 ? got_len : 40), (const char *)got);
	return same;
}

void session_async_start(struct fconn *fc)
{
	fc->mv.sess_at = fc->mv.sess_sent = fc->mv.sess_got_len = 0;
	fc->mv.sess_step = session_pending(fc) ? 1 : 0;
}

int session_async_step(struct fconn *fc, int fd)
{
	/* the log only grows from the program's reads, which wait while the
	 * connection is pending: it is stable here */
	const uint8_t *log = fc->sess;
	uint32_t n = fc->fr.sess_len;
	while (fc->mv.sess_step && fc->mv.sess_at < n) {
		struct sess_entry e;
		session_entry_at(log, fc->mv.sess_at, &e);
		if (fc->mv.sess_step == 1) {
			ssize_t w =
			    real.send(fd, e.cmd + fc->mv.sess_sent, e.req - fc->mv.sess_sent,
				      MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && (errno == EAGAIN || errno == EINTR))
				return 1;
			if (w <= 0)
				return -1;
			sock_count(&fc->pf.lib_wr, w);
			if ((fc->mv.sess_sent += (uint32_t)w) < e.req)
				continue;
			fc->mv.sess_step = 2;
			fc->mv.sess_got_len = 0;
			fr_rep_init(&fc->mv.sess_frp, fc->fr.proto);
		}
		uint8_t tmp[512], rflags = 0;
		ssize_t r = real.recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return 1;
		if (r <= 0)
			return -1;
		sock_count(&fc->pf.lib_rd, r);
		int k = session_reply_feed(&fc->mv.sess_frp, tmp, (size_t)r, fc->mv.sess_got,
					   &fc->mv.sess_got_len, &rflags);
		if (k < 0 || (k > 0 && !session_same_reply(&e, fc->mv.sess_got, fc->mv.sess_got_len,
							   rflags, "a replica")))
			return -1;
		if (k > 0) {
			fc->mv.sess_at = e.next;
			fc->mv.sess_step = 1;
			fc->mv.sess_sent = 0;
		}
	}
	fc->mv.sess_step = 0;
	return 0;
}

int session_replay(struct fconn *fc, int fd, int timeout_ms, const char *replica)
{
	uint8_t log[FLARE_SESSION_LOG];
	flare_lock(&fc->lock);
	uint32_t n = fc->fr.sess_len;
	int proto = fc->fr.proto;
	if (n)
		memcpy(log, fc->sess, n);
	flare_unlock(&fc->lock);
	int64_t end = (int64_t)flare_monotonic_ms() + timeout_ms;
	for (uint32_t off = 0; off < n;) {
		struct sess_entry e;
		session_entry_at(log, off, &e);
		uint8_t got[FLARE_SESSION_REPLY], rflags = 0;
		uint32_t got_len;
		off = e.next;
		int left = (int)(end - (int64_t)flare_monotonic_ms());
		if (left <= 0 || send_all(fd, e.cmd, e.req, left) < 0 ||
		    read_reply(fd, proto, got, &got_len, &rflags, end) < 0) {
			log_warn("session replay to %s: no reply in time", replica);
			return -1;
		}
		if (!session_same_reply(&e, got, got_len, rflags, replica))
			return -1;
	}
	return 0;
}
