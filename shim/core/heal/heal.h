/* Moving a failed connection to another replica: the swap of its socket,
 * the heal (blocking or asynchronous), and the watch over requests on
 * replicas that will not answer. Whether a heal may happen is decided in
 * verdict.h alone. */
#ifndef FLARE_HEAL_H
#define FLARE_HEAL_H

#include "conn/conn.h"
#include "table.h"
#include "tcpsilent.h"
#include "heal/verdict.h"

#include <stdint.h>

/* ---- swap.c ---- */
/* Puts connected-or-connecting socket nfd in place of fc's socket on every
 * descriptor number (flags kept, blocked readers woken, epoll registrations
 * redone) and closes nfd; 0 or -1. */
int fconn_swap(struct fconn *fc, int nfd);

/* ---- heal.c ---- */
/* Replaces the connection behind fc after a failure seen at generation
 * `gen`. Returns 0 when the caller should retry its call (healed, or healed
 * by another thread), -1 when the failure must surface. */
int heal(struct fconn *fc, uint32_t gen, const char *why, int async);
/* The order of replicas a heal tries after fc->link.cur failed (asking the
 * manager only when async is 0), and whether the last heal's replay was
 * refused (the connection is not healed again). [claim] */
int heal_targets(const struct fconn *fc, const struct flare_route *rt, int async, uint8_t *out);
int heal_replay_refused(const struct fconn *fc);
/* What a heal of fc may do now, plaintext or TLS: the replicas to try in
 * order (how many), with the route and the bytes to replay buf[from,
 * len); -1 (logged) when the failure must surface (the exchange does not
 * allow it, the last replay was refused, no table, no replica left). */
int heal_plan(struct fconn *fc, const char *why, int async, struct flare_route *rt, uint8_t *order,
	      uint32_t *from, uint32_t *len);
/* A heal's new connection failing this soon with nothing read refused the
 * replay (a replica that dies has been up longer than that). */
#define FLARE_REFUSED_MS 100
/* Sends all of p on the library's own connected socket fd (a replay, a
 * session command) within timeout_ms; 0 or -1. */
int send_all(int fd, const uint8_t *p, size_t n, int timeout_ms);
int is_conn_failure(int err);
/* A readiness hook saw an error or hang-up (ERR, HUP, RDHUP; for select,
 * a readable descriptor) on fd. When the connection failed while a heal is
 * possible, the heal starts there (asynchronously: the wait goes on) and
 * the event must be hidden: returns 1. Reply bytes waiting in the kernel,
 * an idle connection, a connection the kernel does not call failed, or a
 * failure that must surface: 0, the event stands. */
int heal_on_event(int fd);

/* ---- replay.c: asynchronous heals, moved on without blocking ---- */
void replay_progress(struct fconn *fc, int fd); /* [claim] */
void nb_progress(struct fconn *fc, int fd);     /* claims; returns if busy */
/* A readiness hook saw fd readable: 1 when those bytes are an asynchronous
 * heal's session replies (moved on now) and the event must be hidden. */
int nb_event_in(int fd);
/* Is any asynchronous heal replaying a session log now? */
int nb_session_replays(void);
/* Moves every pending replay on; how many are still pending. */
int nb_progress_all(void);

/* ---- watch.c: requests on replicas that will not answer ---- */
/* A replica that let a request time out is tried last for a while. */
void watch_suspect(uint32_t svc, int rep, uint32_t timeout_ms);
/* Heals every such connection; at most once a slice, from readiness waits. */
void watch_all(void);
/* Marks the replicas that let a request time out lately as dead in this
 * copy of a route, so orders try them last; how many. */
int watch_demote(struct flare_route *rt);

#endif
