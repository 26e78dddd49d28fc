/* The descriptor table: which connection a descriptor number names, and
 * what is known of a descriptor (fdtab.c). */
#ifndef FLARE_FDTAB_H
#define FLARE_FDTAB_H

#include <pthread.h>
#include <stddef.h>

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
void fdtab_attach(int fd, struct fconn *fc);
/* Drops fd from its connection; releases the connection with its last
 * descriptor. */
void fdtab_detach(int fd);
/* Drops fd from its connection without releasing it (a connect that gave up). */
void fdtab_unlink(int fd);
void fdtab_detach_range(unsigned first, unsigned last);
/* Owed work (lock.h): connections whose numbers a handler closed */
void fdtab_prune_all(void);
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
/* O_NONBLOCK as socket() made it and the hooks' fcntl(F_SETFL) and
 * ioctl(FIONBIO) set it since: what connect() would otherwise ask the
 * kernel. Not kept across dup or fork (the description is shared). */
#define FLARE_FL_KNOWN 128
#define FLARE_FL_NONBLOCK 256
#define FLARE_FL_BITS (FLARE_FL_KNOWN | FLARE_FL_NONBLOCK)
/* The kinds of a descriptor that need no state left to a vfork parent */
#define FLARE_KIND_BITS (FLARE_INET_STREAM | FLARE_FL_BITS)
void fdtab_note_opt(int fd, int bits);
void fdtab_set_opts(int fd, int bits);
int fdtab_opts(int fd);
void fdtab_clear_opts(int fd);
/* fd's O_NONBLOCK was set to nonblock by the program (kept if known) */
void fdtab_flags_set(int fd, int nonblock);
void fdtab_atfork_child(void);
void fdtab_atfork_parent(void);
/* Every lock of the library is made anew in a fork child (another thread
 * may have held it at the fork): these and fdtab_atfork_child. */
void dial_atfork_child(void);
void route_atfork_child(void);
void register_atfork_child(void);
/* up to max live connections for which want() holds */
int fdtab_collect(int (*want)(struct fconn *, void *), void *arg, struct fconn **out, int max);

#endif
