#include "flare.h"

#include <stdio.h>
#include <string.h>

static const char *const strategy_names[] = {"static", "least-loaded"};
static const char *const failover_names[] = {"proactive", "reactive", "static"};
static const char *const replay_names[] = {"request-reply", "none", "auto"};
static const char *const protocol_names[] = {"auto", "opaque", "redis", "http", "memcached"};
static const char *const balance_names[] = {"primary", "round-robin", "random", "least-loaded",
					    "headroom"};
static const char *const binding_names[] = {"session", "on-demand", "request"};
static const char *const death_names[] = {"",     "exited", "refused", "stopped",
					  "hung", "probe",  "host"};

#define NAME_OF(tbl, i) ((i) >= 0 && (size_t)(i) < sizeof(tbl) / sizeof(tbl[0]) ? tbl[i] : "?")

static int index_of(const char *const *tbl, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (s && strcmp(tbl[i], s) == 0)
			return i;
	return -1;
}

const char *flare_strategy_name(int s) { return NAME_OF(strategy_names, s); }
const char *flare_death_name(int r) { return NAME_OF(death_names, r); }
const char *flare_failover_name(int f) { return NAME_OF(failover_names, f); }
const char *flare_replay_name(int r) { return NAME_OF(replay_names, r); }
int flare_strategy_parse(const char *s) { return index_of(strategy_names, 2, s); }
int flare_failover_parse(const char *s) { return index_of(failover_names, 3, s); }
int flare_replay_parse(const char *s) { return index_of(replay_names, 3, s); }
const char *flare_protocol_name(int p) { return NAME_OF(protocol_names, p); }
int flare_protocol_parse(const char *s) { return index_of(protocol_names, 5, s); }
const char *flare_balance_name(int b) { return NAME_OF(balance_names, b); }
int flare_balance_parse(const char *s) { return index_of(balance_names, 5, s); }
const char *flare_binding_name(int b) { return NAME_OF(binding_names, b); }
int flare_binding_parse(const char *s) { return index_of(binding_names, 3, s); }

void flare_query_socket_name(const char *shm, char *out, size_t n)
{
	/* abstract, so nothing is left behind; the table's name keeps two
	 * deployments on one host apart */
	snprintf(out, n, "@flare-agent%s", shm);
}

uint32_t flare_ppm(double v)
{
	if (!(v > 0)) /* negative or NaN */
		return 0;
	if (v >= 1)
		return FLARE_PPM;
	return (uint32_t)(v * FLARE_PPM + 0.5); /* no libm: the library links libc only */
}
