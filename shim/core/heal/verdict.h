/* The heal decision, in one place (verdict.c). Every path that meets a
 * possible failure of a managed connection asks here:
 *
 *   path                         what it needs to act                      asks
 *   a read's EOF or error,       the kernel's own result of the call       heal() -> heal_plan()
 *   a write's error                                                        -> verdict_refusal()
 *   a readiness event (poll,     the TCP state says the connection ended,  verdict_event()
 *   select, epoll)               and no reply byte waits to be read
 *   the watch (a blocking        request_timeout_ms passed, or the table   verdict_watch()
 *   read's slices, readiness     says dead and the connection agrees (or
 *   waits while a request is     the death's reason says it cannot)
 *   outstanding)
 *   a TLS session's failure      OpenSSL failed on a failed socket         tls_heal -> heal_plan()
 *                                                                          -> verdict_refusal()
 *
 * and, whatever the evidence, before anything is done, verdict_refusal():
 * the descriptors are still the connection's socket (identity), the
 * kernel counted no byte the hooks did not (bytes), the exchange and the
 * trust allow a replay (exchange_healable: the trust table, the framers'
 * permissions), and the last heal's replay was not refused. */
#ifndef FLARE_VERDICT_H
#define FLARE_VERDICT_H

struct fconn;

/* Why fc must not be healed now (logged), or NULL. May forget numbers that
 * became other descriptors, taint the connection (bytes moved unseen) or
 * break it (a refused replay). [claim] */
const char *verdict_refusal(struct fconn *fc, const char *why);
/* A readiness hook saw an error or hang-up on fd: the reason to heal
 * (the connection ended and may be healed), or NULL: the event stands. */
const char *verdict_event(struct fconn *fc, int fd);
/* A request outstanding on fc (descriptor fd): the reason to replay it
 * elsewhere now, or NULL. */
const char *verdict_watch(struct fconn *fc, int fd);

#endif
