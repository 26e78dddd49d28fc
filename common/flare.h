/* Limits and enumerations shared by the config, the wire protocol, the
 * shared table and the library. Values of the enums travel on the wire and
 * sit in the table: append, never renumber. */
#ifndef FLARE_FLARE_H
#define FLARE_FLARE_H

#include <stddef.h>
#include <stdint.h>

#define FLARE_VERSION "0.1.0"

#define FLARE_NAME_MAX 32     /* host/service/replica names, with the NUL */
#define FLARE_MAX_REPLICAS 16 /* replicas of one service */
#define FLARE_SOCK_PATH_MAX 108
#define FLARE_MAX_MANAGERS 8
#define FLARE_PPM 1000000u /* loads and utilizations travel as parts per million */

/* Defaults that the config loader and the library's fallbacks share */
#define FLARE_DEFAULT_CONNECT_TIMEOUT_MS 250 /* services[].connect_timeout_ms */
/* a reactive failover waits at most this long for the manager's answer */
#define FLARE_QUERY_TIMEOUT_MAX_MS 500

enum flare_util_kind {
	FLARE_UTIL_PROC = 0,
	FLARE_UTIL_CGROUP = 1,
	FLARE_UTIL_FILE = 2,
};

enum flare_strategy {
	FLARE_STRATEGY_STATIC = 0,
	FLARE_STRATEGY_LEAST_LOADED = 1,
};

enum flare_failover {
	FLARE_FAILOVER_PROACTIVE = 0,
	FLARE_FAILOVER_REACTIVE = 1,
	FLARE_FAILOVER_STATIC = 2,
};

/* What a heal may replay on an opaque connection (one no framer reads).
 * AUTO, the default: only the connection's first request, whose replay
 * is the connection's whole history; REQUEST_REPLY: every request, as
 * FLARe assumes (the service says its protocol is stateless request and
 * reply); NONE: failover at connect time only. Framed protocols follow
 * their framer's rules under AUTO and REQUEST_REPLY alike. */
enum flare_replay {
	FLARE_REPLAY_REQUEST_REPLY = 0,
	FLARE_REPLAY_NONE = 1,
	FLARE_REPLAY_AUTO = 2,
};

/* A service's wire protocol: how the library finds request and reply
 * boundaries (shim/core/frame/frame.h). AUTO: from a connection's first bytes. */
enum flare_protocol {
	FLARE_PROTO_AUTO = 0,
	FLARE_PROTO_OPAQUE = 1,
	FLARE_PROTO_REDIS = 2,
	FLARE_PROTO_HTTP = 3,
	FLARE_PROTO_MEMCACHED = 4,
};

/* How new bindings are spread over a service's live replicas (TAO's
 * policies; docs/DESIGN.md "Load balancing"). PRIMARY: FLARe's, the dialed
 * primary while it lives, else the best ranked. */
enum flare_balance {
	FLARE_BALANCE_PRIMARY = 0,
	FLARE_BALANCE_ROUND_ROBIN = 1,
	FLARE_BALANCE_RANDOM = 2,
	FLARE_BALANCE_LEAST_LOADED = 3,
	FLARE_BALANCE_HEADROOM = 4,
};

/* When a connection may be bound to another replica: at connect only
 * (SESSION), when the manager moves it (ON_DEMAND), or per request. */
enum flare_binding {
	FLARE_BINDING_SESSION = 0,
	FLARE_BINDING_ON_DEMAND = 1,
	FLARE_BINDING_REQUEST = 2,
};

/* Why a replica is dead, from the monitor that saw it (or the manager,
 * for a host it lost), in REPORT and RANK frames and in the table. What a
 * death means for a connection that is still open differs (docs/DESIGN.md,
 * "Death reasons"): an exited process's connections end by themselves
 * (FIN or RST) or stay served by a child it forked; a stopped, hung or
 * unreachable one's do not. */
enum flare_death {
	FLARE_DEATH_NONE,    /* alive, or a sender that gives no reason */
	FLARE_DEATH_EXITED,  /* its registered process closed the registration */
	FLARE_DEATH_REFUSED, /* a probe's connect was refused: nothing listens */
	FLARE_DEATH_STOPPED, /* its registered process is stopped (SIGSTOP, a debugger) */
	FLARE_DEATH_HUNG,    /* its process stopped reading its connections */
	FLARE_DEATH_PROBE,   /* a probe timed out or failed otherwise */
	FLARE_DEATH_HOST,    /* the manager lost its host's monitor */
	FLARE_DEATH_N
};
const char *flare_death_name(int reason);
/* The process is gone and its connections say so themselves */
static inline int flare_death_exited(int reason)
{
	return reason == FLARE_DEATH_EXITED || reason == FLARE_DEATH_REFUSED;
}

/* Replica flags in the table and RANK frames */
#define FLARE_REP_DRAINED 1u /* no new bindings; failover only when nothing else lives */

/* Connections the manager asks to move at once (on-demand rebinding) */
#define FLARE_MAX_MOVES 256

/* A fraction as parts per million, clamped to [0, 1] (NaN is 0). */
uint32_t flare_ppm(double v);

const char *flare_strategy_name(int s);
const char *flare_failover_name(int f);
const char *flare_replay_name(int r);
int flare_strategy_parse(const char *s);
int flare_failover_parse(const char *s);
/* The UNIX socket (abstract: '@' then the name) on which the agent that
 * publishes table `shm` answers reactive-failover queries. */
#define FLARE_QUERY_SOCKET_MAX 108
void flare_query_socket_name(const char *shm, char *out, size_t n);
int flare_replay_parse(const char *s);
const char *flare_protocol_name(int p);
int flare_protocol_parse(const char *s);
const char *flare_balance_name(int b);
int flare_balance_parse(const char *s);
const char *flare_binding_name(int b);
int flare_binding_parse(const char *s);

#endif
