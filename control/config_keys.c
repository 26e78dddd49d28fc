#include "config_keys.h"

#include "config.h"

#define TOP(f) offsetof(struct flare_config, f)
#define SVC(f) offsetof(struct flare_service_cfg, f)

const struct config_key flare_config_keys[] = {
    {"manager", "report_interval_ms", KEY_INT, 1, 60000, 100, TOP(report_interval_ms),
     "monitors report at least this often"},
    {"manager", "heartbeat_interval_ms", KEY_INT, 1, 60000, 100, TOP(heartbeat_interval_ms),
     "heartbeats on every control connection"},
    {"manager", "heartbeat_timeout_ms", KEY_INT, 2, 600000, 500, TOP(heartbeat_timeout_ms),
     "a peer silent this long is dead (a monitor: its host and replicas)"},
    {"manager", "rank_interval_ms", KEY_INT, 10, 3600000, 1000, TOP(rank_interval_ms),
     "periodic re-ranking besides the event-driven one"},
    {"manager", "rank_threshold", KEY_NUMBER, 0, 1, 0.02, TOP(rank_threshold),
     "a utilization or load move that triggers a re-rank at once"},
    {"monitor", "util_threshold", KEY_NUMBER, 0, 1, 0.10, TOP(monitor_util_threshold),
     "a utilization move that triggers an immediate report"},
    {"monitor", "util_window_ms", KEY_INT, 0, 60000, 1000, TOP(monitor_util_window_ms),
     "`proc` and `cgroup` utilization is the mean over this window"},
    {"monitor", "probe_interval_ms", KEY_INT, 10, 600000, 200, TOP(probe_interval_ms),
     "TCP probes of replicas no process registered"},
    {"monitor", "probe_timeout_ms", KEY_INT, 1, 60000, 100, TOP(probe_timeout_ms),
     "a probe not answered this fast fails"},
    {"agent", "stale_ms", KEY_INT, 100, 86400000, 10000, TOP(table_stale_ms),
     "a table with no news from a manager this long is stale: clients keep its last ranking"},
    {"agent", "reconnect_min_ms", KEY_INT, 1, 60000, 50, TOP(reconnect_min_ms),
     "first backoff towards managers"},
    {"agent", "reconnect_max_ms", KEY_INT, 1, 600000, 2000, TOP(reconnect_max_ms),
     "longest backoff towards managers"},
    {"services[]", "connect_timeout_ms", KEY_INT, 1, 600000, FLARE_DEFAULT_CONNECT_TIMEOUT_MS,
     SVC(connect_timeout_ms), "per-replica connect timeout in the library"},
    {"services[]", "user_timeout_ms", KEY_INT, 0, 3600000, 1000, SVC(user_timeout_ms),
     "TCP_USER_TIMEOUT on managed sockets (0: the kernel's)"},
    {"services[]", "keepalive_idle_s", KEY_INT, 0, 32767, 1, SVC(keepalive_idle_s),
     "keepalive idle time on managed sockets (0: no keepalive)"},
    {"services[]", "keepalive_interval_s", KEY_INT, 1, 32767, 1, SVC(keepalive_interval_s),
     "keepalive probe interval"},
    {"services[]", "keepalive_count", KEY_INT, 1, 127, 2, SVC(keepalive_count),
     "keepalive probes before the connection is dead"},
    {"services[]", "replay_buffer", KEY_INT, 0, 16 << 20, 65536, SVC(replay_buffer),
     "request bytes kept per descriptor for replay"},
    {"services[]", "request_timeout_ms", KEY_INT, 0, 3600000, 0, SVC(request_timeout_ms),
     "a request whose reply has not begun this long is replayed elsewhere (0: never)"},
    {NULL, NULL, 0, 0, 0, 0, 0, NULL},
};
