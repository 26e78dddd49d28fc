/* Healing a linked TLS session. The socket under it failed and OpenSSL
 * told the program's call so; when the plaintext exchange allows a heal
 * (the rules of a plaintext connection, framers and session log included),
 * the heal moves down the replicas: a new TCP connection put in place of
 * the program's descriptor (same number, flags and options, as a plaintext
 * heal), a new session made like the program's (tls_shadow.c) whose first
 * flight is made in memory and sent once the socket is connected, a full
 * handshake in which the replica must verify as the program's replica did
 * and present the very certificate the program accepted, then the session
 * log (each reply read and checked) and the outstanding requests. A
 * replica that fails any of it is not used. The program's SSL * then reads
 * and writes through the new session.
 *
 * OpenSSL is only called from the program's own calls on its SSL, where
 * its callbacks (verification, session caching, tracing) expect to run. A
 * blocking program's call does the whole heal, each wait bounded by the
 * service's connect timeout; a non-blocking one's returns WANT_READ or
 * WANT_WRITE while the heal goes on, and its readiness waits move what
 * needs no OpenSSL on (the connect, the first flight's bytes), so nothing
 * blocks in its event loop. */
#include "clock.h"
#include "core.h"
#include "flare.h"
#include "lock.h"
#include "log.h"
#include "real.h"
#include "table.h"
#include "usershm.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "dial/dial.h"
#include "frame/frame.h"
#include "frame/session.h"
#include "heal/heal.h"
#include "io/io.h"
#include "route/route.h"
#include "tls/tls.h"
#include "tls/tls_call.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const char *replica_name(const struct fconn *fc, int idx, struct flare_route *rt)
{
	if (route_read(fc->svc.index, rt) != FLARE_TBL_OK || (uint32_t)idx >= rt->svc.n_replicas)
		return "a replica";
	return rt->reps[idx].name;
}

/* The errors a heal's own sessions left must not reach the program's
 * queue: a blocking heal keeps the failure's own under a mark. */
static void errors_drop(struct tls_sess *t)
{
	if (t->blocking) {
		ossl.ERR_pop_to_mark();
		ossl.ERR_set_mark();
	} else {
		ossl.ERR_clear_error();
	}
}

static void heal_over(struct tls_sess *t, int to)
{
	t->step = to;
	__atomic_sub_fetch(&flare_tls_healing, 1, __ATOMIC_RELEASE);
}

static int give_up(struct tls_sess *t, struct fconn *fc)
{
	struct flare_route rt;
	const char *from = replica_name(fc, t->from_idx, &rt);
	log_warn("service %s: no replica could take over the TLS session from %s (%s)", rt.svc.name,
		 from, t->why);
	if (t->next) {
		tls_shadow_free(t, t->next, t->next_exdata);
		t->next = NULL;
	}
	COUNT(passed_errors, fc->svc.index, SS_PASSED_ERRORS, 1);
	heal_over(t, HS_FAILED);
	if (t->blocking) {
		/* the program's call returns what it would have without flare:
		 * the failure's own result, errno and errors */
		ossl.ERR_pop_to_mark();
		t->synth = t->orig_err;
		t->fail_errno = t->orig_errno;
	} else {
		t->synth = SSL_ERROR_SYSCALL;
		t->fail_errno = ECONNRESET;
	}
	return -1;
}

/* This replica is not used; the next one is tried. */
static void attempt_over(struct tls_sess *t, struct fconn *fc, const char *why)
{
	struct flare_route rt;
	log_warn("TLS heal: %s not used: %s", replica_name(fc, t->idx, &rt), why);
	if (t->next) {
		tls_shadow_free(t, t->next, t->next_exdata);
		t->next = NULL;
	}
	errors_drop(t);
	t->step = HS_DIAL;
}

/* The new session's first flight, made in memory: it needs no socket, so
 * the readiness waits can send it once the connect is done. */
static int first_flight(struct tls_sess *t, SSL *s)
{
	BIO *r = ossl.BIO_new(ossl.BIO_s_mem()), *w = ossl.BIO_new(ossl.BIO_s_mem());
	if (!r || !w) {
		if (r)
			ossl.BIO_free(r);
		if (w)
			ossl.BIO_free(w);
		return -1;
	}
	ossl.SSL_set_bio(s, r, w);
	int rc = ossl.SSL_connect(s);
	if (rc > 0 || ossl.SSL_get_error(s, rc) != SSL_ERROR_WANT_READ)
		return -1;
	int n = ossl.BIO_read(w, t->hello, TLS_HELLO_MAX);
	if (n <= 0 || ossl.BIO_ctrl(w, BIO_CTRL_PENDING, 0, NULL) > 0)
		return -1; /* none, or more than a first flight should be */
	t->hello_len = (uint32_t)n;
	t->hello_off = 0;
	return 0;
}

