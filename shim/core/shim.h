/* libflare.so internals. The library lives inside other people's programs:
 * libc only, no threads, no signal handlers, no timers, no heap growth per
 * call; every real symbol is resolved once in the constructor.
 *
 * A "managed" descriptor is a TCP socket the program connected to a service
 * address listed in the shared table. Its state is a struct fconn, found
 * through an fd-indexed array (one load on the unmanaged fast path). */
#ifndef FLARE_SHIM_H
#define FLARE_SHIM_H

#include "addr.h"
#include "clock.h"
#include "log.h"
#include "table.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>

#define FLARE_EXPORT __attribute__((visibility("default")))
#define FLARE_MAX_ALIASES 8
#define FLARE_MAX_EPOLL 4
/* A blocking wait on a managed socket never sleeps longer than this in the
 * kernel: between slices the library looks at the table, so a program
 * waiting on a silently dead host moves on once the table says so. */
#define FLARE_SLICE_MS 50

/* ---- real functions (init.c) ---- */
struct epoll_event;
struct pollfd;
struct real_fns {
	int (*socket)(int, int, int);
	int (*poll)(struct pollfd *, unsigned long, int);
	int (*ppoll)(struct pollfd *, unsigned long, const struct timespec *, const void *);
	int (*select)(int, void *, void *, void *, struct timeval *);
	int (*pselect)(int, void *, void *, void *, const struct timespec *, const void *);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const void *);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*close)(int);
	int (*close_range)(unsigned, unsigned, int);
	int (*shutdown)(int, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*bind)(int, const struct sockaddr *, socklen_t);
	int (*listen)(int, int);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*getpeername)(int, struct sockaddr *, socklen_t *);
	int (*ioctl)(int, unsigned long, ...);
	pid_t (*fork)(void);
};

extern struct real_fns real;
extern int flare_ready;    /* real symbols resolved */
extern int flare_disabled; /* FLARE_DISABLE=1: pure pass-through */
extern pid_t flare_pid;    /* our pid, updated in fork children */

void flare_init(void);
/* 1 inside a vfork/CLONE_VM child sharing our memory: touch no state */
int flare_in_foreign_child(void);

/* ---- statistics ---- */
struct flare_stats {
	uint64_t managed, connect_failovers, failovers, replays, replay_bytes, passed_errors,
	    table_dead_wakeups;
};
extern struct flare_stats flare_stats;
#define STAT_INC(f) __atomic_add_fetch(&flare_stats.f, 1, __ATOMIC_RELAXED)
#define STAT_ADD(f, n) __atomic_add_fetch(&flare_stats.f, (n), __ATOMIC_RELAXED)

/* ---- managed connections ---- */
struct fconn {
	/* kept across recycling */
	pthread_mutex_t lock; /* request buffer, aliases; never held while blocking */
	uint32_t gen;         /* bumped (atomically) on every swap and recycle */
	uint8_t *buf;         /* request buffer, cap bytes */
	uint32_t cap;
	struct fconn *next_free, *all_next;

	/* reset for every connection, from here on */
	int healing;      /* a heal in progress (atomic) */
	pid_t healer_tid; /* its thread, to take over after a siglongjmp */
	int pending_fd;   /* socket of an interrupted heal, closed on the next one */
	int fds[FLARE_MAX_ALIASES];
	int n_fds;

	int domain, type, protocol;
	struct flare_addr dialed;
	struct sockaddr_storage dialed_sa;
	socklen_t dialed_len;
	uint32_t svc_index;
	int cur; /* local index of the replica connected to */
	uint8_t replay, failover;
	uint32_t connect_timeout_ms, user_timeout_ms;
	uint16_t ka_idle, ka_intvl, ka_cnt;
	struct timeval prog_rcvtimeo; /* the program's SO_RCVTIMEO (0: none) */
	int slice_set;                /* the kernel's SO_RCVTIMEO is our slice (blocking use) */
	int timeouts_owed;            /* flare's TCP timeouts not set yet (atomic) */
	uint64_t timeouts_due_ms;     /* CLOCK_MONOTONIC ms when they become due */

	int has_bind;
	struct sockaddr_storage bind_sa;
	socklen_t bind_len;

	/* outstanding request: bytes written since the last byte read */
	uint32_t len;
	int overflow;      /* the request outgrew the buffer: not replayable */
	int reply_started; /* a byte was read since the last write (atomic) */
	int fresh;         /* nothing read or written yet */
	int shut_wr;       /* the program half-closed: repeat it after a replay */

