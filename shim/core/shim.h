/* libflare.so internals. The library lives inside other people's programs:
 * libc only, no threads, no signal handlers, no timers, no heap growth per
 * call; every real symbol is resolved once in the constructor (real.h).
 *
 * shim/lib holds one file per interposed call; they decide in one load
 * whether a descriptor is managed (fdtab_get) and call into this core.
 * The core calls only the real functions, never the library's own hooks.
 * A managed connection and its two state machines are in conn.h. */
#ifndef FLARE_SHIM_H
#define FLARE_SHIM_H

#include "addr.h"
#include "clock.h"
#include "conn.h"
#include "log.h"
#include "proof.h"
#include "real.h"
#include "usershm.h"
#include "table.h"

#include <limits.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/single_threaded.h>

/* A program that never started a thread cannot race itself: the request
 * path skips its lock and locked instructions there. glibc clears the
 * flag before a second thread exists (libstdc++ elides atomics on it);
 * the library starts no thread of its own. */
static inline int flare_threaded(void) { return !__libc_single_threaded; }

#define FLARE_EXPORT __attribute__((visibility("default")))
/* A blocking wait for a reply on a managed socket sleeps in poll(2) at most
 * this long at a time (never through a socket option the program could
 * see): between slices the library looks at the table and the connection,
 * so a program waiting on a silently dead host moves on. */
#define FLARE_SLICE_MS 50

/* ---- statistics ---- */
/* Counted as things happen (relaxed atomics); FLARE_LOG=info logs them at
 * exit, and FLARE_STATS=PATH appends them to PATH as one line of
 * name=value pairs (init.c), for tests and scripts. */
#define FLARE_STATS_FIELDS(X)                                                                      \
	X(managed)                                                                                 \
	X(connect_failovers)                                                                       \
	X(failovers)                                                                               \
	X(heals_async)                                                                             \
	X(replays)                                                                                 \
	X(replay_bytes)                                                                            \
	X(passed_errors)                                                                           \
	X(table_dead_wakeups)                                                                      \
	X(request_timeouts)                                                                        \
	X(queries_answered)                                                                        \
	X(queries_failed) X(rebinds) X(switches) X(tls_linked) X(tls_heals) X(tls_refused)
#define FLARE_STATS_FIELD(name) uint64_t name;
struct flare_stats {
	FLARE_STATS_FIELDS(FLARE_STATS_FIELD)
};
#undef FLARE_STATS_FIELD
extern struct flare_stats flare_stats;
#define STAT_INC(f) __atomic_add_fetch(&flare_stats.f, 1, __ATOMIC_RELAXED)
#define STAT_ADD(f, n) __atomic_add_fetch(&flare_stats.f, (n), __ATOMIC_RELAXED)
/* A process counter f and, for the host's agent, service svc's counter ss
 * in this process's slot of NAME.user.UID when it has one (usershm.c) */
extern struct flare_user_slot *flare_user_slot;
#define COUNT(f, svc, ss, n)                                                                       \
	do {                                                                                       \
		STAT_ADD(f, (n));                                                                  \
		struct flare_user_slot *s_ = __atomic_load_n(&flare_user_slot, __ATOMIC_ACQUIRE);  \
		if (s_)                                                                            \
			__atomic_add_fetch(&s_->v[(svc) % FLARE_USER_SERVICES][ss], (n),           \
					   __ATOMIC_RELAXED);                                      \
	} while (0)
/* Claims this process's slot on its first call (later ones: one load) */
void usershm_attach(void);
void usershm_atfork_child(void);
/* This user's round-robin turn for a service, shared by its processes */
uint64_t usershm_rr_ticket(uint32_t svc_index);

