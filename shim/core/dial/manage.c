/* connect() to a service address: the one place a descriptor becomes
 * managed. The program's own socket goes to the first candidate (the
 * dialed primary when live, else the ranking); a blocking connect that
 * fails moves down the candidates on replacement sockets, each attempt
 * bounded by the service's connect timeout; a non-blocking one returns
 * EINPROGRESS and moves on from the program's readiness calls
 * (nbconnect.c). The error the program sees is the one it would have
 * seen, and only when every replica failed. */
#include "addr.h"
#include "clock.h"
#include "core.h"
#include "flare.h"
#include "log.h"
#include "real.h"
#include "table.h"
#include "usershm.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "dial/dial.h"
#include "frame/frame.h"
#include "frame/framed.h"
#include "heal/heal.h"
#include "route/route.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

/* A new connection for fd, with the service's settings and the program's
 * options that a replacement socket must repeat ([init] fields). */
static struct fconn *fconn_for(int fd, int type, const struct sockaddr *sa, socklen_t len,
			       const struct flare_addr *dst, const struct flare_route *rt)
{
	struct fconn *fc = fconn_new();
	if (!fc)
		return NULL;
	int set = fdtab_opts(fd);
	fc->dial.domain = sa->sa_family;
	fc->dial.type = type;
	fc->dial.protocol = 0; /* a stream socket of an inet family is TCP */
	fc->dial.dialed = *dst;
	memcpy(&fc->dial.dialed_sa, sa,
	       len < sizeof(fc->dial.dialed_sa) ? len : sizeof(fc->dial.dialed_sa));
	fc->dial.dialed_len = len;
	fc->svc.index = rt->svc_index;
	fc->svc.replay = rt->svc.replay;
	fc->svc.failover = rt->svc.failover;
	fc->svc.connect_timeout_ms = rt->svc.connect_timeout_ms ? rt->svc.connect_timeout_ms
								: FLARE_DEFAULT_CONNECT_TIMEOUT_MS;
	fc->svc.user_timeout_ms = rt->svc.user_timeout_ms;
	fc->svc.request_timeout_ms = rt->svc.request_timeout_ms;
	fc->svc.unsafe_ok = rt->svc.replay_unsafe;
	fc->svc.proto = rt->svc.protocol;
	if (rt->svc.protocol >= PROTO_REDIS && rt->svc.protocol <= PROTO_MEMCACHED)
		framed_start(fc, rt->svc.protocol);
	else
		fc->fr.proto = rt->svc.protocol == PROTO_AUTO ? PROTO_AUTO : PROTO_OPAQUE;
	fc->svc.binding = rt->svc.binding;
	fc->svc.rebind_ms = rt->svc.rebind_interval_ms;
	fc->rb.bound_ms = flare_coarse_ms();
	fc->svc.ka_idle = rt->svc.keepalive_idle_s;
	fc->svc.ka_intvl = rt->svc.keepalive_interval_s;
	fc->svc.ka_cnt = rt->svc.keepalive_count;
	if (set & FLARE_SET_RCVTIMEO) {
		socklen_t tl = sizeof(fc->link.prog_rcvtimeo);
		real.getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &fc->link.prog_rcvtimeo, &tl);
	}
	uint32_t want = rt->svc.replay_buffer;
	if (fc->svc.replay != FLARE_REPLAY_NONE && want && fc->cap < want) {
		uint8_t *b = realloc(fc->buf, want);
		if (b) {
			fc->buf = b;
			fc->cap = want;
		}
	}
	/* the program's bind, to repeat on replacement sockets */
	struct sockaddr_storage bs;
	socklen_t bl = sizeof(bs);
	struct flare_addr b;
	if ((set & FLARE_SET_BIND) && getsockname(fd, (struct sockaddr *)&bs, &bl) == 0 &&
	    flare_addr_from_sockaddr((struct sockaddr *)&bs, bl, &b) == 0 &&
	    (b.port || !flare_addr_is_wildcard(&b))) {
		fc->dial.has_bind = 1;
		fc->dial.bind_sa = bs;
		fc->dial.bind_len = bl;
	}
	return fc;
}

/* The program's own socket, to the first candidate: its options and bind
 * stay as they are. 0, EINPROGRESS (non-blocking) or an errno value. */
static int connect_own(struct fconn *fc, int fd, const struct flare_route *rt, int idx,
		       int blocking)
{
	struct sockaddr_storage ss;
	socklen_t sl = flare_addr_to_sockaddr_family(&rt->reps[idx].addr, fc->dial.domain, &ss);
	if (!sl)
		return EAFNOSUPPORT;
	if (!blocking)
		return real.connect(fd, (struct sockaddr *)&ss, sl) == 0 ? 0 : errno;
	return connect_within(fd, (struct sockaddr *)&ss, sl, (int)fc->svc.connect_timeout_ms);
}

