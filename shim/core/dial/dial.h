/* New sockets to replicas: the program's connect to a service address,
 * the library's own dials, moving down the candidates without blocking, and
 * the TCP timeouts every managed socket gets. */
#ifndef FLARE_DIAL_H
#define FLARE_DIAL_H

#include "conn/conn.h"
#include "table.h"

#include <sys/socket.h>

/* ---- dial.c: new sockets to replicas ---- */
/* A non-blocking connect of a new socket to replica idx, options copied
 * from like; returns the fd with *err 0 or EINPROGRESS, or -1. */
int dial_start(struct fconn *fc, int like, const struct flare_route *route, int idx, int *err);
/* The same, waited for within the service's connect timeout; *err 0 on
 * success. */
int dial_replica(struct fconn *fc, int like, const struct flare_route *route, int idx,
		 int *err_out);
/* Connects fd (blocking or not, as the program left it) within the
 * timeout; returns 0 or an errno value. */
int connect_within(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms);

/* ---- manage.c: connect() to a service address ---- */
int dial_managed(int fd, int type, const struct sockaddr *sa, socklen_t len,
		 const struct flare_addr *dst, const struct flare_route *rt);

/* ---- nbconnect.c: moving down the candidates without blocking ---- */
/* Candidates cand[pos..n) are left to try. [claim or init] */
void nb_start(struct fconn *fc, const uint8_t *cand, int n, int pos, int first_err);
/* The attempt on fd failed with err: the next candidate is dialed and put
 * in place. 1: a new attempt is under way (hide the event); 0: none left
 * (FC_FAILED, the error owed). [claim] */
int nb_advance(struct fconn *fc, int fd, int err);
/* A readiness hook saw an event on fd: writable, and with an error flag
 * (or unable to tell: select); 1 when the event belongs to an attempt the
 * library moved on from and must be hidden from the program. */
int nb_event(int fd, int writable, int error);
/* The connection's error as the program should learn it: one the library
 * owes, else (when always, or while connecting) the kernel's SO_ERROR, read
 * and cleared; a failed connect with candidates left is replaced
 * (*moved_on = 1) and reads as none, and so does the failure of an
 * established connection that could be healed. -1 when SO_ERROR cannot be
 * read. */
int nb_take_error(struct fconn *fc, int fd, int always, int *moved_on);

/* ---- timeouts.c: TCP_USER_TIMEOUT and keepalive on managed sockets,
 * applied once a connection outlives FLARE_TIMEOUTS_DEFER_MS ---- */
#define FLARE_TIMEOUTS_DEFER_MS 20
extern int flare_n_timeouts_owed; /* readiness waits are sliced while > 0 */
void timeouts_apply(struct fconn *fc, int fd);
void timeouts_defer(struct fconn *fc);
void timeouts_forget(struct fconn *fc);
/* applies them if owed (and, with due_only, once the connection is old enough) */
void timeouts_settle(struct fconn *fc, int due_only);
void timeouts_settle_all(void);

#endif