/* ---- fdtab.c: descriptor -> connection, and what is known of a descriptor ---- */
int fdtab_init(void);
/* NULL for unmanaged: the fast path, inline in every hook */
extern struct fconn **flare_fdtab;
extern size_t flare_fdtab_size;
static inline struct fconn *fdtab_get(int fd)
{
	if ((unsigned)fd >= flare_fdtab_size)
		return NULL;
	return __atomic_load_n(&flare_fdtab[fd], __ATOMIC_ACQUIRE);
}
struct fconn *fconn_new(void);
/* Recycles a connection no descriptor names any more, at once or, while
 * a thread holds its claim, when that thread lets go. */
void fconn_release(struct fconn *fc);
void fconn_release_owed(struct fconn *fc);
/* Drops from fds[] the numbers the table no longer gives this connection
 * (a close from a signal handler could not take the lock). [lock] */
void fconn_prune_locked(struct fconn *fc);
/* The library's mutexes are error-checking: a thread that already holds
 * one gets EDEADLK, not a deadlock (close from a signal handler). */
void flare_mutex_init(pthread_mutex_t *m);
void fdtab_attach(int fd, struct fconn *fc);
/* Drops fd from its connection; releases the connection with its last
 * descriptor. */
void fdtab_detach(int fd);
/* Drops fd from its connection without releasing it (a connect that gave up). */
void fdtab_unlink(int fd);
void fdtab_detach_range(unsigned first, unsigned last);
/* fd was just made by the kernel (socket, accept, pipe, socketpair):
 * whatever the library knew of the number was a descriptor closed where
 * no hook saw it (closefrom, fclose, _Fork's child), and is forgotten;
 * its option bits become opts. */
void fdtab_fresh(int fd, int opts);
/* After dup/dup2/dup3/F_DUPFD: newfd names oldfd's connection (if any),
 * and whatever newfd named before is forgotten; returns newfd. */
int fdtab_after_dup(int oldfd, int newfd);
/* One descriptor number of the connection, or -1. */
int fconn_first_fd(struct fconn *fc);
/* What the library knows of a descriptor's socket: the options the program
 * set (read back only when they were set), and its kind. They follow dup,
 * and are forgotten on close. */
#define FLARE_BUF_RCV 1
#define FLARE_BUF_SND 2
#define FLARE_SET_RCVTIMEO 4
#define FLARE_SET_BIND 8
#define FLARE_SET_KEEPALIVE 16
#define FLARE_SET_USER_TIMEOUT 32
#define FLARE_INET_STREAM 64 /* made by socket() as an AF_INET(6) SOCK_STREAM */
void fdtab_note_opt(int fd, int bits);
void fdtab_set_opts(int fd, int bits);
int fdtab_opts(int fd);
void fdtab_clear_opts(int fd);
void fdtab_atfork_child(void);
void fdtab_atfork_parent(void);
/* Every lock of the library is made anew in a fork child (another thread
 * may have held it at the fork): these and fdtab_atfork_child. */
void dial_atfork_child(void);
void route_atfork_child(void);
void register_atfork_child(void);
/* up to max live connections for which want() holds */
int fdtab_collect(int (*want)(struct fconn *, void *), void *arg, struct fconn **out, int max);

/* ---- route.c: the shared table ---- */
int route_lookup(const struct flare_addr *a, struct flare_route *out);
const char *route_shm_name(void); /* FLARE_SHM, or /flare */
int route_read(uint32_t svc_index, struct flare_route *out);
int route_lookup_replica(const struct flare_addr *a, struct flare_replica_info *out);
/* A round-robin ticket for a service: shared by the host's clients when
 * the agent's counters are there, else this process's own. */
/* The table's moves generation (0: no table), and the move asked of the
 * connection from client to replica `from` (global indexes). */
uint64_t route_moves_gen(void);
/* The table's owner (its agent's user); 0, or -1 when no table is open */
/* The table's ranking generation (one load; 0: no table) */
uint64_t route_table_gen(void);
int route_find_move(const struct flare_addr *client, uint32_t from, uint32_t *to);
/* Is the peer of local socket fd the deployment's (root, or the table's
 * owner)? Its uid goes in *peer_uid. */
