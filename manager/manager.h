/* flare-manager: holds the system picture (hosts, replicas, services from
 * the config; utilization and liveness from monitor reports), ranks failover
 * targets with Algorithm 1 and pushes what changed to every agent at once. */
#ifndef FLARE_MANAGER_H
#define FLARE_MANAGER_H

#include "config.h"
#include "evconn.h"
#include "rank.h"
#include "wire.h"

#include <event2/listener.h>
#include <stdint.h>

#define FLARE_PUSH_DEBOUNCE_MS 100

struct mhost {
	double util;
	int alive;
	struct evconn *monitor; /* the connected monitor, NULL when none */
	uint64_t last_report_ns;
	uint64_t reports;
	/* a monitor names its replicas in the same order every time: entry i
	 * of its last report was replica seen[i] (one compare instead of a
	 * name lookup per replica per report) */
	int *seen;
	uint32_t n_seen;
};

/* A client connection to a replica, as the replica's monitor reported it */
struct mconn {
	struct flare_addr peer;
	double rate;       /* smoothed requests/s */
	uint64_t first_ns; /* first reported */
};

struct mreplica {
	int alive;
	int reason; /* enum flare_death while dead (its monitor's word) */
	int registered;
	uint32_t pid;
	double measured;      /* CPU share measured by the monitor, < 0 when unknown */
	int drained;          /* flarectl drain: no new bindings, connections move off */
	uint64_t drain_stamp; /* wall-clock ns of the operator's last word on it (0: none) */
	uint64_t changed_ns;  /* when its published liveness or reason last changed */
	/* balance.c */
	double rate;           /* smoothed requests/s */
	uint64_t rate_ns;      /* last sample */
	uint64_t ramp_from_ns; /* came alive: slow start from here (0: none) */
	struct mconn *conns;   /* on-demand services: its client connections */
	int n_conns;
};

struct manager {
	struct flare_config *cfg;
	struct event_base *base;
	struct evconnlistener *listener;
	struct evhttp *metrics; /* manager.metrics, when this manager has an address there */
	struct flare_addr addr;
	int id;
	struct event *tick;

	struct mhost *hosts;
	struct mreplica *reps;

	/* ranking inputs/outputs */
	struct rank_host *rh;
	struct rank_replica *rr;
	struct rank_service *rs;
	struct rank_scratch scratch;
	struct rank_order *failover, *order;
	double *util_at_rank; /* host utilization the last ranking used */

	/* what agents hold: the last published table */
	struct fw_rank_host *pub_hosts;
	struct fw_rank_service *pub_svcs;
	struct fw_rank_replica *pub_reps;
	/* the changed entries of one re-rank (delta.c: grown as needed);
	 * delta_oom: one could not be kept, the next push is the whole table */
	struct fw_rank_host *delta_hosts;
	struct fw_rank_service *delta_svcs;
	struct fw_rank_replica *delta_reps;
	uint32_t cap_delta_hosts, cap_delta_svcs, cap_delta_reps;
	int delta_oom;
	uint64_t gen;
	uint64_t start_ns;
	uint64_t last_rank_ns;
	double last_rank_us;
	uint64_t rank_count, push_count;
	/* what may wait is pushed once per FLARE_PUSH_DEBOUNCE_MS: a fleet's
	 * thousand monitors starting are not a thousand pushes to a thousand
	 * agents (the debounce Istio's pilot applies to its pushes) */
	struct event *debounce;
	int rerank_due;

	struct evconn *conns; /* every connection */
	int n_agents;
	/* a manager that just started knows nothing yet: agents' subscriptions
	 * are held until it has heard the monitors (server.c) */
	int warm;
	uint64_t auth_rejected;   /* peers that failed to authenticate */
	uint64_t frames_rejected; /* frames out of place from peers (closed) */
	uint64_t conns_refused;   /* connections over a bound (limits.c) */
	struct conn_limits *limits;
	int reloading; /* SIGHUP: ranking without pushing deltas */
	/* the operators' side, carried over a reload: the drains' file (""
	 * without a state directory), and which config file was loaded when
	 * (its hash: flarectl config shows the file only while it is the one
	 * in use, without keeping a copy of a config that can be megabytes) */
	struct {
		char intent_path[4096];
		uint8_t cfg_hash[32];
		uint64_t cfg_loaded_ns; /* wall clock */
		int cfg_hashed;
	} op;

	/* on-demand rebinding (balance.c): the moves published, when each was
	 * planned, when each service was last planned */
	struct fw_move moves[FLARE_MAX_MOVES];
	uint64_t move_ns[FLARE_MAX_MOVES];
	int n_moves, moves_dirty;
	uint64_t *plan_ns;
	int *on_demand, n_on_demand; /* the services that rebind on demand */
	uint64_t rebinds;            /* moves planned */
};

