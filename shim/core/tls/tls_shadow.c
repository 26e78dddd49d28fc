/* A new session made like the program's, and the proof that its peer is
 * the one the program accepted. The new SSL comes from the program's own
 * SSL_CTX, so it has the context's trust store, verification mode and
 * callbacks, ciphers, client certificate and callbacks as the program's
 * session got them; what the program set on its own SSL on top is copied
 * from it: the SNI name, the ALPN list, the verification parameters
 * (SSL_get0_param: host names, flags, depth, purpose; copied whole), the
 * verification mode and callback, options, mode, protocol bounds,
 * security level, info callback, certificate and key (by reference: key
 * material is never read, copied or logged), and its ex_data (the
 * program's callbacks find their own state through it). Settings that
 * cannot be read back exactly (a cipher list of its own, DANE, CT) make
 * the session unhealable rather than healed with weaker ones. No session
 * is resumed: a heal always makes a full handshake, so the certificate is
 * always presented and verified again. */
#include "log.h"

#include "tls/tls.h"

#include <string.h>

static void copy_ctrl(SSL *to, SSL *from, int get, int set)
{
	ossl.SSL_ctrl(to, set, ossl.SSL_ctrl(from, get, 0, NULL), NULL);
}

/* the same cipher list, in the same order */
static int same_ciphers(SSL *a, SSL *b)
{
	for (int i = 0; i < 1024; i++) {
		const char *x = ossl.SSL_get_cipher_list(a, i), *y = ossl.SSL_get_cipher_list(b, i);
		if (!x || !y)
			return x == y;
		if (strcmp(x, y) != 0)
			return 0;
	}
	return 0;
}

/* the verification parameters as the program's, field for field as far as
 * they can be read back */
static int same_params(SSL *a, SSL *b)
{
	X509_VERIFY_PARAM *pa = ossl.SSL_get0_param(a), *pb = ossl.SSL_get0_param(b);
	if (ossl.X509_VERIFY_PARAM_get_depth(pa) != ossl.X509_VERIFY_PARAM_get_depth(pb) ||
	    ossl.X509_VERIFY_PARAM_get_flags(pa) != ossl.X509_VERIFY_PARAM_get_flags(pb) ||
	    ossl.X509_VERIFY_PARAM_get_hostflags(pa) != ossl.X509_VERIFY_PARAM_get_hostflags(pb))
		return 0;
	for (int i = 0; i < 64; i++) {
		const char *x = ossl.X509_VERIFY_PARAM_get0_host(pa, i),
			   *y = ossl.X509_VERIFY_PARAM_get0_host(pb, i);
		if (!x || !y)
			return x == y;
		if (strcmp(x, y) != 0)
			return 0;
	}
	return 0;
}

