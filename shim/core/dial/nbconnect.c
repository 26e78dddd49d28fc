/* Non-blocking connects that stay non-blocking. connect() returns
 * EINPROGRESS for the best live replica at once; when the kernel reports
 * that the attempt failed (POLLERR/POLLHUP, an epoll event, SO_ERROR), the
 * library dials the next candidate on a new socket, puts it on the
 * program's descriptor number (epoll registrations follow) and hides that
 * event: the program just goes on waiting and sees the connection that
 * succeeded. The same moves serve an asynchronous heal whose new socket is
 * refused (HEAL_CONNECTING, REPLAYING). */
#include "core.h"
#include "log.h"
#include "real.h"
#include "table.h"
#include "usershm.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "dial/dial.h"
#include "frame/session.h"
#include "heal/heal.h"
#include "route/route.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

void nb_start(struct fconn *fc, const uint8_t *cand, int n, int pos, int first_err)
{
	memcpy(fc->mv.cand, cand, (size_t)n);
	fc->mv.n_cand = n;
	fc->mv.cand_pos = pos;
	fc->mv.first_err = first_err;
}

int nb_advance(struct fconn *fc, int fd, int err)
{
	struct flare_route rt;
	int st = fconn_state(fc), connect = st == FC_CONNECTING;
	if (!fc->mv.first_err)
		fc->mv.first_err = err;
	/* the move replaces what the program's numbers name: a number that is
	 * no longer this connection's socket (closed where no hook saw, and
	 * reused) is forgotten, and the error is the program's own */
	if (flare_in_foreign_child() || !proof_identity_all(fc) ||
	    route_read(fc->svc.index, &rt) != FLARE_TBL_OK)
		fc->mv.cand_pos = fc->mv.n_cand;
	while (fc->mv.cand_pos < fc->mv.n_cand) {
		int idx = fc->mv.cand[fc->mv.cand_pos++], e = 0;
		if ((uint32_t)idx >= rt.svc.n_replicas)
			continue;
		int nfd = dial_start(fc, fd, &rt, idx, &e);
		if (nfd < 0) {
			log_debug("connect to replica %s failed: %s", rt.reps[idx].name,
				  strerror(e));
			continue;
		}
		if (fconn_swap(fc, nfd) < 0)
			break;
		log_info("connect to service %s: %s refused or timed out (%s), trying %s",
			 rt.svc.name, rt.reps[fc->link.cur].name, strerror(err), rt.reps[idx].name);
		fc->link.cur = idx;
		/* a new connection needs the session and the whole request again */
		fc->mv.replay_off = fc->mv.replay_from;
		if (!connect) {
			session_async_start(fc);
			__atomic_or_fetch(&fc->ex.replayed, 1u << idx, __ATOMIC_RELAXED);
		}
		__atomic_add_fetch(&fc->gen, 1, __ATOMIC_ACQ_REL);
		COUNT(connect_failovers, fc->svc.index, SS_CONNECT_FAILOVERS, 1);
		if (e == 0) /* connected at once */
			fconn_enter(fc, connect ? FC_READY : FC_REPLAYING);
		else
			fconn_enter(fc, connect ? FC_CONNECTING : FC_HEAL_CONNECTING);
		return 1;
	}
	/* none left: a connect reports its first error; a heal, the reset the
	 * program would have seen without the library */
	__atomic_store_n(&fc->link.conn_err, connect ? fc->mv.first_err : ECONNRESET,
			 __ATOMIC_RELEASE);
	COUNT(passed_errors, fc->svc.index, SS_PASSED_ERRORS, 1);
	fconn_enter(fc, FC_FAILED);
	return 0;
}

/* The socket connected: a heal's request goes out now. [claim] */
static void connected(struct fconn *fc, int fd)
{
	if (fconn_state(fc) == FC_CONNECTING) {
		fconn_enter(fc, FC_READY);
		return;
	}
	fconn_enter(fc, FC_REPLAYING);
	replay_progress(fc, fd);
}

int nb_event(int fd, int writable, int error)
{
	struct fconn *fc = fdtab_get(fd);
	if (!fc || !fconn_is_connecting(fconn_state(fc)) || !fconn_claim_wait(fc))
		return 0;
	int hide = 0, err = 0;
	socklen_t l = sizeof(err);
	/* writable with no error flag: connected, no need to ask. Reading
	 * SO_ERROR takes the error off the socket: only the connection's own
	 * socket is asked (a number reused where no hook saw is the
	 * program's, and so is its error) */
	if (!fconn_is_connecting(fconn_state(fc)) ||
	    ((!writable || error) &&
	     (!proof_identity(fc, fd) || real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)))
		goto out;
	if (err)
		hide = nb_advance(fc, fd, err);
	else if (writable) /* otherwise the event was for something else */
		connected(fc, fd);
out:
	fconn_unclaim(fc);
	return hide;
}

int nb_take_error(struct fconn *fc, int fd, int always, int *moved_on)
{
	*moved_on = 0;
	uint32_t gen = __atomic_load_n(&fc->gen, __ATOMIC_ACQUIRE);
	int err = fconn_take_owed_error(fc);
	if (err || (!always && !fconn_is_connecting(fconn_state(fc))))
		return err;
	socklen_t l = sizeof(err);
	if (real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		return -1;
	if (!err)
		return 0;
	if (!fconn_is_connecting(fconn_state(fc))) {
		/* an established connection failed (an owed error returned
		 * above): healed here, where the program looks (libmemcached asks
		 * SO_ERROR instead of reading), and then it reads as none */
		int async = !!(real.fcntl(fd, F_GETFL) & O_NONBLOCK);
		if (fconn_state(fc) == FC_READY && is_conn_failure(err) &&
		    heal(fc, gen, strerror(err), async) == 0)
			return 0;
		return err;
	}
	if (!fconn_claim_wait(fc))
		return err;
	if (fconn_is_connecting(fconn_state(fc))) {
		if (nb_advance(fc, fd, err)) {
			*moved_on = 1;
			err = 0;
		} else {
			int owed = fconn_take_owed_error(fc);
			err = owed ? owed : err;
		}
	}
	fconn_unclaim(fc);
	return err;
}
