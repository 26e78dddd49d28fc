/* A managed connection: the library's state for a TCP socket the program
 * connected to a service address. Found through the descriptor table
 * (fdtab.c); one connection may have several descriptor numbers (dup).
 *
 * Two small state machines describe it, each with its transitions written
 * down here and made only through the functions below.
 *
 * The link (fc->link.state): what the socket behind the program's descriptor is
 * doing, and what the library still owes the program.
 *
 *   state               meaning                          events that move it
 *   FC_READY            connected, or failed with the    heal, blocking: swapped -> READY
 *                       error left in the kernel; the    heal, non-blocking: -> HEAL_CONNECTING
 *                       library owes nothing                or REPLAYING; with nothing to resend
 *                                                           -> CONNECTING or READY
 *   FC_CONNECTING       the program's non-blocking       connected -> READY
 *                       connect is in progress; the      refused/timed out -> CONNECTING (next
 *                       next candidates are in cand[]       replica) | FAILED (none left)
 *   FC_HEAL_CONNECTING  an asynchronous heal's new       connected -> REPLAYING; refused ->
 *                       socket is connecting, with a        HEAL_CONNECTING | REPLAYING (the next
 *                       request to resend                   replica took it at once) | FAILED
 *   FC_REPLAYING        connected; the outstanding       all sent -> READY; the send failed ->
 *                       request is being resent             HEAL_CONNECTING | REPLAYING | FAILED
 *   FC_FAILED           no replica left: conn_err is     the program takes the error -> READY
 *                       owed to the program
 *   FC_FREE             on the free list                 fconn_new -> READY
 *   (any but FREE)                                       close -> FREE
 *
 * A heal may start in any live state (READY, CONNECTING, HEAL_CONNECTING,
 * REPLAYING: the replica a heal moved to can die too) and leaves the
 * connection in the live state its new socket is in, as from READY.
 * CONNECTING, HEAL_CONNECTING and REPLAYING are "pending": such a
 * connection is on the pending list (conn.c), which the readiness hooks and
 * the program's next calls on the descriptor use to move it on; the
 * readiness hooks exit at once while that list is empty.
 *
 * The exchange (fc->ex.state): where the conversation is, which decides
 * whether a failure may be healed (exchange.c).
 *
 *   FX_FRESH     nothing written or read yet      write -> REQUEST; read -> ANSWERED
 *   FX_REQUEST   bytes written since the last     write -> REQUEST (appended), or OVERSIZE;
 *                byte read, all kept in buf          read -> ANSWERED
 *   FX_OVERSIZE  the request outgrew buf          read -> ANSWERED
 *   FX_ANSWERED  a reply byte was read since      write -> REQUEST (buf restarts) | OVERSIZE;
 *                the last write                   a write that sent nothing failed -> FRESH
 *
 * A failure is healed in FRESH (reconnecting re-runs nothing, even with
 * replay = none) and in REQUEST when the trust below allows a replay; in
 * OVERSIZE and ANSWERED it surfaces, as it would without the library.
 *
 * The trust (fc->ex.trust, trust.c): what the library knows the connection to
 * be, which decides whether a heal can rebuild what the program believes
 * the connection holds. A replay onto a fresh connection is exact only
 * when the fresh connection then has the same history.
 *
 *   trust            meaning                          a failure is healed
 *   TR_FIRST         nothing of the server's read     FRESH; REQUEST unless replay
 *                    yet: the bytes written are the      = none (the replay is the whole
 *                    connection's whole history          history)
 *   TR_FIRST_SESSION the same, and the first bytes    as TR_FIRST
 *                    written are a session protocol's
 *                    (TLS, SSH, HTTP/2, PostgreSQL...)
 *   TR_STATELESS     opaque, and the service declared as the exchange says (FRESH,
 *                    replay = "request-reply": every     REQUEST)
 *                    request is its own history
 *   TR_FRAMED        a framer reads every request and as the framer says (framed.c)
 *                    reply from the first byte
 *   TR_SESSION       the server's bytes were read on  never: a new connection would
 *                    a connection whose state a new      lack the session
 *                    one lacks (the server spoke first,
 *                    a session protocol, or opaque
 *                    without a declared request-reply)
 *   TR_TAINTED       bytes moved where no hook sees   never: a replay would lack them
 *                    them (sendfile, splice, stdio...)
 *   TR_BROKEN        a heal's replay was refused      never: the program's own reconnect
 *                                                        gets connect-time failover
 *
 *   event             from              to
 *   TE_FRAMED         FIRST             FRAMED
 *   TE_SESSION_PROTO  FIRST, FRAMED     FIRST_SESSION (the very first bytes)
 *   TE_READ           FIRST             STATELESS (declared) | SESSION
 *                     FIRST_SESSION     SESSION
 *   TE_SERVER_FIRST   FIRST, FIRST_SESSION  SESSION (a byte read before any written)
 *   TE_FRAMING_LOST   FIRST, FRAMED     STATELESS (declared) | SESSION
 *                     FIRST_SESSION     SESSION
 *   TE_TAINT          any but BROKEN    TAINTED
 *   TE_REFUSED        any               BROKEN
 * Every other pair leaves the trust as it is; from SESSION, TAINTED and
 * BROKEN no event leads back to a trust that heals.
 *
 * Two more rules bound every heal, whatever the protocol:
 * - A request goes to each replica at most once by a heal: fc->ex.replayed
 *   holds the replicas this request (or this fresh connection) was moved
 *   to since the last reply byte; a heal skips them, and when none is left
 *   the failure surfaces.
 * - A heal's replay that is refused (the new connection fails at once with
 *   no reply, or fails again right after answering the replayed request)
 *   makes the connection TR_BROKEN: the failure surfaces once, and heals
 *   cannot go round once per request on a session flare cannot read.
 *
 * Who may write what (the code agrees; see each field):
 *   [init]  set by fconn_new/the connect before the connection is attached
 *           to a descriptor, read-only afterwards
 *   [claim] only by the thread holding the connection's claim (fconn_claim):
 *           heals, non-blocking connect moves, asynchronous replays
 *   [lock]  under fc->lock, which is never held across a blocking call
 *   [atom]  atomics only
 *   [prog]  set by the program's own option calls (setsockopt, fcntl,
 *           ioctl) on its thread; a program racing its own option changes
 *           against its reads gets one value or the other
 * Lock order: tab_lock (fdtab.c) or pending_lock (conn.c) before fc->lock;
 * no state transition is made while holding fc->lock. */