static const char *copy_settings(struct tls_sess *t, SSL *s)
{
	SSL *p = t->prog;
	ossl.SSL_set_connect_state(s);
	const char *sni = ossl.SSL_get_servername(p, TLSEXT_NAMETYPE_host_name);
	if (sni &&
	    !ossl.SSL_ctrl(s, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, (void *)sni))
		return "its SNI name cannot be set";
	if (t->alpn_set == 2)
		return "its ALPN list is longer than the library keeps";
	if (t->alpn_set && ossl.SSL_set_alpn_protos(s, t->alpn, t->alpn_len) != 0)
		return "its ALPN list cannot be set";
	/* every field of the parameters, the host names included (OVERWRITE) */
	X509_VERIFY_PARAM *to = ossl.SSL_get0_param(s);
	ossl.X509_VERIFY_PARAM_set_inh_flags(to, X509_VP_FLAG_OVERWRITE);
	int ok = ossl.X509_VERIFY_PARAM_set1(to, ossl.SSL_get0_param(p));
	ossl.X509_VERIFY_PARAM_set_inh_flags(to, 0);
	if (!ok || !same_params(p, s))
		return "its verification parameters cannot be copied exactly";
	ossl.SSL_set_verify(s, ossl.SSL_get_verify_mode(p), ossl.SSL_get_verify_callback(p));
	ossl.SSL_clear_options(s, ossl.SSL_get_options(s));
	ossl.SSL_set_options(s, ossl.SSL_get_options(p));
	ossl.SSL_ctrl(s, SSL_CTRL_CLEAR_MODE, ossl.SSL_ctrl(s, SSL_CTRL_MODE, 0, NULL), NULL);
	ossl.SSL_ctrl(s, SSL_CTRL_MODE, ossl.SSL_ctrl(p, SSL_CTRL_MODE, 0, NULL), NULL);
	copy_ctrl(s, p, SSL_CTRL_GET_MIN_PROTO_VERSION, SSL_CTRL_SET_MIN_PROTO_VERSION);
	copy_ctrl(s, p, SSL_CTRL_GET_MAX_PROTO_VERSION, SSL_CTRL_SET_MAX_PROTO_VERSION);
	long st = ossl.SSL_ctrl(p, SSL_CTRL_GET_TLSEXT_STATUS_REQ_TYPE, 0, NULL);
	if (st != -1)
		ossl.SSL_ctrl(s, SSL_CTRL_SET_TLSEXT_STATUS_REQ_TYPE, st, NULL);
	ossl.SSL_set_security_level(s, ossl.SSL_get_security_level(p));
	ossl.SSL_set_info_callback(s, ossl.SSL_get_info_callback(p));
	X509 *cert = ossl.SSL_get_certificate(p);
	if (cert && cert != ossl.SSL_get_certificate(s) &&
	    (ossl.SSL_use_certificate(s, cert) != 1 ||
	     ossl.SSL_use_PrivateKey(s, ossl.SSL_get_privatekey(p)) != 1))
		return "its client certificate cannot be set";
	if (!same_ciphers(p, s))
		return "the program set its own cipher list on the session";
	if (ossl.SSL_get0_dane_authority(p, NULL, NULL) >= 0)
		return "DANE";
	if (ossl.SSL_ct_is_enabled(p) != ossl.SSL_ct_is_enabled(s))
		return "certificate transparency set on the session";
	return NULL;
}

SSL *tls_shadow_new(struct tls_sess *t)
{
	SSL_CTX *ctx = ossl.SSL_get_SSL_CTX(t->prog);
	SSL *s = ctx ? ossl.SSL_new(ctx) : NULL;
	if (!s) {
		log_warn("TLS: no new session from the program's context: not healed");
		return NULL;
	}
	const char *why = copy_settings(t, s);
	if (why) {
		log_warn("TLS: the session cannot be made again exactly (%s): not healed", why);
		ossl.SSL_free(s);
		return NULL;
	}
	t->next_exdata = 0;
	for (int i = 0; i < TLS_EXDATA; i++) {
		void *d = ossl.SSL_get_ex_data(t->prog, i);
		if (d && ossl.SSL_set_ex_data(s, i, d))
			t->next_exdata |= (uint16_t)(1u << i);
	}
	return s;
}

void tls_shadow_free(struct tls_sess *t, SSL *s, uint16_t exdata)
{
	(void)t;
	/* the program's own pointers must not reach its ex_data free callbacks
	 * twice: they go with the program's SSL */
	for (int i = 0; i < TLS_EXDATA; i++)
		if (exdata & (1u << i))
			ossl.SSL_set_ex_data(s, i, NULL);
	ossl.SSL_free(s);
}

int tls_same_peer(struct tls_sess *t, SSL *s, char *why, size_t n)
{
	SSL *p = t->prog;
	long vp = ossl.SSL_get_verify_result(p), vs = ossl.SSL_get_verify_result(s);
	X509 *cp = ossl.SSL_get0_peer_certificate(p), *cs = ossl.SSL_get0_peer_certificate(s);
	const unsigned char *ap = NULL, *as = NULL;
	unsigned lp = 0, ls = 0;
	ossl.SSL_get0_alpn_selected(p, &ap, &lp);
	ossl.SSL_get0_alpn_selected(s, &as, &ls);
	if (vs != vp)
		snprintf(why, n, "its certificate does not verify as the session's did (%s)",
			 ossl.X509_verify_cert_error_string(vs));
	else if (!cp || !cs || ossl.X509_cmp(cp, cs) != 0)
		/* the program's own checks after its handshake (a host name check of
		 * its own, a pinned key) passed for that certificate only */
		snprintf(why, n,
			 "it presents another certificate than the one the program accepted");
	else if (lp != ls || (lp && memcmp(ap, as, lp) != 0))
		snprintf(why, n, "it negotiates another application protocol (ALPN)");
	else if (ossl.SSL_version(p) != ossl.SSL_version(s))
		snprintf(why, n, "it negotiates another TLS version");
	else
		return 0;
	return -1;
}