int manager_init(struct manager *m, struct flare_config *cfg, struct event_base *base, int id,
		 const char *state_dir);
/* reload.c: SIGHUP's new config, in place; 0, or -1 (the old one kept) */
int manager_reload(struct manager *m, struct flare_config *cfg);
void manager_free(struct manager *m);

/* intent.c: operators' drains, kept in state_dir and merged from the
 * other managers at start */
void intent_start(struct manager *m, const char *state_dir);
/* Sets replica r's drain mark as of stamp (0: now); 0, or -1 with why
 * when it could not be saved (it holds in memory all the same) */
int intent_record(struct manager *m, int r, int drained, uint64_t stamp, char *why, size_t n);
char *intent_dump(const struct manager *m);
/* Notes which config file this manager loaded (start, reload) */
void manager_note_config(struct manager *m);
/* The config file's text when it is still the one loaded, else NULL with
 * *changed set (malloc'd) */
char *manager_config_text(const struct manager *m, int *changed);

/* state.c */
int state_init(struct manager *m);
void state_free(struct manager *m);
/* Applies a monitor report; returns what it changed in the ranking's
 * inputs: nothing (0), what may wait for the debounce (STATE_CHANGED: a
 * birth, a load, a utilization), or a death or a move, which is pushed
 * at once (STATE_CHANGED | STATE_URGENT) */
#define STATE_CHANGED 1
#define STATE_URGENT 2
int state_apply_report(struct manager *m, int host, const struct fw_report *r);
/* A host's monitor went away or fell silent: the host and its replicas die. */
void state_host_lost(struct manager *m, int host, const char *why);
/* Re-ranks and pushes the changes to every agent (force: even when only
 * utilizations moved less than the threshold). */
void state_rerank(struct manager *m, const char *reason);
/* A re-rank within FLARE_PUSH_DEBOUNCE_MS, one for every change that
 * comes meanwhile (at once where there is no event loop: unit tests) */
void state_rerank_soon(struct manager *m);
/* Fills d with the published entries the last ranking changed (and
 * updates the published table); returns how many (delta.c). */
int state_delta(struct manager *m, struct fw_rank *d);
double state_object_load(const struct manager *m, int r);
/* The whole published table as one full RANK frame. */
int state_encode_full(struct manager *m, struct fw_buf *b);
/* Frees an encoded frame, giving a whole table's pages back */
void state_buf_free(struct fw_buf *b);
/* After freeing something of that many bytes: pages back when it was big */
void state_trim_after(size_t bytes);
/* Reactive failover: targets for a failed replica of a service, best first. */
void state_query(struct manager *m, struct fw_query *q);

/* balance.c: replica idx's smoothed rate and connections from entry ri of a
 * report (its host's); 1 when what is published for it changed */
int balance_replica_report(struct manager *m, int idx, const struct fw_report *r, uint32_t ri,
			   uint64_t now);
/* A replica's liveness changed (first_report: its host's first report) */
void balance_liveness(struct manager *m, int i, int was_alive, int alive, int first_report);
/* The balancing fields of a published replica */
void balance_fill(struct manager *m, int i, uint64_t now, struct fw_rank_replica *q);
/* Plans on-demand moves where due; returns how many connections move */
int balance_plan(struct manager *m, uint64_t now);
/* Drops moves carried out or expired; 1 when any was */
int balance_moves_done(struct manager *m, uint64_t now);
int balance_init(struct manager *m);
void balance_free(struct manager *m);

/* server.c */
int server_start(struct manager *m);
void server_stop(struct manager *m);
void server_broadcast_agents(struct manager *m, const void *frame, size_t len);

/* command.c: an operator's command ("drain NAME", "undrain NAME"); the
 * answer's text (malloc'd), *ok 0 when it was refused. */
char *command_run(struct manager *m, const char *text, int *ok);

/* metrics.c: Prometheus text exposition over HTTP (GET /metrics) */
int metrics_start(struct manager *m);
void metrics_stop(struct manager *m);

/* status.c: a status report, text or JSON (malloc'd). */
char *status_render(struct manager *m, int json);

/* limits.c: connections in all and before HELLO (per address too) */
int limits_init(struct manager *m);
void limits_free(struct manager *m);
/* A connection from sa, before anything is made for it: its tag (for
 * evconn.tag; counted as pending until limits_established), or NULL when
 * it is over a bound and is to be closed at once. */
void *limits_admit(struct manager *m, const struct sockaddr *sa, int len);
void limits_established(struct manager *m, struct evconn *c);
/* tag: the connection's, NULL once it said HELLO */
void limits_closed(struct manager *m, void *tag);
int limits_pending(const struct manager *m);
int limits_connections(const struct manager *m);

#endif
