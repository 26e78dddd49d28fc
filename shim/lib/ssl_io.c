/* OpenSSL's read and write family: SSL_read, SSL_read_ex, SSL_peek,
 * SSL_peek_ex, SSL_write, SSL_write_ex, and SSL_get_error, SSL_pending,
 * SSL_has_pending that answer for them. A session the library does not
 * know costs one probe of its table (none while it knows no session and
 * manages no connection); a linked one's plaintext feeds its connection's
 * exchange, and a failure under it is healed (tls_heal.c). */
#include "hook.h"
#include "tls/tls.h"

enum ssl_op { OP_READ, OP_READ_EX, OP_PEEK, OP_PEEK_EX, OP_WRITE, OP_WRITE_EX };

struct io_args {
	enum ssl_op op;
	void *buf;
	size_t len;
	size_t *done;
};

static int real_io(SSL *s, const struct io_args *a)
{
	int n = a->len > 0x7fffffff ? 0x7fffffff : (int)a->len;
	switch (a->op) {
	case OP_READ: return ossl.SSL_read(s, a->buf, n);
	case OP_READ_EX: return ossl.SSL_read_ex(s, a->buf, a->len, a->done);
	case OP_PEEK: return ossl.SSL_peek(s, a->buf, n);
	case OP_PEEK_EX: return ossl.SSL_peek_ex(s, a->buf, a->len, a->done);
	case OP_WRITE: return ossl.SSL_write(s, a->buf, n);
	default: return ossl.SSL_write_ex(s, a->buf, a->len, a->done);
	}
}

static int is_ex(enum ssl_op op)
{
	return op == OP_READ_EX || op == OP_PEEK_EX || op == OP_WRITE_EX;
}

/* plaintext bytes the call moved */
static size_t moved(const struct io_args *a, int r)
{
	if (is_ex(a->op))
		return r == 1 && a->done ? *a->done : 0;
	return r > 0 ? (size_t)r : 0;
}

/* the hook's own failure, as the call reports one */
static int failed(const struct io_args *a)
{
	if (is_ex(a->op) && a->done)
		*a->done = 0;
	return is_ex(a->op) ? 0 : -1;
}

static void account(struct fconn *fc, const struct io_args *a, size_t n)
{
	if (a->op == OP_READ || a->op == OP_READ_EX) {
		struct iovec iov = {a->buf, n};
		exchange_read(fc, &iov, 1, n);
	} else if (a->op == OP_WRITE || a->op == OP_WRITE_EX) {
		exchange_wrote_buf(fc, a->buf, n);
	}
}

static int linked_io(struct tls_sess *t, SSL *s, const struct io_args *a)
{
	tls_lock(t);
	struct fconn *fc = tls_conn(t);
	int r = 0;
	for (int round = 0;; round++) {
		if (!tls_ready(t)) {
			r = failed(a);
			break;
		}
		t->synth = 0;
		r = real_io(t->cur, a);
		size_t n = moved(a, r);
		if (!fc && t->cur == s) {
			tls_maybe_link(s); /* an entry made for its ALPN list */
			fc = tls_conn(t);
		}
		if (n > 0 || !fc) {
			if (n > 0 && fc)
				account(fc, a, n);
			break;
		}
		/* the common failure: nothing to read yet (WANT_READ); only a
		 * socket that failed under the session can be healed */
		if (round > FLARE_MAX_REPLICAS ||
		    !__atomic_load_n(&fc->tls.sock_failed, __ATOMIC_ACQUIRE))
			break;
		int err = ossl.SSL_get_error(t->cur, r);
		int reading = a->op != OP_WRITE && a->op != OP_WRITE_EX;
		/* nothing of this write was taken: a reconnect re-runs nothing */
		if (!reading && (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_SSL))
			exchange_write_failed(fc);
		int h = tls_on_failure(t, reading, err);
		if (h < 0) {
			/* surfaces as it would have: SIGPIPE if the write owed one */
			if (__atomic_exchange_n(&fc->tls.pipe_owed, 0, __ATOMIC_ACQ_REL))
				sig_pipe_as_program(0);
			if (t->synth)
				errno = t->fail_errno;
			break;
		}
		if (h == 0) {
			errno = EAGAIN;
			r = failed(a);
			break;
		}
	}
	tls_unlock(t);
	return r;
}