#ifndef FLARE_CONN_H
#define FLARE_CONN_H

#include "addr.h"
#include "flare.h"
#include "frame/frame.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>

#define FLARE_MAX_ALIASES 8
#define FLARE_MAX_EPOLL 16 /* registrations of one connection a swap carries over */
/* framed connections: requests awaiting replies that are tracked, and
 * the session log's size (framed.c, session.c) */
#define FLARE_MAX_PIPELINE 64 /* a power of two */
#define FLARE_SESSION_LOG 2048
#define FLARE_SESSION_REPLY 64

enum fconn_state {
	FC_FREE,
	FC_READY,
	FC_CONNECTING,
	FC_HEAL_CONNECTING,
	FC_REPLAYING,
	FC_FAILED,
	FC_N_STATES
};

enum fconn_xchg { FX_FRESH, FX_REQUEST, FX_OVERSIZE, FX_ANSWERED };

/* A TLS session over the connection (tls.h): none seen, linked (the
 * exchange is the session's plaintext, fed by the SSL hooks), or refused
 * (the socket's bytes are not one session's alone: the socket rules) */
enum fconn_tls { FT_NONE, FT_LINKED, FT_OFF };
struct tls_sess;

/* epoll registrations of a connection's descriptors (epreg.c) */
struct ep_reg {
	int epfd, fd;
	struct epoll_event ev;
};
struct ep_regs {
	int n;
	struct ep_reg r[FLARE_MAX_EPOLL];
};