/* Dials the next candidate and puts it in place; 1 when an attempt is
 * under way, 0 when this candidate could not be dialed, -1 when no
 * candidate can be (give up). */
static int dial_next(struct tls_sess *t, struct fconn *fc)
{
	struct flare_route rt;
	if (route_read(fc->svc.index, &rt) != FLARE_TBL_OK)
		return -1;
	int idx = t->order[t->k++];
	int like = fconn_first_fd(fc), err = 0;
	if (like < 0 || (uint32_t)idx >= rt.svc.n_replicas)
		return -1;
	int nfd = t->blocking ? dial_replica(fc, like, &rt, idx, &err)
			      : dial_start(fc, like, &rt, idx, &err);
	if (nfd < 0) {
		log_debug("TLS heal: %s: %s", rt.reps[idx].name, strerror(err));
		return 0;
	}
	SSL *s = tls_shadow_new(t);
	if (!s || first_flight(t, s) < 0) {
		if (s) {
			log_warn("TLS heal: the new session's first flight cannot be made");
			tls_shadow_free(t, s, t->next_exdata);
		}
		real.close(nfd);
		return -1;
	}
	if (fconn_swap(fc, nfd) < 0) {
		tls_shadow_free(t, s, t->next_exdata);
		return -1;
	}
	int fd = fconn_first_fd(fc);
	BIO *sb = ossl.BIO_new_socket(fd, BIO_NOCLOSE);
	if (!sb) {
		tls_shadow_free(t, s, t->next_exdata);
		return -1;
	}
	ossl.SSL_set_bio(s, sb, sb);
	/* the new socket: its counts start with the session's BIO (the first
	 * flight goes around both) */
	__atomic_store_n(&fc->link.sock_rd, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fc->link.sock_wr, 0, __ATOMIC_RELAXED);
	proof_mark(fc, fd);
	__atomic_store_n(&fc->tls.sock_failed, 0, __ATOMIC_RELEASE);
	__atomic_add_fetch(&fc->gen, 1, __ATOMIC_ACQ_REL);
	fc->link.cur = t->idx = idx;
	__atomic_or_fetch(&fc->ex.replayed, 1u << idx, __ATOMIC_RELAXED);
	/* the replayed request's own time starts now (request_timeout_ms) */
	__atomic_store_n(&fc->ex.req_start_ms, flare_monotonic_ms(), __ATOMIC_RELAXED);
	t->next = s;
	t->deadline_ms = flare_monotonic_ms() + 2ull * fc->svc.connect_timeout_ms;
	t->step = err == EINPROGRESS ? HS_CONNECTING : HS_HELLO;
	return 1;
}

/* After a call on the new session returned r <= 0: 1 when OpenSSL waits
 * for the socket (t->synth says which way), -1 when the call failed. */
static int waits(struct tls_sess *t, int r)
{
	int err = ossl.SSL_get_error(t->next, r);
	if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
		return -1;
	t->synth = err;
	return 1;
}

/* The session log, replayed through the new session: each command sent,
 * its reply read and checked. 0 done, 1 under way, -1 it differs. */
static int answer_in_time(struct tls_sess *t, int fd);

static int session_step(struct tls_sess *t, struct fconn *fc, int fd)
{
	const uint8_t *log = fc->sess;
	while (t->sess_at < t->sess_len) {
		struct sess_entry e;
		session_entry_at(log, t->sess_at, &e);
		if (!t->sess_reading) {
			int w = ossl.SSL_write(t->next, e.cmd + t->sess_sent,
					       (int)(e.req - t->sess_sent));
			if (w <= 0)
				return waits(t, w);
			if ((t->sess_sent += (uint32_t)w) < e.req)
				continue;
			t->sess_reading = 1;
			t->sess_got_len = 0;
			fr_rep_init(&t->sess_frp, fc->fr.proto);
		}
		uint8_t tmp[512], rflags = 0;
		if (!answer_in_time(t, fd))
			return -1;
		int r = ossl.SSL_read(t->next, tmp, (int)sizeof(tmp));
		if (r <= 0)
			return waits(t, r);
		int k = session_reply_feed(&t->sess_frp, tmp, (size_t)r, t->sess_got,
					   &t->sess_got_len, &rflags);
		if (k < 0 || (k > 0 && !session_same_reply(&e, t->sess_got, t->sess_got_len, rflags,
							   "a replica")))
			return -1;
		if (k > 0) {
			t->sess_at = e.next;
			t->sess_reading = 0;
			t->sess_sent = 0;
		}
	}
	return 0;
}

