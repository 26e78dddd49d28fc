/* A framed connection's exchange: the framers (frame.h) applied to what
 * the program writes and reads, and what may be healed (framed.c). */
#ifndef FLARE_FRAMED_H
#define FLARE_FRAMED_H

#include "conn/conn.h"

#include <stddef.h>
#include <sys/uio.h>

/* ---- framed exchanges (framed.c), called by exchange.c under [lock] ---- */
/* proto is set once, under [lock], from AUTO; read without it here */
static inline int fconn_framed(const struct fconn *fc)
{
	return __atomic_load_n(&fc->fr.proto, __ATOMIC_ACQUIRE) >= PROTO_REDIS;
}
/* Moves fc->ex.state (framed connections, under [lock]), keeping the count. */
void exchange_set(struct fconn *fc, int to);
void framed_start(struct fconn *fc, int proto);
void framed_wrote(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n);
void framed_read(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n);
int framed_healable(struct fconn *fc);

#endif