static int ssl_io(SSL *s, struct io_args *a)
{
	struct tls_sess *t = tls_known(s);
	if (!t && !__atomic_load_n(&flare_n_managed, __ATOMIC_ACQUIRE))
		return real_io(s, a);
	struct tls_call saved;
	tls_call_enter(s, &saved);
	int r;
	if (t) {
		r = linked_io(t, s, a);
	} else {
		r = real_io(s, a);
		size_t n = moved(a, r);
		struct fconn *fc = flare_tls_call.fc;
		if (fc && __atomic_load_n(&fc->tls.mode, __ATOMIC_ACQUIRE) == FT_NONE) {
			int e = errno;
			tls_maybe_link(s);
			/* the call that finished the handshake may carry plaintext too */
			if ((t = tls_find(s)) != NULL && tls_conn(t) == fc && n > 0)
				account(fc, a, n);
			errno = e;
		}
	}
	tls_call_leave(&saved);
	return r;
}

/* The calls that count in an int (a negative count is OpenSSL's to
 * refuse) and the _ex ones, which count in size_t and return 1 or 0; the
 * compiler checks each against OpenSSL's own prototype. */
#define SSL_INT_HOOK(fn, op, buf_t)                                                                \
	SSL_HOOK_CALLERS(fn);                                                                      \
	FLARE_EXPORT int fn(SSL *s, buf_t buf, int num)                                            \
	{                                                                                          \
		SSL_HOOK_START(fn, -1) return next(s, buf, num);                                   \
		if (num < 0)                                                                       \
			return ossl.fn(s, buf, num);                                               \
		struct io_args a = {op, (void *)buf, (size_t)num, NULL};                           \
		return ssl_io(s, &a);                                                              \
	}
#define SSL_EX_HOOK(fn, op, buf_t)                                                                 \
	SSL_HOOK_CALLERS(fn);                                                                      \
	FLARE_EXPORT int fn(SSL *s, buf_t buf, size_t num, size_t *done)                           \
	{                                                                                          \
		SSL_HOOK_START(fn, 0) return next(s, buf, num, done);                              \
		struct io_args a = {op, (void *)buf, num, done};                                   \
		return ssl_io(s, &a);                                                              \
	}

SSL_INT_HOOK(SSL_read, OP_READ, void *)
SSL_EX_HOOK(SSL_read_ex, OP_READ_EX, void *)
SSL_INT_HOOK(SSL_peek, OP_PEEK, void *)
SSL_EX_HOOK(SSL_peek_ex, OP_PEEK_EX, void *)
SSL_INT_HOOK(SSL_write, OP_WRITE, const void *)
SSL_EX_HOOK(SSL_write_ex, OP_WRITE_EX, const void *)

SSL_HOOK_CALLERS(SSL_get_error);
FLARE_EXPORT int SSL_get_error(const SSL *s, int ret)
{
	SSL_HOOK_START(SSL_get_error, SSL_ERROR_SSL) return next(s, ret);
	struct tls_sess *t = tls_known(s);
	if (!t)
		return ossl.SSL_get_error(s, ret);
	int synth = __atomic_load_n(&t->synth, __ATOMIC_ACQUIRE);
	return synth ? synth : ossl.SSL_get_error(t->cur, ret);
}

SSL_HOOK_CALLERS(SSL_pending);
FLARE_EXPORT int SSL_pending(const SSL *s)
{
	SSL_HOOK_START(SSL_pending, 0) return next(s);
	struct tls_sess *t = tls_known(s);
	if (!t)
		return ossl.SSL_pending(s);
	return t->step != HS_NONE ? 0 : ossl.SSL_pending(t->cur);
}

SSL_HOOK_CALLERS(SSL_has_pending);
FLARE_EXPORT int SSL_has_pending(const SSL *s)
{
	SSL_HOOK_START(SSL_has_pending, 0) return next(s);
	struct tls_sess *t = tls_known(s);
	if (!t)
		return ossl.SSL_has_pending(s);
	return t->step != HS_NONE ? 0 : ossl.SSL_has_pending(t->cur);
}