/* The outstanding requests, resent: 0 done, 1 under way, -1 failed. */
static int replay_step(struct tls_sess *t, struct fconn *fc)
{
	while (t->off < t->len) {
		int w = ossl.SSL_write(t->next, fc->buf + t->off, (int)(t->len - t->off));
		if (w > 0) {
			t->off += (uint32_t)w;
			continue;
		}
		return waits(t, w);
	}
	return 0;
}

static void healed(struct tls_sess *t, struct fconn *fc)
{
	struct flare_route rt;
	const char *to = replica_name(fc, t->idx, &rt);
	char from[64];
	snprintf(from, sizeof(from), "%s", replica_name(fc, t->from_idx, &rt));
	SSL *old = t->cur;
	uint16_t old_ex = t->exdata_set;
	__atomic_store_n(&flare_tls_swapped, 1, __ATOMIC_RELEASE); /* before cur moves */
	t->cur = t->next;
	t->exdata_set = t->next_exdata;
	t->next = NULL;
	if (old != t->prog)
		tls_shadow_free(t, old, old_ex);
	fc->ex.heal_req = __atomic_load_n(&fc->ex.n_req, __ATOMIC_RELAXED);
	fc->ex.heal_ms = flare_monotonic_ms();
	__atomic_store_n(&fc->ex.heal_answered, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fc->tls.pipe_owed, 0, __ATOMIC_RELAXED);
	exchange_healed(fc);
	COUNT(failovers, fc->svc.index, SS_HEALS, 1);
	STAT_INC(tls_heals);
	if (!t->blocking)
		STAT_INC(heals_async);
	if (t->len > t->from) {
		COUNT(replays, fc->svc.index, SS_REPLAYS, 1);
		COUNT(replay_bytes, fc->svc.index, SS_REPLAY_BYTES, t->len - t->from);
	}
	if (t->blocking)
		ossl.ERR_pop_to_mark();
	ossl.ERR_clear_error(); /* the failure was healed: none of it is the program's */
	heal_over(t, HS_NONE);
	t->synth = 0;
	log_info("service %s: %s -> %s (%s), a new TLS session, %u request byte(s) replayed, in "
		 "%.0f us",
		 rt.svc.name, from, to, t->why, t->len - t->from,
		 (double)(flare_monotonic_ns() - t->t0_ns) / 1000.0);
}

static int past_deadline(const struct tls_sess *t)
{
	return flare_monotonic_ms() >= t->deadline_ms;
}

/* A blocking program's descriptor blocks: before OpenSSL reads the
 * replica's answer, wait for it within the attempt's deadline, so that a
 * replica that accepts and never answers costs the deadline, not a read
 * that never ends. 1 when there is something to read. */
static int answer_in_time(struct tls_sess *t, int fd)
{
	if (!t->blocking || ossl.SSL_has_pending(t->next))
		return 1;
	for (;;) {
		int64_t left = (int64_t)t->deadline_ms - (int64_t)flare_monotonic_ms();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (left <= 0)
			return 0;
		int r = real.poll(&p, 1, (int)left);
		if (r > 0)
			return 1;
		if (r == 0 || errno != EINTR)
			return 0;
	}
}

/* One pass of the heal's steps: 0 healed, 1 under way (t->synth says
 * what it waits for), -1 given up. in_prog: called from the program's own
 * call on its SSL (OpenSSL may be called), else from a readiness wait. */
