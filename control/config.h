/* The deployment config (libconfig syntax, docs/DESIGN.md), loaded into plain
 * structs. Every mistake is reported as "FILE:LINE: reason". */
#ifndef FLARE_CONFIG_H
#define FLARE_CONFIG_H

#include "addr.h"
#include "flare.h"

#include <stddef.h>

struct auth_key;

struct flare_host_cfg {
	char name[FLARE_NAME_MAX];
	int util_kind;                            /* enum flare_util_kind */
	char util_arg[256];                       /* cgroup path or file path */
	char monitor_socket[FLARE_SOCK_PATH_MAX]; /* '@' = abstract namespace */
	int line;
};

struct flare_replica_cfg {
	char name[FLARE_NAME_MAX];
	int service; /* index into services */
	int host;    /* index into hosts */
	struct flare_addr addr;
	double load;     /* configured load, 0..1 */
	double capacity; /* requests/s it can serve (headroom balancing); 0: unknown */
	int line;
};

struct flare_service_cfg {
	char name[FLARE_NAME_MAX];
	struct flare_addr addr;
	int strategy, failover, replay;
	int connect_timeout_ms;
	int user_timeout_ms;
	int keepalive_idle_s, keepalive_interval_s, keepalive_count;
	int replay_buffer;      /* bytes of request kept per descriptor for replay */
	int request_timeout_ms; /* a reply not begun this long heals (0: never) */
	int protocol;           /* enum flare_protocol */
	int replay_unsafe;      /* HTTP POST/PATCH without Idempotency-Key may be replayed */
	int balance, binding;   /* enum flare_balance, enum flare_binding */
	int rebind_interval_ms; /* least time between two rebinds of a connection */
	double balance_band;    /* imbalance tolerated before connections move (hysteresis) */
	int slow_start_ms;      /* a new or recovered replica's share ramps up this long */
	int first_replica;      /* replicas of a service are contiguous */
	int n_replicas;
	int primary; /* replica index whose address equals the service's, or -1 */
	int line;
};

struct name_index;

struct flare_config {
	char path[256];
	char auth_key_file[512]; /* "" when control connections are not authenticated */
	int auth_key_line;
	const struct auth_key *auth; /* loaded by the daemon (auth_config_key), or NULL */
	struct flare_addr managers[FLARE_MAX_MANAGERS];
	int n_managers;
	/* manager.metrics: where manager N (--id N) serves Prometheus metrics */
	struct flare_addr manager_metrics[FLARE_MAX_MANAGERS];
	int n_manager_metrics;
	int report_interval_ms;
	int heartbeat_interval_ms;
	int heartbeat_timeout_ms;
	int rank_interval_ms;
	double rank_threshold;    /* utilization change that triggers a re-rank */
	int load_smoothing_ms;    /* time constant of the replicas' smoothed request rates */
	int handshake_timeout_ms; /* before HELLO (and the key's proof) */
	int max_connections, max_pending, max_pending_per_address; /* the manager's caps */

	double monitor_util_threshold; /* change that triggers an immediate report */
	int monitor_util_window_ms;    /* proc/cgroup utilization: mean over this long */
	int probe_interval_ms;
	int probe_timeout_ms;
	int probe_fall, probe_rise; /* failed probes in a row to call a replica dead, good ones
				     * to call it alive again (a refused probe is proof at once) */
	int monitor_hung_ms;        /* unread requests this long with no progress: hung */

	char agent_shm[FLARE_NAME_MAX * 2];
	char agent_user[64]; /* agent.user: whose table clients trust ("": root only) */
	int agent_user_line;
	int library_syslog; /* library.log = "syslog": the preloaded library logs there */
	struct flare_addr
	    agent_metrics; /* agent.metrics: its Prometheus endpoint (family 0: none) */
	int table_stale_ms;
	int reconnect_min_ms, reconnect_max_ms;

	struct flare_host_cfg *hosts;
	int n_hosts;
	struct flare_service_cfg *services;
	int n_services;
	struct flare_replica_cfg *replicas;
	int n_replicas;

	struct name_index *name_index; /* host/service/replica names, for O(1) lookups */
};

/* Does a service spread or move bindings (so its rates are measured)? */
static inline int flare_service_balances(const struct flare_service_cfg *s)
{
	return s->balance != FLARE_BALANCE_PRIMARY || s->binding != FLARE_BINDING_SESSION;
}

/* The host's config: flare-run and flarectl read it when no -c names one
 * (the Makefile sets it from SYSCONFDIR) */
#ifndef FLARE_DEFAULT_CONFIG
#define FLARE_DEFAULT_CONFIG "/etc/flare/flare.conf"
#endif

/* Loads and validates PATH. Returns 0, or -1 with "FILE:LINE: reason" in err. */
int flare_config_load(const char *path, struct flare_config *cfg, char *err, size_t errlen);
/* flare-run's load: 0 as flare_config_load; 1 when the file fails
 * validation but parses and its agent and library groups are valid (cfg
 * holds those, err the first error); -1 otherwise. */
int flare_config_load_client(const char *path, struct flare_config *cfg, char *err, size_t errlen);
/* What a valid config cannot do as it says, on this machine: a rebinding
 * service that never rebinds, an agent.user that does not exist, a
 * utilization file that cannot be read. warn() gets each as one line,
 * "FILE:LINE: warning: ..."; returns how many. */
int flare_config_warnings(const struct flare_config *cfg, void (*warn)(void *arg, const char *line),
			  void *arg);
/* Same from a string (tests, fuzzing); name stands for the file in messages. */
int flare_config_load_string(const char *text, const char *name, struct flare_config *cfg,
			     char *err, size_t errlen);
void flare_config_free(struct flare_config *cfg);

int flare_config_host_index(const struct flare_config *cfg, const char *name);
int flare_config_service_index(const struct flare_config *cfg, const char *name);
int flare_config_replica_index(const struct flare_config *cfg, const char *name);

#endif
