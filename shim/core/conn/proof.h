/* What the library proves, at the moment it acts, before it touches a
 * connection (a heal, a swap, a rewritten getpeername, a hidden event).
 * Lists of the paths a program may take (hooks) cannot be complete:
 * glibc closes descriptors internally, io_uring and raw system calls move
 * bytes, the kernel raises events that are not failures. So the decision
 * rests on the kernel's own word, asked when it matters, never on every
 * call:
 *
 *   identity   the descriptor is still the socket the library manages:
 *              its SO_COOKIE (unique per socket for the kernel's life),
 *              recorded when the connection got its socket
 *   bytes      every byte the kernel's TCP_INFO counts as written into or
 *              taken out of the socket went through a hook or the library:
 *              written  = bytes_acked - 1 (the SYN) + SIOCOUTQ
 *              read     = bytes_received - FIONREAD
 *              each compared, as an offset taken when the socket became
 *              the connection's, with the hooks' counts (sock_wr, sock_rd)
 *              and the library's own (lib_wr, lib_rd)
 *   failure    the kernel says the connection ended: its TCP state
 *              (closed by a reset or a timeout, or the peer's FIN)
 */
#ifndef FLARE_PROOF_H
#define FLARE_PROOF_H

#include <stdint.h>
#include <sys/types.h>

/* The library's own bytes on a connection's socket (replays, session
 * commands and their replies, a TLS heal's first flight) are counted in
 * fc->pf.lib_wr and fc->pf.lib_rd with sock_count (below), as the hooks count
 * theirs in sock_wr and sock_rd. */
struct fconn;

/* The socket's kernel cookie, or 0 when fd is not a socket. */
uint64_t proof_cookie(int fd);
/* Is fd the socket whose cookie (nonzero) was recorded? A socket the
 * library holds across the program's calls (a pool socket, a move's or an
 * interrupted heal's new socket) is asked before it is used or closed: the
 * program may have closed that number (a close-all loop, a double close, a
 * raw system call, dup2 onto it) and opened something of its own there. */
int proof_is(int fd, uint64_t cookie);
/* fd closed only while proof_is: otherwise the number is the program's. */
void proof_close(int fd, uint64_t cookie);
/* fd's socket became fc's (connect, swap, a TLS heal's new socket):
 * records its identity and the offsets of the kernel's counts. [claim] */
void proof_mark(struct fconn *fc, int fd);
/* The same for the program's own socket, just connected. */
void proof_mark_fresh(struct fconn *fc, int fd);
/* A socket set aside while it is not the connection's (per-request
 * balancing's pool, rebind.c): its identity and what its kernel counts
 * must read when it is the connection's again. */
struct proof_held {
	uint64_t cookie, wr, rd;
	int counts_ok;
};
/* fc's socket is being set aside: what proves it, from the record, no
 * system call. [claim] */
void proof_hold(const struct fconn *fc, struct proof_held *h);
/* A held socket is fc's again: its proof taken back without asking the
 * kernel. Nothing moves a held socket's bytes but what the proof exists to
 * catch (a raw call on a number the library owns), and the expectation,
 * unlike a fresh mark, does not take such bytes in: the next proof_bytes
 * names them. [claim] */
void proof_resume(struct fconn *fc, const struct proof_held *h);
/* Is fd still fc's socket? A number that became another descriptor is
 * forgotten (fdtab_detach) and 0 returned. */
int proof_identity(struct fconn *fc, int fd);
/* Every number of fc checked as above; how many are left. */
int proof_identity_all(struct fconn *fc);
/* NULL when the kernel's counts agree with what the hooks and the library
 * saw on fd's socket; else why they do not (bytes moved where no hook saw
 * them: a replay would be wrong). */
const char *proof_bytes(struct fconn *fc, int fd);
/* 1 when the kernel says fd's connection is over (reset, timed out, or
 * the peer closed its side); 0 while it is established or cannot tell. */
int proof_failed(int fd);

/* A relaxed count: no locked instruction on the request path */
static inline void sock_count(uint64_t *c, ssize_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + (uint64_t)n, __ATOMIC_RELAXED);
}

#endif