	/* a non-blocking connect in progress: the replicas still to try */
	int connecting;
	uint8_t cand[FLARE_MAX_REPLICAS];
	int n_cand, cand_pos;
	int conn_err; /* SO_ERROR the library read and owes the program */
	int in_slot;  /* listed among the connections with work pending */
	/* an asynchronous heal: the request still to send on the new socket */
	int replay_pending;
	uint32_t replay_off;
	int first_err;

	/* the program's epoll registrations of this connection, redone on a swap */
	struct {
		int epfd, fd;
		uint32_t events;
		uint64_t data;
	} ep[FLARE_MAX_EPOLL];
	int n_ep;
};

/* fdtab.c */
int fdtab_init(void);
struct fconn *fdtab_get(int fd); /* NULL for unmanaged: the fast path */
struct fconn *fconn_new(void);
void fconn_release(struct fconn *fc); /* one never attached to a descriptor */
void fdtab_attach(int fd, struct fconn *fc);
/* Drops fd from its fconn; frees the fconn with its last descriptor. */
void fdtab_detach(int fd);
void fdtab_alias(int oldfd, int newfd);
/* after dup/dup2/dup3/F_DUPFD: newfd names oldfd's connection (if any);
 * returns newfd */
int flare_after_dup(int oldfd, int newfd);
void fdtab_detach_range(unsigned first, unsigned last);
/* what the library knows of a descriptor's socket: the options the program
 * set (before or after connect; read back only when they were set), and
 * its kind. They follow dup, and are forgotten on close. */
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
/* up to max live connections for which want() holds */
int fdtab_collect(int (*want)(struct fconn *), struct fconn **out, int max);

/* route.c: the shared table */
int route_lookup(const struct flare_addr *a, struct flare_route *out);
const char *route_shm_name(void); /* FLARE_SHM, or /flare */
int route_read(uint32_t svc_index, struct flare_route *out);
int route_lookup_replica(const struct flare_addr *a, struct flare_replica_info *out);

/* dial.c */
int dial_managed(int fd, int type, const struct sockaddr *sa, socklen_t len,
		 const struct flare_addr *dst, const struct flare_route *route);
/* Opens a connected socket to local replica `idx` of the route, with the
 * program's options copied from `like` (an fd of the same kind). Returns
 * the new fd or -1 (errno set). */
int dial_replica(struct fconn *fc, int like, const struct flare_route *route, int idx,
		 int *err_out);
/* The receive slice, for a descriptor the program uses blocking; set when
 * it connects blocking or turns blocking later (fcntl, ioctl FIONBIO). */
void slice_apply(struct fconn *fc, int fd);
/* A non-blocking connect of a new socket to replica idx, options copied
 * from like; returns the fd with *err 0 or EINPROGRESS, or -1. */
int dial_start(struct fconn *fc, int like, const struct flare_route *route, int idx, int *err);
/* base's replicas, live ones first then dead ones, each once, skipping and
 * marking those in seen; returns how many were written to out */
int order_live_first(const struct flare_route *rt, const uint8_t *base, int nb, uint8_t *seen,
		     uint8_t *out);

/* nbconn.c: non-blocking connects moving down the ranking from inside the
 * program's readiness calls */
extern int flare_n_connecting; /* fast exit for poll/select/epoll hooks */
void nb_start(struct fconn *fc, const uint8_t *cand, int n, int pos, int connecting);
/* The connect on fd failed with err: the next candidate is dialed and put
 * in place. 1: a new attempt is under way (hide the event); 0: none left
 * (err is owed to the program through SO_ERROR). */
int nb_advance(struct fconn *fc, int fd, int err);
/* Looks at a connecting descriptor the kernel reported ready: 1 when the
 * event must be hidden from the program. */
/* ready: 0 not writable, 1 writable (maybe with an error), 2 writable
 * and no error reported (connected for sure) */
int nb_check_ready(int fd, int ready);
/* The connection's error as the program should learn it: one the library
 * owes, else (when always, or while connecting) the kernel's SO_ERROR, read
 * and cleared; a failed connect with replicas left is replaced
 * (*moved_on = 1) and reads as none. -1 when SO_ERROR cannot be read. */
int nb_take_error(struct fconn *fc, int fd, int always, int *moved_on);
void nb_done(struct fconn *fc);
/* Moves an asynchronous heal on (connect finished? replay sent?) without
 * blocking; nb_progress_all does it for every pending one and says whether
 * any is left (readiness waits are then sliced short to come back). */
