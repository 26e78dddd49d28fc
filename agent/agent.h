/* flare-agent: one per host. Subscribes to the first reachable manager,
 * receives the full ranking table and then deltas, and publishes them in
 * the shared-memory table that every client's libflare.so reads. */
#ifndef FLARE_AGENT_H
#define FLARE_AGENT_H

#include "config.h"
#include "evconn.h"
#include "mlink.h"
#include "table_writer.h"

#include "svcstats.h"

#include <event2/listener.h>

#define AGENT_MAX_QUERIES 256

struct agent {
	struct flare_config *cfg;
	struct event_base *base;
	struct flare_tbl_writer writer;
	struct mlink link; /* to the first live manager */
	int subscribed;
	uint64_t fulls, deltas, rejected, queries;
	/* reactive failover: clients waiting for the manager's answer, in the
	 * order their questions were forwarded (NULL: hung up meanwhile) */
	struct evconnlistener *query_listener;
	struct evconn *waiting[AGENT_MAX_QUERIES];
	int first_waiting, n_waiting;
	/* metrics.c: NAME.stats (the library's counters) and agent.metrics */
	struct flare_svcstats *stats;
	uint64_t (*gone)[SS_N]; /* per service: counts of processes that exited */
	struct evhttp *metrics;
};

/* metrics.c */
int metrics_start(struct agent *a);
void metrics_stop(struct agent *a, int unlink_segment);

int agent_start(struct agent *a);
void agent_stop(struct agent *a);

/* query.c */
int query_start(struct agent *a);
void query_stop(struct agent *a);
void query_answer(struct agent *a, struct fw_msg *m);
void query_link_lost(struct agent *a);

#endif