int route_peer_trusted(int fd, uid_t *peer_uid);

/* ---- order.c: which replicas to try, in which order (pure) ---- */
/* base's replicas, live ones first then dead ones, each once, skipping and
 * marking those in seen; returns how many were written to out */
int order_live_first(const struct flare_route *rt, const uint8_t *base, int nb, uint8_t *seen,
		     uint8_t *out);
/* For a new connection: the ranking (the primary alone under static
 * failover), then every replica; live ones first. */
int order_connect(const struct flare_route *rt, uint8_t *out);
/* After replica cur failed: the manager's answer (n_asked >= 0, reactive)
 * or cur's pushed ranking (none under static), then every other replica,
 * live first, and cur itself last (it may have been restarted); replicas
 * in the exclude mask (already tried for this request) are left out. */
int order_failover(const struct flare_route *rt, int cur, int failover, const uint8_t *asked,
		   int n_asked, uint32_t exclude, uint8_t *out);

/* ---- balance.c: the replica a new binding goes to ---- */
/* Under the service's balance policy, among live replicas but exclude;
 * -1 for `primary` (the ranking's order decides) or when none is live. */
int balance_pick(const struct flare_route *rt, uint64_t rnd, uint64_t ticket, int exclude);
uint64_t balance_random(void);
/* order_connect's candidates with pick (if >= 0) first */
int order_balanced(const struct flare_route *rt, int pick, uint8_t *out);

/* ---- rebind.c: moving a live connection at a request boundary ---- */
/* Before a write on a connection whose service rebinds (on demand or per
 * request): moves it to another replica when it is at a boundary and the
 * manager or the policy says so. Never blocks, never fails the write. */
void rebind_at_write(struct fconn *fc, int fd);
/* Closes the sockets a rebinding connection keeps (it is recycled). */
void rebind_release(struct fconn *fc);

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
/* The order of replicas a heal tries after fc->cur failed (asking the
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

/* ---- wait.c: the readiness hooks' shared loop ---- */
/* A readiness wait restarted after hidden events keeps the program's
 * deadline: wait_deadline(timeout) once, then wait_left(timeout, deadline)
 * gives the milliseconds left (-1 stays forever, 0 means it is over). */
int64_t wait_deadline(int timeout_ms);
int wait_left(int timeout_ms, int64_t deadline);
/* The longest a readiness wait may sleep in the kernel this time, and what
 * to do when it slept and nothing was ready. */
int wait_slice(int timeout_ms);
void wait_slept(void);
/* wait() sleeps at most ms (-1: no limit) in the kernel, filter() hides
 * the events of connects the library moved on from and returns how many
 * are left; it goes on until one is left or the program's timeout is over,
 * and leaves the milliseconds left in left_ms. */
struct sliced_wait {
	int (*wait)(struct sliced_wait *w, int ms);
	int (*filter)(struct sliced_wait *w, int n);
	int left_ms;
	/* the program's own timeout, when it had one finer than milliseconds:
	 * a wait of exact_ms (the whole of it) sleeps exactly that */
	const struct timespec *exact;
	int exact_ms;
};
/* A program's timeout in milliseconds, rounded up (a sub-millisecond
 * sleep is a sleep, not a poll), at most INT_MAX; -1 for none, -2 for a
 * value the kernel rejects (the hook passes the call through). */