enum fconn_trust {
	TR_FIRST,
	TR_FIRST_SESSION,
	TR_STATELESS,
	TR_FRAMED,
	TR_SESSION,
	TR_TAINTED,
	TR_BROKEN,
	TR_N
};
enum fconn_trust_event {
	TE_FRAMED,
	TE_SESSION_PROTO,
	TE_READ,
	TE_SERVER_FIRST,
	TE_FRAMING_LOST,
	TE_TAINT,
	TE_REFUSED,
	TE_N
};

/* Protocols whose connections carry a session a heal cannot rebuild,
 * recognised from the first bytes a connection writes. */
enum flare_session_proto {
	SESSION_NONE,
	SESSION_POSTGRES,
	SESSION_TLS,
	SESSION_SSH,
	SESSION_HTTP2,
	SESSION_AMQP
};

/* What the service is configured to be, copied from the table when the
 * program connects: [init], read-only afterwards. A copy and not a pointer
 * into the table: a reload rewrites the table under live connections,
 * which keep the settings they were made with. */
struct fc_svc {
	uint8_t binding;   /* enum flare_binding */
	uint8_t replay;    /* the replay mode */
	uint8_t proto;     /* the protocol, for a linked session's plaintext */
	uint8_t unsafe_ok; /* replay_unsafe */
	uint8_t failover;
	uint32_t request_timeout_ms;
	uint32_t index; /* in the table */
	uint32_t connect_timeout_ms, user_timeout_ms;
	uint16_t ka_idle, ka_intvl, ka_cnt;
	uint32_t rebind_ms; /* least time between two rebinds */
};

/* The link: the socket behind the program's descriptors (the state
 * machine above) and what the request path reads of it. */
struct fc_link {
	int state;         /* [claim] enum fconn_state, read with atomic loads */
	uint32_t nb_known; /* [atom] O_NONBLOCK as last read: an epoch (<< 2) | 1 blocking, 2 not */
	uint8_t rd_waits;  /* [atom] 0: reads find their bytes waiting; else waits since (io.c) */
	int timeouts_owed; /* [atom] flare's TCP timeouts not set yet */
	uint64_t timeouts_due_ms;     /* coarse clock; published by timeouts_owed (release) */
	struct timeval prog_rcvtimeo; /* [prog] the program's SO_RCVTIMEO (0: none) */
	/* bytes the socket hooks moved on the socket in use (relaxed: a count
	 * two threads race on disagrees with the kernel's, and so is not
	 * healed) */
	uint64_t sock_rd, sock_wr;
	int cur;      /* [claim] local index of the replica connected to */
	int conn_err; /* [atom] the error owed in FC_FAILED */
};

/* The exchange and the trust (exchange.c, trust.c): where the
 * conversation is, and what a heal may rebuild of it. */
struct fc_exchange {
	int state;             /* [atom] enum fconn_xchg; moved under [lock] by writes */
	int trust;             /* [atom] enum fconn_trust, moved by trust_event */
	uint32_t len;          /* [lock] bytes of the outstanding request in buf */
	uint64_t req_start_ms; /* [atom] when the outstanding request went out (or was replayed) */
	int shut_wr;           /* [atom] the program half-closed: repeat it after a replay */
	uint32_t replayed;     /* [atom] replicas (bits) a heal moved this request to */
	uint32_t n_req;        /* [lock] writes that began after a read (requests, roughly) */
	uint8_t sess_proto;    /* [lock] enum flare_session_proto of the first bytes written */
	uint8_t heal_answered; /* [atom] a reply byte was read since the last heal */
	uint32_t heal_req;     /* [claim] n_req at the last heal */
	uint64_t heal_ms;      /* [claim] when the last heal's replay went out (0: never healed) */
	uint64_t dead_seen_ms; /* [atom] when a watch first saw the replica dead (watch.c) */
	uint32_t dead_req;     /* [atom] n_req then */
};

