/* The agent's metrics (agent.metrics): its own counters and what the
 * library did on this host, per service, from NAME.stats
 * (common/svcstats.h). The segment is made here, mode 0666 (any user's
 * clients claim a slot in it, as they take round-robin turns); a scrape
 * adds up the slots of live processes and folds those of processes that
 * exited into the agent's own totals, freeing their slots, so every
 * counter only grows. */
#include "agent.h"
#include "daemon.h"

#include "log.h"

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

static void stats_name(const struct agent *a, char *out, size_t n)
{
	snprintf(out, n, "%s" FLARE_SVCSTATS_SUFFIX, a->writer.name);
}

/* Live processes' slots added up, exited ones' folded into a->gone */
static void totals(struct agent *a, uint64_t (*sum)[SS_N], int *processes)
{
	memcpy(sum, a->gone, sizeof(uint64_t) * FLARE_SVCSTATS_SERVICES * SS_N);
	*processes = 0;
	for (int i = 0; a->stats && i < FLARE_SVCSTATS_SLOTS; i++) {
		struct flare_svcstats_slot *s = &a->stats->slots[i];
		uint32_t pid = __atomic_load_n(&s->pid, __ATOMIC_ACQUIRE);
		if (!pid)
			continue;
		int gone = kill((pid_t)pid, 0) < 0 && errno == ESRCH;
		for (int v = 0; v < FLARE_SVCSTATS_SERVICES; v++)
			for (int f = 0; f < SS_N; f++) {
				uint64_t x = __atomic_load_n(&s->v[v][f], __ATOMIC_RELAXED);
				sum[v][f] += x;
				if (gone) {
					a->gone[v][f] += x;
					__atomic_store_n(&s->v[v][f], 0, __ATOMIC_RELAXED);
				}
			}
		if (gone)
			__atomic_store_n(&s->pid, 0, __ATOMIC_RELEASE); /* free for another */
		else
			++*processes;
	}
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct agent *a = arg;
	struct evbuffer *b = evbuffer_new();
	uint64_t(*sum)[SS_N] = calloc(FLARE_SVCSTATS_SERVICES, sizeof(*sum));
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
	    "# HELP flare_library_processes client processes counting into the table\n"
	    "# TYPE flare_library_processes gauge\nflare_library_processes %d\n",
	    a->subscribed, (unsigned long long)a->fulls, (unsigned long long)a->deltas,
	    (unsigned long long)a->rejected, (unsigned long long)a->queries, processes);
	int n = a->cfg->n_services < FLARE_SVCSTATS_SERVICES ? a->cfg->n_services
							     : FLARE_SVCSTATS_SERVICES;
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
	char name[96];
	stats_name(a, name, sizeof(name));
	a->gone = calloc(FLARE_SVCSTATS_SERVICES, sizeof(*a->gone));
	int fd = shm_open(name, O_CREAT | O_RDWR | O_CLOEXEC, 0666);
	struct flare_svcstats *s = MAP_FAILED;
	if (fd >= 0 && fchmod(fd, 0666) == 0 && ftruncate(fd, sizeof(*s)) == 0)
		s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	if (s == MAP_FAILED || !a->gone) {
		log_warn("%s: cannot make the library's counters segment: %s", name,
			 strerror(errno));
	} else {
		/* a segment a previous agent left keeps its slots and counts */
		if (s->magic != FLARE_SVCSTATS_MAGIC) {
			s->n_slots = FLARE_SVCSTATS_SLOTS;
			s->n_services = FLARE_SVCSTATS_SERVICES;
			s->n_fields = SS_N;
			__atomic_store_n(&s->magic, FLARE_SVCSTATS_MAGIC, __ATOMIC_RELEASE);
		}
		a->stats = s;
	}
	if (!a->cfg->agent_metrics.family)
		return 0;
	a->metrics = metrics_listen(a->base, &a->cfg->agent_metrics, on_metrics, a);
	return a->metrics ? 0 : -1;
}

void metrics_stop(struct agent *a, int unlink_segment)
{
	if (a->metrics)
		evhttp_free(a->metrics);
	a->metrics = NULL;
	if (a->stats)
		munmap(a->stats, sizeof(*a->stats));
	a->stats = NULL;
	free(a->gone);
	a->gone = NULL;
	if (unlink_segment) {
		char name[96];
		stats_name(a, name, sizeof(name));
		shm_unlink(name);
	}
}
