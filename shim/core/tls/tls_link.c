/* Linking a program's TLS session to its managed connection. A session is
 * healed only when the connection is that session alone: its first bytes
 * were this handshake's ClientHello (not a protocol that starts TLS
 * later: PostgreSQL's SSLRequest, STARTTLS), every byte the socket
 * carried went through the session's BIOs (their counts and the socket's
 * agree: no proxy tunnel, no TLS inside TLS, no bytes the program wrote
 * around OpenSSL), the session's calls touched no other connection, and it
 * is a client's TLS 1.2 or 1.3 session without kernel TLS. Anything else
 * is refused once, and the connection keeps the socket rules (a heal only
 * before the server's first byte). */
#include "core.h"
#include "flare.h"
#include "lock.h"
#include "log.h"
#include "real.h"
#include "table.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "frame/frame.h"
#include "frame/framed.h"
#include "heal/heal.h"
#include "tls/tls.h"
#include "tls/tls_call.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

struct fconn *tls_conn(struct tls_sess *t)
{
	struct fconn *fc = t->fc;
	if (!fc || __atomic_load_n(&fc->tls.sess, __ATOMIC_ACQUIRE) != t)
		return NULL; /* closed and recycled, or never linked */
	return fc;
}

int tls_fd(struct tls_sess *t)
{
	struct fconn *fc = tls_conn(t);
	return fc ? fconn_first_fd(fc) : -1;
}

/* Why the session on fc cannot be healed, or NULL. */
static const char *refusal(SSL *ssl, const struct tls_call *c, struct fconn *fc)
{
	BIO *rb = ossl.SSL_get_rbio(ssl), *wb = ossl.SSL_get_wbio(ssl);
	int trust = fconn_trust(fc);
	if (c->mixed)
		return "its calls moved bytes on more than one connection";
	if (ossl.SSL_is_server(ssl))
		return "a server's session";
	if (fc->ex.sess_proto != SESSION_TLS)
		return "the connection began with other bytes (a protocol that starts TLS later)";
	if (trust != TR_FIRST_SESSION && trust != TR_SESSION)
		return "bytes moved on the connection where no hook sees them";
	if (!rb || !wb ||
	    ossl.BIO_number_read(rb) != __atomic_load_n(&fc->link.sock_rd, __ATOMIC_RELAXED) ||
	    ossl.BIO_number_written(wb) != __atomic_load_n(&fc->link.sock_wr, __ATOMIC_RELAXED))
		return "the socket carries bytes the session did not (a tunnel, or writes around "
		       "OpenSSL)";
	if (ossl.SSL_version(ssl) < TLS1_2_VERSION)
		return "a protocol older than TLS 1.2";
	if (ossl.BIO_ctrl(wb, BIO_CTRL_GET_KTLS_SEND, 0, NULL) ||
	    ossl.BIO_ctrl(rb, BIO_CTRL_GET_KTLS_RECV, 0, NULL))
		return "kernel TLS";
	return NULL;
}

/* The plaintext starts a new exchange: nothing of it written or read, the
 * service's framer (or detection) from its first byte. [lock] */
static void plaintext_start(struct fconn *fc)
{
	exchange_reset(fc);
	fc->fr.framing_over = fc->fr.server_closes = fc->fr.in_txn = fc->fr.overflow =
	    fc->fr.sess_broken = 0;
	fc->fr.head = fc->fr.rep_read = fc->fr.sess_len = fc->fr.sess_rep_len = 0;
	fc->fr.q_n = fc->fr.q_first = 0;
	fc->ex.shut_wr = 0;
	if (fc->svc.proto >= PROTO_REDIS && fc->svc.proto <= PROTO_MEMCACHED)
		framed_start(fc, fc->svc.proto);
	else
		__atomic_store_n(&fc->fr.proto,
				 fc->svc.proto == PROTO_AUTO ? PROTO_AUTO : PROTO_OPAQUE,
				 __ATOMIC_RELEASE);
}

void tls_maybe_link(SSL *ssl)
{
	const struct tls_call *c = &flare_tls_call;
	struct fconn *fc = c->fc;
	if (!fc || __atomic_load_n(&fc->tls.mode, __ATOMIC_ACQUIRE) != FT_NONE ||
	    fdtab_get(c->fd) != fc || flare_in_foreign_child())
		return;
	if (!tls_usable()) {
		__atomic_store_n(&fc->tls.mode, FT_OFF, __ATOMIC_RELEASE);
		return;
	}
	if (!ossl.SSL_is_init_finished(ssl))
		return; /* still shaking hands: decided when it is done */
	const char *why = refusal(ssl, c, fc);
	struct tls_sess *t = why ? NULL : tls_get(ssl);
	if (!t) {
		if (why)
			log_info("fd %d: TLS session not healed: %s", c->fd, why);
		__atomic_store_n(&fc->tls.mode, FT_OFF, __ATOMIC_RELEASE);
		return;
	}
	/* the caller holds t's lock, or t is new and no other thread knows it */
	flare_lock(&fc->lock);
	plaintext_start(fc);
	flare_unlock(&fc->lock);
	t->fc = fc;
	t->rd_base = t->wr_base = 0;
	__atomic_store_n(&fc->tls.sock_failed, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fc->tls.sess, t, __ATOMIC_RELEASE);
	__atomic_store_n(&fc->tls.mode, FT_LINKED, __ATOMIC_RELEASE);
	STAT_INC(tls_linked);
	log_debug("fd %d: TLS session linked: its plaintext is framed and healed", c->fd);
}

void tls_sock_failed(struct fconn *fc)
{
	__atomic_store_n(&fc->tls.sock_failed, 1, __ATOMIC_RELEASE);
}

int tls_abandon_socket(struct fconn *fc, const char *why)
{
	int fd = fconn_first_fd(fc);
	if (fd < 0)
		return -1;
	if (__atomic_load_n(&fc->tls.sock_failed, __ATOMIC_ACQUIRE))
		return 0; /* shut already: the program's read is on its way */
	/* only where the SSL hook would heal: a request outstanding that the
	 * exchange lets go elsewhere, and a replica to take it; else the
	 * socket is left as it is and the program waits as it would */
	struct flare_route rt;
	uint8_t order[FLARE_MAX_REPLICAS + 1];
	uint32_t from, len;
	if (!exchange_outstanding(fc) || heal_plan(fc, why, 1, &rt, order, &from, &len) <= 0)
		return -1;
	log_info("fd %d: %s: the TLS session's socket is shut for reading; the program's next "
		 "read heals it",
		 fd, why);
	tls_sock_failed(fc);
	real.shutdown(fd, SHUT_RD);
	return 0;
}
