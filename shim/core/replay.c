/* Asynchronous heals of non-blocking descriptors: heal() puts the new
 * socket in place still connecting (HEAL_CONNECTING) and the program reads
 * EAGAIN; the outstanding request is resent once the socket is writable
 * (REPLAYING), from the program's next calls on the descriptor and from
 * its readiness waits, without ever blocking. */
#include "shim.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

void replay_progress(struct fconn *fc, int fd)
{
	int st = fconn_state(fc);
	if (fconn_is_connecting(st)) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t l = sizeof(err);
		if (real.poll(&p, 1, 0) <= 0) {
			/* a heal's connect has the service's connect timeout too (a
			 * host that died silently drops the SYN: the kernel would
			 * retry for minutes); the program's own connect has its own */
			if (st == FC_HEAL_CONNECTING &&
			    flare_monotonic_ms() - fc->dial_ms >= fc->connect_timeout_ms)
				nb_advance(fc, fd, ETIMEDOUT);
			return; /* still connecting */
		}
		if (real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err) {
			nb_advance(fc, fd, err);
			return;
		}
		fconn_enter(fc, st == FC_CONNECTING ? FC_READY : FC_REPLAYING);
	}
	if (fconn_state(fc) != FC_REPLAYING)
		return;
	while (fc->replay_off < fc->replay_len) {
		ssize_t w = real.send(fd, fc->buf + fc->replay_off, fc->replay_len - fc->replay_off,
				      MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			fc->replay_off += (uint32_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			return;
		} else {
			nb_advance(fc, fd, w < 0 ? errno : EPIPE);
			return;
		}
	}
	if (__atomic_load_n(&fc->shut_wr, __ATOMIC_ACQUIRE))
		real.shutdown(fd, SHUT_WR);
	COUNT(replays, fc->svc_index, SS_REPLAYS, 1);
	COUNT(replay_bytes, fc->svc_index, SS_REPLAY_BYTES, fc->replay_len);
	fconn_enter(fc, FC_READY);
}

void nb_progress(struct fconn *fc, int fd)
{
	if (!fconn_claim(fc))
		return; /* another thread is at it */
	replay_progress(fc, fd);
	fconn_unclaim(fc);
}

static int replaying(struct fconn *fc, void *arg)
{
	(void)arg;
	int st = fconn_state(fc);
	return st == FC_HEAL_CONNECTING || st == FC_REPLAYING;
}

int nb_progress_all(void)
{
	struct fconn *work[64];
	int n = pending_collect(replaying, NULL, work, 64), left = 0;
	for (int i = 0; i < n; i++) {
		int fd = fconn_first_fd(work[i]);
		if (fd >= 0)
			nb_progress(work[i], fd);
		left += replaying(work[i], NULL);
	}
	return left;
}
