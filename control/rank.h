/* FLARe's Algorithm 1: load-aware failover targets.
 *
 * For one failing host: reset every host's expected utilization to its
 * measured value; for each object (replica) on the failing host, largest
 * load first, pick among its service's live replicas on other live hosts the
 * one whose host has the minimum expected utilization, and add the object's
 * load to that host. The remaining replicas follow, ordered by expected
 * utilization, then the dead ones (a last resort when the table is behind
 * reality). Running this for every host gives every replica a total order
 * of failover targets. `static` services keep the configured order instead.
 *
 * Pure computation over plain arrays: no I/O, no allocation beyond what the
 * caller passes in scratch. */
#ifndef FLARE_RANK_H
#define FLARE_RANK_H

#include "flare.h"

#include <stdint.h>

struct rank_host {
	double util; /* measured, 0..1 */
	int alive;
};

struct rank_replica {
	int service, host;
	int alive;   /* process alive (host liveness is applied on top) */
	double load; /* the object's CPU load, 0..1 */
};

struct rank_service {
	int first, n; /* replicas first..first+n-1 */
	int strategy; /* enum flare_strategy */
	int primary;  /* local index, -1 when the address is virtual */
};

struct rank_input {
	const struct rank_host *hosts;
	int n_hosts;
	const struct rank_service *services;
	int n_services;
	const struct rank_replica *replicas;
	int n_replicas;
};

struct rank_order {
	uint8_t n;
	uint8_t idx[FLARE_MAX_REPLICAS]; /* local replica indexes, best first */
};

/* Scratch sized for n_hosts (expected utilizations and a touched list). */
struct rank_scratch {
	double *expected;
	int *touched;
	uint8_t *is_touched;
	int *objects; /* replicas on the failing host */
	int cap_hosts, cap_objects;
};

int rank_scratch_init(struct rank_scratch *s, int n_hosts, int n_replicas);
void rank_scratch_free(struct rank_scratch *s);

/* Failover order for every replica on `failing_host` (written to
 * failover[replica]); expected_out, when non-NULL, receives every host's
 * expected utilization after those replicas moved. */
void rank_host_failure(const struct rank_input *in, int failing_host, struct rank_scratch *s,
		       struct rank_order *failover, double *expected_out);

/* failover[] for every replica and order[] (new connections) for every
 * service. */
void rank_all(const struct rank_input *in, struct rank_scratch *s, struct rank_order *failover,
	      struct rank_order *order);

#endif