int wait_ms_of_ts(const struct timespec *ts);
/* What the wait of ms sleeps: the program's exact timeout when ms is all of it. */
struct timespec wait_ts(const struct sliced_wait *w, int ms);
/* Inline in each hook, so that its wait and filter are direct calls. */
extern unsigned flare_waits;
void watch_all(void);
static inline __attribute__((always_inline)) int wait_sliced(struct sliced_wait *w, int timeout)
{
	/* the program's deadline, read off the clock only when a second wait
	 * needs it: a wait that returns events (nearly all) costs no clock */
	int64_t end = 0;
	int have_end = 0;
	for (;;) {
		int slice = wait_slice(timeout);
		int n = w->wait(w, slice);
		if (n < 0)
			return n;
		/* a busy loop looks once in 64 waits (watch_all reads the clock),
		 * an idle one after every slice it slept; the count is only a
		 * throttle: no locked instruction per wait, a lost update is fine */
		if (__atomic_load_n(&flare_n_outstanding, __ATOMIC_ACQUIRE)) {
			unsigned k = __atomic_load_n(&flare_waits, __ATOMIC_RELAXED) + 1;
			__atomic_store_n(&flare_waits, k, __ATOMIC_RELAXED);
			if (n == 0 || (k & 63) == 0)
				watch_all();
		}
		if (n == 0)
			wait_slept();
		int left = n ? w->filter(w, n) : 0;
		if (left > 0 || timeout == 0 || (n == 0 && slice == timeout)) {
			w->left_ms = left > 0 ? timeout : 0;
			return left;
		}
		if (timeout > 0) {
			if (!have_end) {
				/* a wait that came back empty slept its slice; one whose
				 * events were all hidden is taken as having slept none */
				end =
				    (int64_t)flare_monotonic_ms() - (n == 0 ? slice : 0) + timeout;
				have_end = 1;
			}
			if ((timeout = wait_left(timeout, end)) == 0) {
				w->left_ms = 0;
				return 0;
			}
		}
	}
}

/* ---- session.c: a framed connection's session state, replayed ---- */
int session_pending(struct fconn *fc);
/* Replays the session log on connected socket fd, checking each reply; 0,
 * or -1 (logged) when the new connection must not be used. */
int session_replay(struct fconn *fc, int fd, int timeout_ms, const char *replica);
/* The same without blocking, for an asynchronous heal: start (or start
 * over on another socket), then step: 1 while under way (fd not ready),
 * 0 done, -1 (logged) when the new connection must not be used. [claim] */
void session_async_start(struct fconn *fc);
/* One entry of the log at off: the command, and the reply the program got;
 * and whether a replica's reply to it is the same (logged when not). */
struct sess_entry {
	const uint8_t *cmd, *rep;
	uint32_t req, rep_len, next;
	int whole;
};
void session_entry_at(const uint8_t *log, uint32_t off, struct sess_entry *e);
int session_same_reply(const struct sess_entry *e, const uint8_t *got, uint32_t got_len,
		       uint8_t rflags, const char *replica);
/* Feeds n bytes of a session command's reply to its framer f, keeping its
 * first bytes in got: 0 while it goes on, 1 when it ended with the last
 * byte, -1 when it cannot be read or more follows it. */
int session_reply_feed(struct fr_rep *f, const uint8_t *p, size_t n, uint8_t *got,
		       uint32_t *got_len, uint8_t *rflags);
int session_async_step(struct fconn *fc, int fd);

/* ---- watch.c: requests on replicas that will not answer ---- */
#define FLARE_SILENT_MS 100     /* no acknowledgement this long: a silent peer */
#define FLARE_DEAD_GRACE_MS 300 /* a reply still overdue this long after the death */
/* A replica that let a request time out is tried last for a while. */
void watch_suspect(uint32_t svc, int rep, uint32_t timeout_ms);
/* Heals every such connection; at most once a slice, from readiness waits. */
void watch_all(void);
/* Marks the replicas that let a request time out lately as dead in this
 * copy of a route, so orders try them last; how many. */
int watch_demote(struct flare_route *rt);

/* ---- epreg.c: epoll registrations that follow a swap, read from the kernel ---- */
extern unsigned long flare_epoll_ctls; /* [atom] the program's epoll_ctl calls */
/* Every registration of fc's descriptors in the process's epoll
 * instances; -1 when they cannot be known (no /proc, too many). [lock] */
