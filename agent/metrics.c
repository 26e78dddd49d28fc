/* The agent's metrics (agent.metrics): its own counters and what the
 * library did on this host, per service, from every user's NAME.user.UID
 * (common/usershm.h). Each segment is its user's own: the agent only
 * reads it, with pread(2), so a user who truncates or scribbles over it
 * changes only that user's counts and cannot fault the agent. */
#include "agent.h"
#include "daemon.h"

#include "log.h"
#include "segments.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const field_name[SS_N] = {
    "flare_library_connections_total",  "flare_library_connect_failovers_total",
    "flare_library_heals_total",        "flare_library_replays_total",
    "flare_library_replay_bytes_total", "flare_library_errors_passed_total",
    "flare_library_rebinds_total",      "flare_library_switches_total"};
static const char *const field_help[SS_N] = {"connections the library managed",
					     "connects that moved down the ranking",
					     "failed connections moved to a replica",
					     "requests replayed by heals",
					     "bytes of the replayed requests",
					     "failures passed to the program as they were",
					     "connections moved at a request boundary (on demand)",
					     "per-request switches between replicas"};

/* A user segment's sums as last read: when it is removed, they are folded
 * into a->gone, so every counter only grows. */
struct user_seen {
	uint64_t ino;
	int present;
	uint64_t v[FLARE_USER_SERVICES][SS_N];
};

#define SEEN_MAX 4096 /* users whose segments are added up */
#define LIST_MAX 8192

static struct user_seen *seen_of(struct agent *a, uint64_t ino)
{
	for (int i = 0; i < a->n_seen; i++)
		if (a->seen[i].ino == ino)
			return &a->seen[i];
	if (a->n_seen >= SEEN_MAX)
		return NULL;
	struct user_seen *n = realloc(a->seen, sizeof(*n) * (size_t)(a->n_seen + 1));
	if (!n)
		return NULL;
	a->seen = n;
	memset(&n[a->n_seen], 0, sizeof(*n));
	n[a->n_seen].ino = ino;
	return &n[a->n_seen++];
}

/* Every user's segment read (pread, never mapped) and added up */
static void totals(struct agent *a, uint64_t (*sum)[SS_N], int *processes)
{
	static struct flare_seg segs[LIST_MAX];
	static uint64_t one[FLARE_USER_SERVICES][SS_N];
	*processes = 0;
	for (int i = 0; i < a->n_seen; i++)
		a->seen[i].present = 0;
	int n = flare_segs_list(a->writer.name, segs, LIST_MAX);
	for (int i = 0; i < n && i < LIST_MAX; i++) {
		const struct flare_seg *g = &segs[i];
		if (g->kind != SEG_USER || !g->valid)
			continue;
		memset(one, 0, sizeof(one));
		struct user_seen *u = seen_of(a, g->ino);
		if (!u || flare_seg_user_sum(g, one) < 0) {
			if (u)
				u->present = 1; /* changed while read: its last sums stand */
			continue;
		}
		memcpy(u->v, one, sizeof(one));
		u->present = 1;
		*processes += g->live_processes;
	}
	for (int i = 0; i < a->n_seen;) {
		if (a->seen[i].present) {
			i++;
			continue;
		}
		for (int v = 0; v < FLARE_USER_SERVICES; v++)
			for (int f = 0; f < SS_N; f++)
				a->gone[v][f] += a->seen[i].v[v][f];
		a->seen[i] = a->seen[--a->n_seen];
	}
	memcpy(sum, a->gone, sizeof(uint64_t) * FLARE_USER_SERVICES * SS_N);
	for (int i = 0; i < a->n_seen; i++)
		for (int v = 0; v < FLARE_USER_SERVICES; v++)
			for (int f = 0; f < SS_N; f++)
				sum[v][f] += a->seen[i].v[v][f];
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct agent *a = arg;
	struct evbuffer *b = evbuffer_new();
	uint64_t(*sum)[SS_N] = calloc(FLARE_USER_SERVICES, sizeof(*sum));
	if (!b || !sum) {
		evhttp_send_error(req, 500, "out of memory");
		evbuffer_free(b);
		free(sum);
		return;
	}
	int processes;
	totals(a, sum, &processes);
	evbuffer_add_printf(
	    b,
	    "# HELP flare_agent_subscribed 1 while a manager feeds the table\n"
	    "# TYPE flare_agent_subscribed gauge\nflare_agent_subscribed %d\n"
	    "# HELP flare_agent_tables_total full tables written\n"
	    "# TYPE flare_agent_tables_total counter\nflare_agent_tables_total %llu\n"
	    "# HELP flare_agent_deltas_total ranking changes written\n"
	    "# TYPE flare_agent_deltas_total counter\nflare_agent_deltas_total %llu\n"
	    "# HELP flare_agent_frames_rejected_total rankings refused as malformed\n"
	    "# TYPE flare_agent_frames_rejected_total counter\n"
	    "flare_agent_frames_rejected_total %llu\n"
	    "# HELP flare_agent_queries_total reactive-failover questions forwarded\n"
	    "# TYPE flare_agent_queries_total counter\nflare_agent_queries_total %llu\n"
	    "# HELP flare_agent_wake 1 while the agent ends condemned connections (kernel wake)\n"
	    "# TYPE flare_agent_wake gauge\nflare_agent_wake %d\n"
	    "# HELP flare_agent_wake_ended_total blocked clients' connections ended\n"
	    "# TYPE flare_agent_wake_ended_total counter\nflare_agent_wake_ended_total %llu\n"
	    "# HELP flare_library_processes client processes counting into the table\n"
	    "# TYPE flare_library_processes gauge\nflare_library_processes %d\n",
	    a->subscribed, (unsigned long long)a->fulls, (unsigned long long)a->deltas,
	    (unsigned long long)a->rejected, (unsigned long long)a->queries, a->wake.on,
	    (unsigned long long)a->wake.ended, processes);
	int n = a->cfg->n_services < FLARE_USER_SERVICES ? a->cfg->n_services : FLARE_USER_SERVICES;
	for (int f = 0; f < SS_N; f++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", field_name[f],
				    field_help[f], field_name[f]);
		for (int v = 0; v < n; v++)
			evbuffer_add_printf(b, "%s{service=\"%s\"} %llu\n", field_name[f],
					    a->cfg->services[v].name,
					    (unsigned long long)sum[v][f]);
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
	free(sum);
}

int metrics_start(struct agent *a)
{
	a->gone = calloc(FLARE_USER_SERVICES, sizeof(*a->gone));
	if (!a->gone)
		return -1;
	if (!a->cfg->agent_metrics.family)
		return 0;
	a->metrics = metrics_listen(a->base, &a->cfg->agent_metrics, on_metrics, a);
	return a->metrics ? 0 : -1;
}

void metrics_stop(struct agent *a)
{
	if (a->metrics)
		evhttp_free(a->metrics);
	a->metrics = NULL;
	free(a->gone);
	free(a->seen);
	a->gone = NULL;
	a->seen = NULL;
	a->n_seen = 0;
}