/* A TLS session linked to the connection (tls.h) */
struct fc_tls {
	uint8_t mode;          /* [atom] enum fconn_tls */
	uint8_t sock_failed;   /* [atom] its socket failed (reset, EOF, EPIPE) */
	uint8_t pipe_owed;     /* [atom] an EPIPE the program would have had SIGPIPE for */
	struct tls_sess *sess; /* [atom] the session (tls_table.c) */
};

/* The framer (framed.c) of a service whose protocol has one: [lock] */
struct fc_framer {
	uint8_t proto;         /* enum flare_proto; AUTO until the first write */
	uint8_t framing_over;  /* a request or reply ended framing: no heal again */
	uint8_t server_closes; /* the last reply said the server closes after it */
	uint8_t in_txn;        /* MULTI/WATCH written, its end not answered */
	uint8_t overflow;      /* requests outgrew buf: not replayable until answered */
	uint8_t sess_broken;   /* the session log could not keep a command */
	uint32_t head;         /* buf[head, len) is not answered yet */
	uint32_t rep_read;     /* bytes of the oldest reply the program has read */
	uint32_t sess_len;     /* bytes in sess */
	uint32_t sess_rep_len; /* of the session command's reply being read */
	/* requests written whose replies are not whole, oldest at q_first (a
	 * ring of FLARE_MAX_PIPELINE, a power of two): where each ends in buf
	 * and its RQ_* flags */
	int q_n, q_first;
	struct fr_req frq;
	struct fr_rep frp;
	uint32_t q_end[FLARE_MAX_PIPELINE];
	uint16_t q_flags[FLARE_MAX_PIPELINE];
	uint8_t sess_rep[FLARE_SESSION_REPLY]; /* the session command's reply, its first bytes */
};

/* Who holds the connection and which numbers name it */
struct fc_owner {
	int claim;                  /* [atom] 1 while a thread holds the claim */
	int release_owed;           /* [atom] closed: recycle once the claim is let go */
	int fds_stale;              /* [atom] fds[] may name numbers the table forgot */
	int forked;                 /* [atom] it existed at a fork: another process shares it */
	pid_t claim_tid;            /* [atom] its thread, to take over after a siglongjmp */
	int on_pending;             /* [pending_lock, atom] listed on the pending list */
	int pending_fd;             /* [claim] socket of an interrupted heal, closed by the next */
	uint64_t pending_cookie;    /* [claim] its cookie: closed only while it is that socket */
	int fds[FLARE_MAX_ALIASES]; /* [lock] the descriptor numbers naming it */
	int n_fds;                  /* [lock] */
	/* the epoll registrations as last read, good while the program made
	 * no epoll_ctl call since (epreg.c): [lock] */
	struct ep_regs ep_cache;
	unsigned long ep_cache_ctls;
};

/* What the program dialed and bound: [init], read by connects */
struct fc_dial {
	int domain, type, protocol;
	struct flare_addr dialed;
	int has_bind;
	struct sockaddr_storage dialed_sa;
	socklen_t dialed_len;
	struct sockaddr_storage bind_sa;
	socklen_t bind_len;
};

/* A move under way without blocking (nbconnect.c, replay.c): [claim] */
struct fc_move {
	/* the replicas still to try, in order */
	uint8_t cand[FLARE_MAX_REPLICAS];
	int n_cand, cand_pos;
	int first_err;        /* the first refusal, what a connect reports at the end */
	uint32_t replay_len;  /* bytes of buf to resend (HEAL_CONNECTING, REPLAYING) */
	uint32_t replay_off;  /* of which sent so far */
	uint32_t replay_from; /* where they start (a framed connection's oldest unanswered) */
	/* an asynchronous heal's session replay (session.c), before buf: the
	 * log entry at sess_at, sent up to sess_sent (step 1) or its reply
	 * being read (step 2); step 0: none, or done */
	uint8_t sess_step;
	uint32_t sess_at, sess_sent, sess_got_len;
	uint8_t sess_got[FLARE_SESSION_REPLY];
	struct fr_rep sess_frp;
	uint64_t dial_ms; /* when the socket being connected was dialed */
};