int ep_read(struct fconn *fc, struct ep_regs *out);
/* Takes them off their instances (before a dup3), puts them back (after). */
void ep_detach(const struct ep_regs *regs);
void ep_attach(const struct ep_regs *regs);
/* fd behind (epfd, data) among pending connections (connecting, replaying), or -1 */
int ep_find_pending(int epfd, uint64_t data);
/* the same among every live connection (an error event: rare) */
int ep_find(int epfd, uint64_t data);

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

/* Readiness hooks with nothing to do but the real call: no managed
 * connection in the process. With one, every wait goes through the sliced
 * loop, whose filters look at an event only for its error and hang-up
 * bits (and, while connects are pending, its writability). */
static inline int wait_is_plain(void)
{
	return !__atomic_load_n(&flare_n_managed, __ATOMIC_ACQUIRE);
}

/* ---- query.c: reactive failover ---- */
/* The failover targets the manager gives for fc's failed replica, as local
 * indexes, best first; -1 (logged) when no answer came, and the caller
 * uses the table's ranking. */
int query_targets(const struct fconn *fc, const struct flare_route *rt, uint8_t *out);

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
	return __atomic_load_n(&fc->tls, __ATOMIC_ACQUIRE) == FT_LINKED;
}
/* The socket hooks' part for a linked connection: its socket failed
 * (reset, EOF, EPIPE), which the SSL hook that sees OpenSSL fail acts on. */
void tls_sock_failed(struct fconn *fc);
/* A heal asked of a linked connection (watch.c: a dead replica, an overdue
 * reply) shuts its socket's reading side, so that OpenSSL meets the
 * failure in the program's own call and the SSL hook heals there: 0; -1,
 * the socket untouched, when that heal would not happen (heal_plan). */
int tls_abandon_socket(struct fconn *fc, const char *why);
/* TLS heals under way, and their progress from the readiness waits */
extern int flare_tls_healing;
int tls_progress_all(void);
void tls_atfork_child(void); /* the TLS table's locks, made anew */
/* A relaxed count: no locked instruction on the request path */
static inline void sock_count(uint64_t *c, ssize_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + (uint64_t)n, __ATOMIC_RELAXED);
}

/* ---- io.c: shared bodies of the read and write families ---- */
/* The descriptor's O_NONBLOCK, read once between two of the program's own
 * flag changes (fcntl F_SETFL, ioctl FIONBIO: they call fd_flags_changed) */
int fd_nonblocking(struct fconn *fc, int fd);
void fd_flags_changed(struct fconn *fc);
ssize_t flare_recvmsg_managed(struct fconn *fc, int fd, struct msghdr *msg, int flags);
ssize_t flare_recv_managed(struct fconn *fc, int fd, void *buf, size_t len, int flags);
ssize_t flare_send_managed(struct fconn *fc, int fd, const void *buf, size_t len, int flags);
ssize_t flare_sendto_managed(struct fconn *fc, int fd, const void *buf, size_t len, int flags,
			     const struct sockaddr *to, socklen_t tolen);
ssize_t flare_sendmsg_managed(struct fconn *fc, int fd, const struct msghdr *msg, int flags);
/* Arguments the kernel rejects (a negative or too large count, a null
 * array): the program's call goes to the kernel as it is, for its answer
 * (EINVAL, EMSGSIZE, EFAULT), never through code that would read them. */
static inline int iov_args_bad(const struct iovec *iov, long n)
{
	return n < 0 || n > IOV_MAX || (n && !iov);
}
ssize_t flare_readv_managed(struct fconn *fc, int fd, const struct iovec *iov, int iovcnt);

/* ---- sig.c ---- */
/* Would the kernel have restarted a call interrupted now (every installed
 * handler has SA_RESTART)? */
int sig_would_restart(void);
/* Raises SIGPIPE where the program would have received one. */
void sig_pipe_as_program(int flags);

/* ---- register.c: server side ---- */
void register_listen(int fd);
void register_retry(void);
void register_forget_fd(int fd);
int register_knows(int fd);
void register_forget_range(unsigned first, unsigned last);

#endif
