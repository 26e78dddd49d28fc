/* What the socket hooks tell the TLS layer, inline on the request path;
 * tls.h has the TLS layer itself. */
#ifndef FLARE_TLS_CALL_H
#define FLARE_TLS_CALL_H

#include "conn/conn.h"

#include <stdint.h>

/* ---- TLS sessions over managed connections (tls.h has the rest) ---- */
/* The hooked SSL call a thread is in, and the managed descriptor its BIO
 * touched (the socket hooks fill it in): that is how a session finds its
 * connection, whatever BIO the program gave it. */
struct tls_call {
	const void *ssl;
	struct fconn *fc;
	int fd;
	uint8_t depth, mixed;
	uint8_t got; /* a socket read in this call returned bytes: the rest of a
		      * record is usually there already (io.c reads it at once) */
};
extern __thread struct tls_call flare_tls_call __attribute__((tls_model("initial-exec")));
static inline void tls_call_saw(struct fconn *fc, int fd)
{
	struct tls_call *c = &flare_tls_call;
	if (__builtin_expect(!c->depth, 1))
		return;
	if (c->fc && (c->fc != fc || c->fd != fd))
		c->mixed = 1; /* one call, two connections: not a session on one socket */
	c->fc = fc;
	c->fd = fd;
}
static inline void tls_call_got(void)
{
	if (__builtin_expect(flare_tls_call.depth, 0))
		flare_tls_call.got = 1;
}
static inline int fconn_tls_linked(const struct fconn *fc)
{
	return __atomic_load_n(&fc->tls.mode, __ATOMIC_ACQUIRE) == FT_LINKED;
}
/* The socket hooks' part for a linked connection: its socket failed
 * (reset, EOF, EPIPE), which the SSL hook that sees OpenSSL fail acts on. */
void tls_sock_failed(struct fconn *fc);
/* A heal asked of a linked connection (watch.c: a dead replica, an overdue
 * reply) shuts its socket's reading side, so that OpenSSL meets the
 * failure in the program's own call and the SSL hook heals there: 0; -1,
 * the socket untouched, when that heal would not happen (heal_plan). */
int tls_abandon_socket(struct fconn *fc, const char *why);
/* TLS heals under way ([atom]), and their progress from the readiness
 * waits: sends first flights, notices deadlines; how many are left. */
extern int flare_tls_healing;
int tls_progress_all(void);
void tls_atfork_child(void); /* the TLS table's locks, made anew */

#endif
