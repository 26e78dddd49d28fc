/* Asynchronous heals of non-blocking descriptors: heal() puts the new
 * socket in place still connecting (HEAL_CONNECTING) and the program reads
 * EAGAIN; once the socket is writable (REPLAYING) the session log is
 * replayed and its replies read and checked (session.c), then the
 * outstanding requests are resent, from the program's next calls on the
 * descriptor and from its readiness waits, without ever blocking. The
 * whole replay has the service's connect timeout: a replica that accepts
 * and never answers is left for the next. */
#include "clock.h"
#include "core.h"
#include "real.h"
#include "usershm.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "dial/dial.h"
#include "frame/session.h"
#include "heal/heal.h"

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
			    flare_monotonic_ms() - fc->mv.dial_ms >= fc->svc.connect_timeout_ms)
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
	if (fc->mv.sess_step) {
		int r = session_async_step(fc, fd);
		if (r > 0 &&
		    flare_monotonic_ms() - fc->mv.dial_ms >= 2ull * fc->svc.connect_timeout_ms)
			r = -1; /* connected, but its session is not answered */
		if (r > 0)
			return;
		if (r < 0) {
			nb_advance(fc, fd, EPROTO);
			return;
		}
	}
	while (fc->mv.replay_off < fc->mv.replay_len) {
		ssize_t w =
		    real.send(fd, fc->buf + fc->mv.replay_off,
			      fc->mv.replay_len - fc->mv.replay_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			sock_count(&fc->pf.lib_wr, w);
			fc->mv.replay_off += (uint32_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			return;
		} else {
			nb_advance(fc, fd, w < 0 ? errno : EPIPE);
			return;
		}
	}
	if (__atomic_load_n(&fc->ex.shut_wr, __ATOMIC_ACQUIRE))
		real.shutdown(fd, SHUT_WR);
	if (fc->mv.replay_len > fc->mv.replay_from) {
		COUNT(replays, fc->svc.index, SS_REPLAYS, 1);
		COUNT(replay_bytes, fc->svc.index, SS_REPLAY_BYTES,
		      fc->mv.replay_len - fc->mv.replay_from);
	}
	fconn_enter(fc, FC_READY);
}

void nb_progress(struct fconn *fc, int fd)
{
	if (!fconn_claim(fc))
		return; /* another thread is at it */
	replay_progress(fc, fd);
	fconn_unclaim(fc);
}

static int session_replaying(struct fconn *fc, void *arg)
{
	(void)arg;
	return fconn_state(fc) == FC_REPLAYING && fc->mv.sess_step;
}

int nb_event_in(int fd)
{
	struct fconn *fc = fdtab_get(fd);
	if (!fc || !session_replaying(fc, NULL))
		return 0;
	nb_progress(fc, fd);
	/* the bytes were the session's replies: the library's, not the program's */
	return fconn_is_pending(fconn_state(fc));
}

int nb_session_replays(void)
{
	struct fconn *one;
	return pending_collect(session_replaying, NULL, &one, 1);
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