/* Load balancing (rebind.c): [claim] */
struct fc_rebind {
	struct flare_addr local;       /* this socket's address, as its replica sees it */
	uint32_t local_gen;            /* the generation `local` was read at */
	uint64_t bound_ms;             /* when the connection was last bound (coarse clock) */
	uint64_t moves_seen;           /* the table's moves generation last looked at */
	int rb_fd1, rb_to;             /* on demand: a socket (fd + 1) connecting to rb_to */
	uint64_t rb_cookie;            /* that socket's, from when it was dialed */
	int pool1[FLARE_MAX_REPLICAS]; /* per request: a socket per replica (fd + 1) */
	uint32_t pool_ready;           /* pool sockets (bits) known to be connected */
	uint32_t pool_gen;             /* fc->gen when pool1[cur] was the program's socket */
	uint32_t pool_held;            /* pool sockets (bits) fc->pooled has a record of */
	uint32_t turn;                 /* per request: this connection's round-robin turn */
	uint64_t route_gen;            /* the table generation fc->route was read at */
	int route_ok;                  /* fc->route holds this connection's service */
	/* per request: the program's file flags and close-on-exec per number,
	 * read again when the program changes them (fcntl, ioctl hooks) */
	int flags_dirty; /* [atom] */
	int prog_fl, flags_nfds, flags_ok;
	uint32_t prog_cloexec; /* bits by index in fds[] */
	uint32_t pool_fl_ok;   /* pool sockets (bits) whose flags match prog_fl */
};

/* The proof (proof.h), read only when the library is about to act: the
 * socket's identity, the library's own bytes on it, and the offsets of
 * the kernel's counts from the seen ones: [claim] */
struct fc_proof {
	uint64_t cookie; /* [atom] */
	uint64_t lib_wr, lib_rd;
	uint64_t off_wr, off_rd;
	int counts_ok;
};

struct rb_pooled;

struct fconn {
	/* kept across recycling */
	pthread_mutex_t lock;               /* see [lock] */
	uint32_t gen;                       /* [atom] bumped on every swap and recycle */
	uint8_t *buf;                       /* [lock] the outstanding request, cap bytes */
	uint32_t cap;                       /* [init] */
	uint8_t *sess;                      /* [lock] the session log, FLARE_SESSION_LOG bytes */
	struct fconn *next_free, *all_next; /* under tab_lock (fdtab.c) */
	struct flare_route *route;          /* [claim] per request: the route, cached (rebind.c) */
	struct rb_pooled *pooled; /* [claim] per request: what was true of each pool socket
				   * when it was left, one per replica (rebind.c) */

	/* reset for every connection, from link on. What every request reads
	 * comes first, in as few cache lines as it fits (the program's server
	 * may share the CPU and evict them between two requests): the link,
	 * the service, the exchange, the TLS link; a framed connection's
	 * requests read the framer too. */
	struct fc_link link;
	struct fc_svc svc;
	struct fc_exchange ex;
	struct fc_tls tls;
	struct fc_framer fr;
	/* less often read, from here on */
	struct fc_owner own;
	struct fc_dial dial;
	struct fc_move mv;
	struct fc_rebind rb;
	struct fc_proof pf; /* last, so that no field a request reads moves */
};

/* ---- the link state machine (conn.c) ---- */
static inline int fconn_state(const struct fconn *fc)
{
	return __atomic_load_n(&fc->link.state, __ATOMIC_ACQUIRE);
}
/* a socket still connecting: the program's connect, or a heal's */
static inline int fconn_is_connecting(int state)
{
	return state == FC_CONNECTING || state == FC_HEAL_CONNECTING;
}
static inline int fconn_is_pending(int state)
{
	return fconn_is_connecting(state) || state == FC_REPLAYING;
}
const char *fconn_state_name(int state);
/* Is from -> to one of the transitions in the table above? */
int fconn_transition_legal(int from, int to);
/* Moves fc to state `to` (joining or leaving the pending list). An illegal
 * transition is refused with a logged error and returns -1: a library bug
 * must not become the program's crash. */