/* A replacement socket to candidate idx takes the program's descriptor
 * number (fconn_swap: flags, close-on-exec). 0 or an errno value. */
static int connect_replacement(struct fconn *fc, int fd, const struct flare_route *rt, int idx,
			       int blocking, int *in_progress)
{
	int err = 0;
	int nfd =
	    blocking ? dial_replica(fc, fd, rt, idx, &err) : dial_start(fc, fd, rt, idx, &err);
	if (nfd < 0)
		return err;
	*in_progress = err == EINPROGRESS;
	fdtab_attach(fd, fc);
	if (fconn_swap(fc, nfd) < 0) {
		err = errno;
		fdtab_unlink(fd);
		return err ? err : EBADF;
	}
	return 0;
}

int dial_managed(int fd, int type, const struct sockaddr *sa, socklen_t len,
		 const struct flare_addr *dst, const struct flare_route *rt)
{
	uint8_t order[FLARE_MAX_REPLICAS];
	struct flare_route demoted;
	if (__atomic_load_n(&flare_stats.request_timeouts, __ATOMIC_RELAXED)) {
		demoted = *rt; /* only once a request timed out in this process */
		if (watch_demote(&demoted))
			rt = &demoted;
	}
	int pick = rt->svc.balance == FLARE_BALANCE_PRIMARY
		       ? -1
		       : balance_pick(rt, balance_random(),
				      rt->svc.balance == FLARE_BALANCE_ROUND_ROBIN
					  ? usershm_rr_ticket(rt->svc_index)
					  : 0,
				      -1);
	int n = order_balanced(rt, pick, order), first_err = 0;
	/* O_NONBLOCK as socket() and the hooks saw it set, else the kernel's
	 * word; a blocking connect asks again (connect_within) */
	int opts = fdtab_opts(fd);
	int blocking = opts & FLARE_FL_KNOWN ? !(opts & FLARE_FL_NONBLOCK)
					     : !(real.fcntl(fd, F_GETFL) & O_NONBLOCK);
	struct fconn *fc = n ? fconn_for(fd, type, sa, len, dst, rt) : NULL;
	if (!fc)
		return real.connect(fd, sa, len); /* cannot manage: as without flare */
	timeouts_defer(fc);
	for (int k = 0; k < n; k++) {
		int idx = order[k], in_progress = 0, err;
		if (k == 0) {
			err = connect_own(fc, fd, rt, idx, blocking);
			/* the kernel's word before moving on: a record of O_NONBLOCK
			 * misses a flag set by a raw system call */
			if (err == EINPROGRESS)
				blocking = 0;
			else if (err && (opts & FLARE_FL_KNOWN))
				blocking = !(real.fcntl(fd, F_GETFL) & O_NONBLOCK);
			in_progress = err == EINPROGRESS;
			if (in_progress)
				err = 0;
		} else {
			err = connect_replacement(fc, fd, rt, idx, blocking, &in_progress);
		}
		if (!err) {
			fc->link.cur = idx;
			/* the rest of the candidates are tried from the program's
			 * readiness calls if this attempt fails */
			if (in_progress) {
				nb_start(fc, order, n, k + 1, first_err);
				fconn_enter(fc, FC_CONNECTING);
			}
			if (k == 0) { /* published last: other threads see it whole */
				proof_mark_fresh(fc, fd);
				fdtab_attach(fd, fc);
			}
			usershm_attach(); /* claims this process's slot, once */
			COUNT(managed, rt->svc_index, SS_MANAGED, 1);
			if (k > 0) {
				COUNT(connect_failovers, rt->svc_index, SS_CONNECT_FAILOVERS, 1);
				char a[FLARE_ADDR_STRLEN];
				log_info("connect to %s: replica %s after %d failed attempt(s)",
					 flare_addr_format(dst, a, sizeof(a)), rt->reps[idx].name,
					 k);
			}
			if (in_progress) {
				errno = EINPROGRESS;
				return -1;
			}
			return 0;
		}
		if (err == EINTR) {
			fconn_release(fc);
			errno = EINTR;
			return -1;
		}
		if (!first_err)
			first_err = err;
		log_debug("connect to replica %s failed: %s", rt->reps[idx].name, strerror(err));
	}
	fconn_release(fc);
	COUNT(passed_errors, rt->svc_index, SS_PASSED_ERRORS, 1);
	/* a timed-out attempt reads as the kernel's ETIMEDOUT; a virtual address
	 * nobody listens on would have been refused */
	errno = first_err ? first_err : ECONNREFUSED;
	return -1;
}