void nb_progress(struct fconn *fc, int fd);
int nb_progress_all(void);
/* A readiness wait restarted after hidden events keeps the program's
 * deadline: wait_deadline(timeout) once, then wait_left(timeout, deadline)
 * gives the milliseconds left (-1 stays forever, 0 means it is over). */
int64_t wait_deadline(int timeout_ms);
/* The longest a readiness wait may sleep in the kernel this time, and what
 * to do when it slept and nothing was ready. */
int wait_slice(int timeout_ms);
void wait_slept(void);
/* The readiness hooks' loop: wait() sleeps at most ms (-1: no limit) in
 * the kernel, filter() hides the events of connects the library moved on
 * from and returns how many are left; it goes on until one is left or the
 * program's timeout is over, and leaves the milliseconds left in left_ms. */
struct sliced_wait {
	int (*wait)(struct sliced_wait *w, int ms);
	int (*filter)(struct sliced_wait *w, int n);
	int left_ms;
};
int wait_sliced(struct sliced_wait *w, int timeout_ms);
int wait_left(int timeout_ms, int64_t deadline);
void ep_register(struct fconn *fc, int epfd, int fd, uint32_t events, uint64_t data);
void ep_unregister(struct fconn *fc, int epfd, int fd);
void ep_redo(struct fconn *fc);
/* fd behind (epfd, data) among connecting connections, or -1 */
int ep_find_connecting(int epfd, uint64_t data);

/* timeouts.c: TCP_USER_TIMEOUT and keepalive on managed sockets, applied
 * once a connection outlives FLARE_TIMEOUTS_DEFER_MS */
#define FLARE_TIMEOUTS_DEFER_MS 20
extern int flare_n_timeouts_owed; /* readiness waits are sliced while > 0 */
void timeouts_apply(struct fconn *fc, int fd);
void timeouts_defer(struct fconn *fc);
void timeouts_forget(struct fconn *fc);
/* applies them if owed (and, with due_only, once the connection is old enough) */
void timeouts_settle(struct fconn *fc, int due_only);
void timeouts_settle_all(void);

/* readiness hooks with nothing to do but the real call */
static inline int wait_is_plain(void)
{
	return !__atomic_load_n(&flare_n_connecting, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&flare_n_timeouts_owed, __ATOMIC_ACQUIRE);
}

/* query.c: reactive failover. The failover targets the manager gives
 * for fc's failed replica, as local indexes, best first; -1 (logged) when
 * no answer came, and the caller uses the table's ranking. */
int query_targets(const struct fconn *fc, const struct flare_route *rt, uint8_t *out);

/* heal.c */
/* Replaces the connection behind fc after a failure seen at generation
 * `gen`. Returns 0 when the caller should retry its call (healed, or healed
 * by another thread), -1 when the failure must surface. */
int heal(struct fconn *fc, uint32_t gen, const char *why, int async);
int heal_allowed(struct fconn *fc);
/* Puts connected-or-connecting socket nfd in place of fc's socket on every
 * descriptor number (flags kept, blocked readers woken, epoll registrations
 * redone) and closes nfd; 0 or -1. */
int fconn_swap(struct fconn *fc, int nfd);
void request_record(struct fconn *fc, const void *data, size_t n);
void request_record_iov(struct fconn *fc, const struct iovec *iov, int iovcnt, size_t n);
int is_conn_failure(int err);

/* io.c: shared bodies of the read and write families */
ssize_t flare_recvmsg_managed(struct fconn *fc, int fd, struct msghdr *msg, int flags);
ssize_t flare_recv_managed(struct fconn *fc, int fd, void *buf, size_t len, int flags);
ssize_t flare_send_managed(struct fconn *fc, int fd, const void *buf, size_t len, int flags);
ssize_t flare_sendmsg_managed(struct fconn *fc, int fd, const struct msghdr *msg, int flags);
ssize_t flare_readv_managed(struct fconn *fc, int fd, const struct iovec *iov, int iovcnt);

/* sig.c */
/* Would the kernel have restarted a call interrupted now (every installed
 * handler has SA_RESTART)? */
int sig_would_restart(void);
/* Raises SIGPIPE where the program would have received one. */
void sig_pipe_as_program(int flags);

/* register.c: server side */
void register_listen(int fd);
void register_retry(void);
void register_forget_fd(int fd);
int register_knows(int fd);
void register_forget_range(unsigned first, unsigned last);

#endif