static int step(struct tls_sess *t, int in_prog)
{
	struct fconn *fc = tls_conn(t);
	if (!fc) {
		heal_over(t, HS_FAILED); /* the connection was closed under the heal */
		t->synth = SSL_ERROR_SYSCALL;
		t->fail_errno = EBADF;
		return -1;
	}
	for (int guard = 0; guard < 4 * FLARE_MAX_REPLICAS + 8; guard++) {
		int fd = fconn_first_fd(fc);
		switch (t->step) {
		case HS_NONE: return 0;
		case HS_FAILED: return -1;
		case HS_DIAL: {
			if (!in_prog) {
				t->synth = SSL_ERROR_WANT_READ;
				return 1;
			}
			if (t->k >= t->n_order)
				return give_up(t, fc);
			int d = dial_next(t, fc);
			if (d < 0)
				return give_up(t, fc);
			continue;
		}
		case HS_CONNECTING: {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int err = 0;
			socklen_t l = sizeof(err);
			if (real.poll(&p, 1, 0) <= 0) {
				if (past_deadline(t)) {
					attempt_over(t, fc, "no connection in time");
					continue;
				}
				t->synth = SSL_ERROR_WANT_WRITE;
				return 1;
			}
			if (real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err) {
				attempt_over(t, fc, strerror(err));
				continue;
			}
			t->step = HS_HELLO;
			continue;
		}
		case HS_HELLO: {
			while (t->hello_off < t->hello_len) {
				ssize_t w = real.send(fd, t->hello + t->hello_off,
						      t->hello_len - t->hello_off,
						      MSG_NOSIGNAL | MSG_DONTWAIT);
				if (w > 0) {
					sock_count(&fc->pf.lib_wr, w);
					t->hello_off += (uint32_t)w;
				} else if (w < 0 && (errno == EAGAIN || errno == EINTR) &&
					   !past_deadline(t)) {
					t->synth = SSL_ERROR_WANT_WRITE;
					return 1;
				} else {
					break;
				}
			}
			if (t->hello_off < t->hello_len) {
				attempt_over(t, fc, "its connection failed");
				continue;
			}
			t->step = HS_HANDSHAKE;
			continue;
		}
		default: break;
		}
		/* the steps that call OpenSSL: the program's call only */
		if (!in_prog) {
			t->synth = SSL_ERROR_WANT_READ;
			return 1;
		}
		if (past_deadline(t)) {
			attempt_over(t, fc, "no answer in time");
			continue;
		}
		if (t->step == HS_HANDSHAKE) {
			if (!answer_in_time(t, fd)) {
				attempt_over(t, fc, "no handshake in time");
				continue;
			}
			int r = ossl.SSL_connect(t->next);
			if (r != 1) {
				if (waits(t, r) > 0)
					return 1;
				char why[200], reason[160] = "";
				long v = ossl.SSL_get_verify_result(t->next);
				if (v != X509_V_OK) {
					snprintf(reason, sizeof(reason), "%s",
						 ossl.X509_verify_cert_error_string(v));
					STAT_INC(tls_refused);
				} else if (ossl.ERR_peek_last_error()) {
					ossl.ERR_error_string_n(ossl.ERR_peek_last_error(), reason,
								sizeof(reason));
				} else {
					snprintf(reason, sizeof(reason), "the connection failed");
				}
				snprintf(why, sizeof(why), "its TLS handshake failed: %s", reason);
				attempt_over(t, fc, why);
				continue;
			}
			char why[200];
			if (tls_same_peer(t, t->next, why, sizeof(why)) < 0) {
				STAT_INC(tls_refused);
				attempt_over(t, fc, why);
				continue;
			}
			t->sess_at = t->sess_sent = t->sess_got_len = 0;
			t->sess_reading = 0;
			t->sess_len = fc->fr.sess_len;
			t->off = t->from;
			t->step = HS_SESSION;
		}
		if (t->step == HS_SESSION) {
			int r = session_step(t, fc, fd);
			if (r > 0)
				return 1;
			if (r < 0) {
				attempt_over(t, fc, "its session differs from the program's");
				continue;
			}
			t->step = HS_REPLAY;
		}
		if (t->step == HS_REPLAY) {
			int r = replay_step(t, fc);
			if (r > 0)
				return 1;
			if (r < 0) {
				attempt_over(t, fc, "the replay failed");
				continue;
			}
			healed(t, fc);
			return 0;
		}
	}
	return give_up(t, fc);
}

/* A blocking program's heal: the steps, with waits between them. Every
 * wait is bounded by the attempt's deadline, and the attempts by the
 * candidates. */