int fconn_enter(struct fconn *fc, int to);
/* FAILED -> READY for the caller that takes the owed error; 0 when none. */
int fconn_take_owed_error(struct fconn *fc);
/* Gives up fc->link.state's claim on the pending list, whatever the state (the
 * connection is being recycled). */
void fconn_leave_pending(struct fconn *fc);
/* Owed work (lock.h): drops listed connections no longer pending */
void pending_unlist_stale(void);

/* The claim: one thread at a time moves a connection's link. 1 when the
 * caller got it (or already held it: a siglongjmp out of a heal left it);
 * fconn_claim_wait spins a bounded while for holders that never block. */
int fconn_claim(struct fconn *fc);
int fconn_claim_wait(struct fconn *fc);
void fconn_unclaim(struct fconn *fc);
int fconn_claimed(const struct fconn *fc);
void conn_atfork_child(void);

/* Connections on the pending list for which want() holds (at most max). */
extern int flare_n_pending; /* [atom] connections on the pending list */
extern int flare_n_managed; /* [atom] live connections: readiness hooks exit at 0 */
int pending_collect(int (*want)(struct fconn *, void *), void *arg, struct fconn **out, int max);

/* ---- the trust (trust.c) ---- */
static inline int fconn_trust(const struct fconn *fc)
{
	return __atomic_load_n(&fc->ex.trust, __ATOMIC_ACQUIRE);
}
/* The table's next state (pure); stateless: the service declared
 * replay = "request-reply". */
int trust_next(int from, int event, int stateless);
/* Applies event to fc's trust; returns the new one. */
int trust_event(struct fconn *fc, int event);
const char *trust_name(int trust);
/* Bytes move on fd where no hook sees them: its connection is never
 * healed again (the failure surfaces as without the library). */
void fconn_taint(int fd, const char *why);

/* ---- the exchange (exchange.c): no system calls but the clock ---- */
/* Connections with a request outstanding (REQUEST, OVERSIZE): while there
 * are any, readiness waits are sliced to look at them (watch.c). */
extern int flare_n_outstanding; /* [atom] */
void exchange_reset(struct fconn *fc);
/* The connection is let go (closed): it waits for no reply any more. */
void exchange_retire(struct fconn *fc);
/* The program wrote n bytes (n may be 0: a write that failed before
 * sending anything still ends an answered exchange). */
void exchange_wrote(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n);
void exchange_wrote_buf(struct fconn *fc, const void *data, size_t n);
/* The program read n reply bytes (iov: where they are, for a framed
 * connection; NULL when unknown, a peek). */
void exchange_read(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n);
/* A write that sent nothing failed on a connection with nothing
 * outstanding (a keep-alive connection the server closed): the new
 * request has not started, so reconnecting re-runs nothing (FRESH). */
void exchange_write_failed(struct fconn *fc);
/* A request is written and no byte of its reply read. */
int exchange_outstanding(const struct fconn *fc);
/* May a failure now be healed? (see the table above) */
int exchange_healable(struct fconn *fc);
/* Between two exchanges: nothing outstanding, no reply partly read, no
 * transaction or session protocol that a new connection would lack (and,
 * with sessionless, no session state at all): the connection may move to
 * another replica before the program's next request. */
int exchange_boundary(struct fconn *fc, int sessionless);
/* The outstanding request's length, read under the lock: a heal resends
 * buf[0, len). Later writes only append, so the prefix stays valid. */
uint32_t exchange_replay_len(struct fconn *fc);
/* Which session protocol the first bytes a connection writes start, if any. */
int exchange_session_proto(const uint8_t *p, size_t n);
/* Where the bytes to replay start in buf (a framed connection's oldest
 * unanswered request; 0 otherwise). [claim] */
uint32_t exchange_replay_from(struct fconn *fc);
/* The connection moved to a new socket (a heal). */
void exchange_healed(struct fconn *fc);

#endif
