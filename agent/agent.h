/* flare-agent: one per host. Subscribes to the first reachable manager,
 * receives the full ranking table and then deltas, and publishes them in
 * the shared-memory table that every client's libflare.so reads. */
#ifndef FLARE_AGENT_H
#define FLARE_AGENT_H

#include "config.h"
#include "evconn.h"
#include "table_writer.h"

struct agent {
	struct flare_config *cfg;
	struct event_base *base;
	struct flare_tbl_writer writer;
	struct evconn *c;
	int current; /* index of the manager address in use */
	int tries;   /* failed attempts since the last subscription */
	int backoff_ms;
	int subscribed;
	struct event *retry, *hb_timer;
	uint64_t fulls, deltas, rejected;
};

int agent_start(struct agent *a);
void agent_stop(struct agent *a);

#endif
