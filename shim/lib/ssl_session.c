/* OpenSSL's session life: SSL_connect and SSL_do_handshake (where a
 * session's handshake completes and it may be linked to its connection),
 * SSL_shutdown and SSL_get_shutdown (answered by the session in use),
 * SSL_clear and SSL_free (the library forgets the session), and
 * SSL_set_alpn_protos (a heal must offer the same list). */
#include "hook.h"
#include "tls/tls.h"

#include <string.h>

/* The handshake calls: the program's own session's are watched for its
 * link; a healed session answers for itself (its handshake is done, or a
 * heal's is under way). */
static int handshake(SSL *s, int (*fn)(SSL *))
{
	struct tls_sess *t = tls_known(s);
	if (t && (t->cur != s || t->step != HS_NONE)) {
		tls_lock(t);
		int r = -1;
		if (tls_ready(t)) {
			t->synth = 0;
			r = fn(t->cur);
		}
		tls_unlock(t);
		return r;
	}
	if (!__atomic_load_n(&flare_n_managed, __ATOMIC_ACQUIRE))
		return fn(s);
	struct tls_call saved;
	tls_call_enter(s, &saved);
	int r = fn(s);
	int e = errno;
	if (flare_tls_call.fc && (!t || !tls_conn(t)))
		tls_maybe_link(s);
	tls_call_leave(&saved);
	errno = e;
	return r;
}

SSL_HOOK_CALLERS(SSL_connect);
FLARE_EXPORT int SSL_connect(SSL *s)
{
	SSL_HOOK_START(SSL_connect, -1) return next(s);
	return handshake(s, ossl.SSL_connect);
}

SSL_HOOK_CALLERS(SSL_do_handshake);
FLARE_EXPORT int SSL_do_handshake(SSL *s)
{
	SSL_HOOK_START(SSL_do_handshake, -1) return next(s);
	return handshake(s, ossl.SSL_do_handshake);
}

SSL_HOOK_CALLERS(SSL_shutdown);
FLARE_EXPORT int SSL_shutdown(SSL *s)
{
	SSL_HOOK_START(SSL_shutdown, -1) return next(s);
	struct tls_sess *t = tls_known(s);
	if (!t || (t->cur == s && t->step == HS_NONE))
		return ossl.SSL_shutdown(s);
	tls_lock(t);
	int r;
	if (t->step != HS_NONE) {
		/* no session to close on the socket in place: as on a dead one */
		t->synth = SSL_ERROR_SYSCALL;
		errno = EPIPE;
		r = -1;
	} else {
		t->synth = 0;
		r = ossl.SSL_shutdown(t->cur);
	}
	tls_unlock(t);
	return r;
}

SSL_HOOK_CALLERS(SSL_get_shutdown);
FLARE_EXPORT int SSL_get_shutdown(const SSL *s)
{
	SSL_HOOK_START(SSL_get_shutdown, 0) return next(s);
	struct tls_sess *t = tls_known(s);
	return ossl.SSL_get_shutdown(t && t->step == HS_NONE ? t->cur : s);
}

SSL_HOOK_CALLERS(SSL_free);
FLARE_EXPORT void SSL_free(SSL *s)
{
	tls_resolve();
	void (*next)(SSL *) = (void (*)(SSL *))tls_next_for(
	    "SSL_free", (void *)ossl.SSL_free, __builtin_return_address(0), SSL_free_callers);
	if (!next)
		return;
	if (next != ossl.SSL_free) {
		next(s); /* another OpenSSL's object */
		return;
	}
	if (s && tls_known(s))
		tls_forget(s);
	ossl.SSL_free(s);
}

SSL_HOOK_CALLERS(SSL_clear);
FLARE_EXPORT int SSL_clear(SSL *s)
{
	SSL_HOOK_START(SSL_clear, 0) return next(s);
	/* the program makes the object another session: the library's link
	 * and sessions of its own go, and its connection keeps the socket rules */
	if (tls_known(s))
		tls_forget(s);
	return ossl.SSL_clear(s);
}

SSL_HOOK_CALLERS(SSL_set_alpn_protos);
FLARE_EXPORT int SSL_set_alpn_protos(SSL *s, const unsigned char *protos, unsigned int len)
{
	SSL_HOOK_START(SSL_set_alpn_protos, 1) return next(s, protos, len);
	int r = ossl.SSL_set_alpn_protos(s, protos, len);
	if (r != 0 || !__atomic_load_n(&flare_n_managed, __ATOMIC_ACQUIRE) || !tls_usable())
		return r;
	struct tls_sess *t = tls_get(s);
	if (t) {
		tls_lock(t);
		/* a list too long to keep: a heal could not offer it (not healed) */
		t->alpn_set = len <= sizeof(t->alpn) ? 1 : 2;
		t->alpn_len = len <= sizeof(t->alpn) ? (uint16_t)len : 0;
		if (len && len <= sizeof(t->alpn))
			memcpy(t->alpn, protos, len);
		tls_unlock(t);
	}
	return r;
}
