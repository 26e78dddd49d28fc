/* The kernel's word on a managed socket (proof.h). Each check is one or
 * two system calls, made only when the library is about to act. */
#include "lock.h"
#include "log.h"
#include "real.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"

#include <errno.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <linux/tcp.h>

uint64_t proof_cookie(int fd)
{
	uint64_t c = 0;
	socklen_t l = sizeof(c);
	if (real.getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &l) < 0 || l != sizeof(c))
		return 0;
	return c;
}

int proof_is(int fd, uint64_t cookie) { return fd >= 0 && cookie && proof_cookie(fd) == cookie; }

void proof_close(int fd, uint64_t cookie)
{
	if (proof_is(fd, cookie))
		real.close(fd);
}

/* The kernel's counts of bytes written into the socket and taken out of
 * it; -1 when it does not keep them (a kernel older than 4.19).
 * Written is the sequence space the program filled: bytes_acked (which
 * counts the SYN) plus SIOCOUTQ (written, not acknowledged). Not
 * bytes_sent: a transmission that fails locally (a route gone) counts
 * there, and again when it goes out (measured: a blackholed path made
 * bytes_sent run ahead of what was written). *fin: the peer's FIN may be
 * in bytes_received (counted on some kernel paths, not on others). */
static int kernel_counts(int fd, uint64_t *wr, uint64_t *rd, int *fin)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	int inq = 0, outq = 0;
	if (real.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0 ||
	    l < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received) ||
	    !real.ioctl || real.ioctl(fd, FIONREAD, &inq) < 0 ||
	    real.ioctl(fd, SIOCOUTQ, &outq) < 0)
		return -1;
	*wr = ti.tcpi_bytes_acked ? ti.tcpi_bytes_acked - 1 + (uint64_t)outq : 0;
	*rd = ti.tcpi_bytes_received - (uint64_t)inq;
	*fin = ti.tcpi_state != 1 /* ESTABLISHED */;
	return 0;
}

static uint64_t seen_wr(const struct fconn *fc)
{
	return __atomic_load_n(&fc->link.sock_wr, __ATOMIC_RELAXED) +
	       __atomic_load_n(&fc->pf.lib_wr, __ATOMIC_RELAXED);
}

static uint64_t seen_rd(const struct fconn *fc)
{
	return __atomic_load_n(&fc->link.sock_rd, __ATOMIC_RELAXED) +
	       __atomic_load_n(&fc->pf.lib_rd, __ATOMIC_RELAXED);
}

void proof_mark(struct fconn *fc, int fd)
{
	uint64_t wr, rd;
	int fin;
	__atomic_store_n(&fc->pf.cookie, proof_cookie(fd), __ATOMIC_RELEASE);
	if (kernel_counts(fd, &wr, &rd, &fin) < 0) {
		fc->pf.counts_ok = 0;
		return;
	}
	fc->pf.off_wr = wr - seen_wr(fc);
	fc->pf.off_rd = rd - seen_rd(fc);
	fc->pf.counts_ok = 1;
}

void proof_mark_fresh(struct fconn *fc, int fd)
{
	/* nothing has moved on a socket just connected: no counts to ask */
	__atomic_store_n(&fc->pf.cookie, proof_cookie(fd), __ATOMIC_RELEASE);
	fc->pf.off_wr = fc->pf.off_rd = 0;
	fc->pf.counts_ok = 1;
}

void proof_hold(const struct fconn *fc, struct proof_held *h)
{
	h->cookie = __atomic_load_n(&fc->pf.cookie, __ATOMIC_ACQUIRE);
	h->wr = fc->pf.off_wr + seen_wr(fc);
	h->rd = fc->pf.off_rd + seen_rd(fc);
	h->counts_ok = fc->pf.counts_ok;
}

void proof_resume(struct fconn *fc, const struct proof_held *h)
{
	__atomic_store_n(&fc->pf.cookie, h->cookie, __ATOMIC_RELEASE);
	fc->pf.off_wr = h->wr - seen_wr(fc);
	fc->pf.off_rd = h->rd - seen_rd(fc);
	fc->pf.counts_ok = h->counts_ok;
}

int proof_identity(struct fconn *fc, int fd)
{
	uint64_t want = __atomic_load_n(&fc->pf.cookie, __ATOMIC_ACQUIRE);
	if (!want || proof_cookie(fd) == want)
		return 1;
	log_info("fd %d: no longer the socket the library manages (closed where no hook saw "
		 "it, and the number reused): forgotten",
		 fd);
	if (fdtab_get(fd) == fc)
		fdtab_detach(fd);
	return 0;
}

int proof_identity_all(struct fconn *fc)
{
	int fds[FLARE_MAX_ALIASES], n = 0, left = 0;
	flare_lock(&fc->lock);
	fconn_prune_locked(fc);
	for (int i = 0; i < fc->own.n_fds; i++)
		fds[n++] = fc->own.fds[i];
	flare_unlock(&fc->lock);
	for (int i = 0; i < n; i++)
		left += proof_identity(fc, fds[i]);
	return left;
}

const char *proof_bytes(struct fconn *fc, int fd)
{
	uint64_t wr, rd;
	int fin;
	if (!fc->pf.counts_ok || kernel_counts(fd, &wr, &rd, &fin) < 0)
		return NULL; /* no counters in this kernel: the hooks' record stands */
	/* the program's own shutdown put a FIN in the sequence space */
	uint64_t extra_wr = wr - seen_wr(fc) - fc->pf.off_wr;
	if (extra_wr && !(extra_wr == 1 && __atomic_load_n(&fc->ex.shut_wr, __ATOMIC_ACQUIRE)))
		return "the kernel counts bytes written that no hook saw (io_uring, a raw system "
		       "call, another process)";
	uint64_t extra = rd - seen_rd(fc) - fc->pf.off_rd;
	if (extra && !(extra == 1 && fin))
		return "the kernel counts bytes read that no hook saw (io_uring, a raw system "
		       "call, another process)";
	return NULL;
}

/* the kernel's TCP states (include/net/tcp_states.h); <linux/tcp.h>, which
 * has the counters, does not name them, and <netinet/tcp.h> clashes with it */
enum { K_TIME_WAIT = 6, K_CLOSE = 7, K_CLOSE_WAIT = 8, K_LAST_ACK = 9, K_CLOSING = 11 };

int proof_failed(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	if (real.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0 ||
	    l < offsetof(struct tcp_info, tcpi_state) + 1)
		return 0;
	switch (ti.tcpi_state) {
	case K_CLOSE:      /* reset, or timed out */
	case K_CLOSE_WAIT: /* the peer's FIN */
	case K_LAST_ACK:
	case K_CLOSING:
	case K_TIME_WAIT: return 1;
	default: return 0;
	}
}
