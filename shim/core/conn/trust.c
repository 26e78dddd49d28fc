/* What the library knows a connection to be (conn.h, "The trust"): the
 * one state that decides whether a failure may be healed at all. The
 * exchange (exchange.c) and the framers (framed.c) then say whether this
 * moment is one where a heal is exact. Transitions come only from the table
 * below, which the unit tests walk; anything not in it leaves the state as
 * it is. */
#include "flare.h"
#include "log.h"
#include "real.h"

#include "conn/conn.h"
#include "conn/fdtab.h"

/* TR_STATELESS when the service declared its protocol stateless request
 * and reply, TR_SESSION otherwise: the only input beside the event */
#define STL_OR_SESSION TR_N

static const uint8_t next[TR_N][TE_N] = {
    /*                 FRAMED     SESSION_PROTO     READ            SERVER_FIRST  FRAMING_LOST
     *                 TAINT       REFUSED */
    [TR_FIRST] = {TR_FRAMED, TR_FIRST_SESSION, STL_OR_SESSION, TR_SESSION, STL_OR_SESSION,
		  TR_TAINTED, TR_BROKEN},
    [TR_FIRST_SESSION] = {TR_FIRST_SESSION, TR_FIRST_SESSION, TR_SESSION, TR_SESSION, TR_SESSION,
			  TR_TAINTED, TR_BROKEN},
    [TR_STATELESS] = {TR_STATELESS, TR_STATELESS, TR_STATELESS, TR_STATELESS, TR_STATELESS,
		      TR_TAINTED, TR_BROKEN},
    /* a configured framer meets a session protocol's first bytes (TLS to
     * a service whose plaintext is HTTP): they are that protocol's */
    [TR_FRAMED] = {TR_FRAMED, TR_FIRST_SESSION, TR_FRAMED, TR_FRAMED, STL_OR_SESSION, TR_TAINTED,
		   TR_BROKEN},
    [TR_SESSION] = {TR_SESSION, TR_SESSION, TR_SESSION, TR_SESSION, TR_SESSION, TR_TAINTED,
		    TR_BROKEN},
    [TR_TAINTED] = {TR_TAINTED, TR_TAINTED, TR_TAINTED, TR_TAINTED, TR_TAINTED, TR_TAINTED,
		    TR_BROKEN},
    [TR_BROKEN] = {TR_BROKEN, TR_BROKEN, TR_BROKEN, TR_BROKEN, TR_BROKEN, TR_BROKEN, TR_BROKEN},
};

static const char *const trust_names[TR_N] = {
    "first", "first-session", "stateless", "framed", "session", "tainted", "broken",
};

const char *trust_name(int t) { return t >= 0 && t < TR_N ? trust_names[t] : "?"; }

int trust_next(int from, int event, int stateless)
{
	if (from < 0 || from >= TR_N || event < 0 || event >= TE_N)
		return from;
	int to = next[from][event];
	return to == STL_OR_SESSION ? (stateless ? TR_STATELESS : TR_SESSION) : to;
}

int trust_event(struct fconn *fc, int event)
{
	int stateless = fc->svc.replay == FLARE_REPLAY_REQUEST_REPLY;
	int from = fconn_trust(fc), to;
	do {
		to = trust_next(from, event, stateless);
		if (to == from)
			return from;
	} while (!__atomic_compare_exchange_n(&fc->ex.trust, &from, to, 0, __ATOMIC_ACQ_REL,
					      __ATOMIC_ACQUIRE));
	log_debug("connection %s -> %s", trust_name(from), trust_name(to));
	return to;
}

void fconn_taint(int fd, const char *why)
{
	struct fconn *fc = fdtab_get(fd);
	if (!fc || flare_in_foreign_child())
		return;
	if (fconn_trust(fc) != TR_TAINTED && fconn_trust(fc) != TR_BROKEN) {
		log_info("fd %d: %s: bytes move where the library does not see them; a failure "
			 "on this connection will surface",
			 fd, why);
		trust_event(fc, TE_TAINT);
	}
}
