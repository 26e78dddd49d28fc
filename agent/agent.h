/* flare-agent: one per host. Subscribes to the first reachable manager,
 * receives the full ranking table and then deltas, and publishes them in
 * the shared-memory table that every client's libflare.so reads. */
#ifndef FLARE_AGENT_H
#define FLARE_AGENT_H

#include "config.h"
#include "evconn.h"
#include "mlink.h"
#include "table_writer.h"

#include "usershm.h"

#include <event2/listener.h>

#define AGENT_MAX_QUERIES 256

/* wake.c: what the agent knows of each replica (global index) */
struct wake_replica {
	int alive, reason;
	struct flare_addr addr;
	uint64_t dead_since_ns; /* when this agent learned of the death */
};

struct agent {
	struct flare_config *cfg;
	struct event_base *base;
	struct flare_tbl_writer writer;
	struct mlink link;        /* to the first live manager */
	struct flare_addr source; /* --source (family 0: any) */
	int subscribed;
	uint64_t fulls, deltas, rejected, queries;
	/* reactive failover: clients waiting for the manager's answer, in the
	 * order their questions were forwarded (NULL: hung up meanwhile) */
	struct evconnlistener *query_listener;
	struct evconn *waiting[AGENT_MAX_QUERIES];
	int first_waiting, n_waiting;
	int n_query_conns;
	/* metrics.c: the library's counters (NAME.user.UID) and agent.metrics */
	struct user_seen *seen; /* each user segment's last sums */
	int n_seen;
	uint64_t (*gone)[SS_N]; /* per service: counts of segments since removed */
	struct evhttp *metrics;
	/* wake.c: the kernel wake, when this agent may end sockets */
	struct {
		int on;
		struct event *timer;
		struct timeval tick;
		struct wake_replica *reps;
		int n_reps;
		uint64_t ended;         /* connections ended */
		uint64_t last_sweep_ns; /* the last look at the registered waits */
	} wake;
};

/* metrics.c */
int metrics_start(struct agent *a);
void metrics_stop(struct agent *a);

/* names.c: the agent's names are its own before it writes (refuses
 * another user's or a live agent's), and what a dead agent left is
 * reclaimed. 0, or -1 with the reason in err. */
int names_claim(struct agent *a, char *err, size_t n);

int agent_start(struct agent *a);
void agent_stop(struct agent *a);

/* wake.c: ends blocked clients' condemned connections through the kernel
 * (SOCK_DESTROY) where this agent may; wake_rank follows the table */
int wake_start(struct agent *a);
void wake_stop(struct agent *a);
void wake_rank(struct agent *a, const struct fw_rank *r);

/* query.c */
int query_start(struct agent *a);
void query_stop(struct agent *a);
void query_answer(struct agent *a, struct fw_msg *m);
void query_link_lost(struct agent *a);

#endif
