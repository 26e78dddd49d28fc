#include "hook.h"
#include "tls/tls.h"

/* What the program asks of its SSL's state answers for the session it
 * reads and writes through. After a heal the program's own object is the
 * session that failed (OpenSSL keeps it in its error state: in init, not
 * finished), and an event loop that asks it whether the handshake is
 * done before it watches its terminal (openssl s_client) would stop
 * watching anything. While a heal is under way, its own object answers. */
static const SSL *in_use(const SSL *s)
{
	/* (OpenSSL calls these itself, through its PLT, many times a request) */
	if (!__atomic_load_n(&flare_tls_swapped, __ATOMIC_ACQUIRE))
		return s;
	struct tls_sess *t = tls_known(s);
	return t && t->step == HS_NONE ? t->cur : s;
}

#define SSL_STATE_HOOK(ret, fn, fail)                                                              \
	SSL_HOOK_CALLERS(fn);                                                                      \
	FLARE_EXPORT ret fn(const SSL *s)                                                          \
	{                                                                                          \
		SSL_HOOK_START(fn, fail) return next(s);                                           \
		return next(in_use(s));                                                            \
	}

SSL_STATE_HOOK(int, SSL_is_init_finished, 0)
SSL_STATE_HOOK(int, SSL_in_init, 1)
SSL_STATE_HOOK(int, SSL_in_before, 0)
SSL_STATE_HOOK(OSSL_HANDSHAKE_STATE, SSL_get_state, TLS_ST_BEFORE)
SSL_STATE_HOOK(int, SSL_want, SSL_NOTHING)