static int heal_blocking(struct tls_sess *t)
{
	for (;;) {
		int r = step(t, 1);
		if (r != 1)
			return r;
		int fd = tls_fd(t);
		int64_t left = (int64_t)t->deadline_ms - (int64_t)flare_monotonic_ms();
		struct pollfd p = {.fd = fd,
				   .events = t->synth == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
		if (fd >= 0 && left > 0)
			real.poll(&p, 1, left < FLARE_SLICE_MS ? (int)left : FLARE_SLICE_MS);
	}
}

int tls_heal_continue(struct tls_sess *t)
{
	int r = t->blocking ? heal_blocking(t) : step(t, 1);
	return r == 0 ? 1 : r == 1 ? 0 : -1;
}

int tls_ready(struct tls_sess *t)
{
	if (t->step == HS_NONE)
		return 1;
	int h = tls_heal_continue(t);
	if (h > 0)
		return 1;
	errno = h < 0 ? t->fail_errno : EAGAIN;
	return 0;
}

int tls_on_failure(struct tls_sess *t, int reading, int err)
{
	t->orig_err = err;
	t->orig_errno = errno;
	struct fconn *fc = tls_conn(t);
	if (!fc || (err != SSL_ERROR_SYSCALL && err != SSL_ERROR_SSL) ||
	    !__atomic_load_n(&fc->tls.sock_failed, __ATOMIC_ACQUIRE) || t->step != HS_NONE ||
	    flare_in_foreign_child())
		return -1;
	int fd = fconn_first_fd(fc);
	SSL *cur = t->cur;
	/* every byte on the socket is still the session's */
	if (fd < 0 ||
	    ossl.BIO_number_read(ossl.SSL_get_rbio(cur)) !=
		__atomic_load_n(&fc->link.sock_rd, __ATOMIC_RELAXED) ||
	    ossl.BIO_number_written(ossl.SSL_get_wbio(cur)) !=
		__atomic_load_n(&fc->link.sock_wr, __ATOMIC_RELAXED)) {
		log_info("fd %d: TLS session not healed: the socket carried bytes the session did "
			 "not",
			 fd);
		COUNT(passed_errors, fc->svc.index, SS_PASSED_ERRORS, 1);
		return -1;
	}
	snprintf(t->why, sizeof(t->why), "%s",
		 err == SSL_ERROR_SSL ? "the connection ended inside the TLS session"
				      : "the TLS session's connection failed");
	/* a read with no request outstanding waits for the server's own
	 * bytes: a new replica would send none, and the program would wait
	 * where it met the end of the connection (the idle close is its to
	 * see; its next request, written, would have been healed) */
	if (reading && !exchange_outstanding(fc)) {
		log_debug("%s: not healed: an idle session's end is the program's", t->why);
		COUNT(passed_errors, fc->svc.index, SS_PASSED_ERRORS, 1);
		return -1;
	}
	struct flare_route rt;
	t->blocking = !fd_nonblocking(fc, fd);
	t->n_order = heal_plan(fc, t->why, !t->blocking, &rt, t->order, &t->from, &t->len);
	if (t->n_order <= 0) {
		COUNT(passed_errors, fc->svc.index, SS_PASSED_ERRORS, 1);
		return -1;
	}
	t->k = 0;
	t->from_idx = t->idx = fc->link.cur;
	t->t0_ns = flare_monotonic_ns();
	if (t->blocking)
		ossl.ERR_set_mark(); /* the failure's errors below it, the heal's above */
	else
		ossl.ERR_clear_error();
	t->step = HS_DIAL;
	__atomic_add_fetch(&flare_tls_healing, 1, __ATOMIC_RELEASE);
	return tls_heal_continue(t) > 0 ? 1 : t->step == HS_FAILED ? -1 : 0;
}

/* From a readiness wait: what needs no OpenSSL, and a wake-up for a
 * program whose heal needs its call (the attempt failed or timed out). */
static int progress_one(struct tls_sess *t)
{
	if (flare_threaded() && flare_trylock(&t->lock) != 0)
		return 1;
	int st = t->step;
	/* (a connection closed under the heal ends it: step says so) */
	if (st == HS_CONNECTING || st == HS_HELLO || !tls_conn(t))
		step(t, 0);
	int fd = tls_fd(t);
	if (fd >= 0 && (t->step == HS_DIAL ||
			(t->step >= HS_HANDSHAKE && t->step <= HS_REPLAY && past_deadline(t))))
		real.shutdown(fd, SHUT_RDWR); /* its wait ends: its next call moves on */
	int left = t->step != HS_NONE && t->step != HS_FAILED;
	if (flare_threaded())
		flare_unlock(&t->lock);
	return left;
}

int tls_progress_all(void) { return tls_each_healing(progress_one); }
