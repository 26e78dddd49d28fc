/* A daemon's link to a manager: a framed connection (evconn) that says
 * HELLO when it connects, sends heartbeats while connected, and reconnects
 * by itself. Given several addresses it moves to the next one on every
 * failure: each address is tried once without waiting, then the attempts
 * back off exponentially (agent.reconnect_min_ms to reconnect_max_ms) until
 * the owner calls mlink_good. The agent uses one link over every manager
 * address; the monitor one link per manager. */
#ifndef FLARE_MLINK_H
#define FLARE_MLINK_H

#include "config.h"
#include "evconn.h"

struct mlink;

struct mlink_ops {
	void (*on_up)(struct mlink *l); /* connected, HELLO sent */
	void (*on_msg)(struct mlink *l, struct fw_msg *m);
	/* the connection ended (was_up: it had connected); a retry is scheduled */
	void (*on_down)(struct mlink *l, const char *why, int was_up);
};

struct mlink {
	/* set by the owner before mlink_start */
	struct event_base *base;
	const struct flare_config *cfg;
	const struct flare_addr *addrs;
	int n_addrs;
	struct fw_hello hello;
	const uint64_t *hb_seq;          /* sent in heartbeats when set */
	const struct flare_addr *source; /* --source: connect from this address (NULL: any) */
	const struct mlink_ops *ops;
	void *owner;

	struct evconn *c; /* NULL while disconnected */
	int up;           /* connected */
	int current;      /* index into addrs */
	int tries;        /* failed attempts since the last mlink_good */
	int backoff_ms;
	struct event *retry, *hb_timer;
	char peer[96]; /* "manager ADDR" of the last attempt, for log lines */
	/* no manager reached: since when, attempts, the last warning */
	uint64_t down_since_ns, warned_ns;
	int failures;
};

int mlink_start(struct mlink *l);
void mlink_stop(struct mlink *l);
/* The link works (the owner's own idea: connected, subscribed): the next
 * failure retries at once again. */
void mlink_good(struct mlink *l);
int mlink_send(struct mlink *l, const struct fw_msg *m);
int mlink_send_raw(struct mlink *l, const void *data, size_t len);
/* Ends the connection (a protocol error); the link reconnects. */
void mlink_drop(struct mlink *l, const char *why);
/* The address in use, for log lines. */
const char *mlink_peer(const struct mlink *l);

#endif
