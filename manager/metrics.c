/* Prometheus metrics of the manager (manager.metrics): GET /metrics answers
 * the text exposition format (version 0.0.4) from libevent's evhttp, in the
 * manager's own event loop, from its current picture. Names follow the
 * conventions: flare_ prefix, base units (ratios, seconds), _total for
 * counters; labels name hosts, services and replicas (config names, which
 * the loader restricts to characters that need no escaping). */
#include "manager.h"
#include "daemon.h"

#include "log.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <string.h>

#define HELP(b, name, type, text)                                                                  \
	evbuffer_add_printf(b, "# HELP " name " " text "\n# TYPE " name " " type "\n")

static void hosts(struct manager *m, struct evbuffer *b)
{
	const struct flare_config *c = m->cfg;
	HELP(b, "flare_host_up", "gauge", "1 while the host's monitor reports to this manager");
	for (int h = 0; h < c->n_hosts; h++)
		evbuffer_add_printf(b, "flare_host_up{host=\"%s\"} %d\n", c->hosts[h].name,
				    m->hosts[h].alive);
	HELP(b, "flare_host_utilization_ratio", "gauge", "the host's CPU utilization (0..1)");
	for (int h = 0; h < c->n_hosts; h++)
		evbuffer_add_printf(b, "flare_host_utilization_ratio{host=\"%s\"} %.4f\n",
				    c->hosts[h].name, m->hosts[h].util);
	HELP(b, "flare_host_reports_total", "counter", "reports received from the host's monitor");
	for (int h = 0; h < c->n_hosts; h++)
		evbuffer_add_printf(b, "flare_host_reports_total{host=\"%s\"} %llu\n",
				    c->hosts[h].name, (unsigned long long)m->hosts[h].reports);
}

/* The replica's position in its service's order for new connections (0 is
 * first), or the service's replica count when it is not ranked */
static int rank_of(const struct manager *m, int s, int r)
{
	const struct fw_rank_service *p = &m->pub_svcs[s];
	for (int k = 0; k < p->n_order; k++)
		if (p->first_replica + p->order[k] == (uint32_t)r)
			return k;
	return (int)p->n_replicas;
}

static void replicas(struct manager *m, struct evbuffer *b)
{
	const struct flare_config *c = m->cfg;
	static const struct {
		const char *name, *type, *help;
	} families[] = {
	    {"flare_replica_up", "gauge",
	     "1 while the replica is alive (its process and its host)"},
	    {"flare_replica_drained", "gauge", "1 while an operator has the replica drained"},
	    {"flare_replica_load_ratio", "gauge", "the CPU share the replica's object uses (0..1)"},
	    {"flare_replica_requests_per_second", "gauge", "smoothed request rate it serves"},
	    {"flare_replica_rank", "gauge", "its place in the service's order (0 first)"},
	};
	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", families[f].name,
				    families[f].help, families[f].name, families[f].type);
		for (int r = 0; r < c->n_replicas; r++) {
			const struct flare_replica_cfg *rc = &c->replicas[r];
			const struct fw_rank_replica *q = &m->pub_reps[r];
			double v = f == 0   ? q->alive
				   : f == 1 ? m->reps[r].drained
				   : f == 2 ? (double)q->load_ppm / FLARE_PPM
				   : f == 3 ? m->reps[r].rate
					    : rank_of(m, rc->service, r);
			evbuffer_add_printf(b,
					    "%s{service=\"%s\",replica=\"%s\",host=\"%s\"} %.4f\n",
					    families[f].name, c->services[rc->service].name,
					    rc->name, c->hosts[rc->host].name, v);
		}
	}
}

static void manager_self(struct manager *m, struct evbuffer *b)
{
	int monitors = 0;
	for (int h = 0; h < m->cfg->n_hosts; h++)
		monitors += m->hosts[h].monitor != NULL;
	HELP(b, "flare_manager_caught_up", "gauge", "1 once every host's monitor reported");
	evbuffer_add_printf(b, "flare_manager_caught_up %d\n", m->warm);
	HELP(b, "flare_rankings_total", "counter", "rankings computed (Algorithm 1)");
	evbuffer_add_printf(b, "flare_rankings_total %llu\n", (unsigned long long)m->rank_count);
	HELP(b, "flare_ranking_duration_seconds", "gauge", "what the last ranking cost");
	evbuffer_add_printf(b, "flare_ranking_duration_seconds %.6f\n", m->last_rank_us / 1e6);
	HELP(b, "flare_pushes_total", "counter", "ranking changes pushed to agents");
	evbuffer_add_printf(b, "flare_pushes_total %llu\n", (unsigned long long)m->push_count);
	HELP(b, "flare_agents_connected", "gauge", "agents subscribed to this manager");
	evbuffer_add_printf(b, "flare_agents_connected %d\n", m->n_agents);
	HELP(b, "flare_monitors_connected", "gauge", "hosts whose monitor is connected");
	evbuffer_add_printf(b, "flare_monitors_connected %d\n", monitors);
	HELP(b, "flare_frames_rejected_total", "counter", "frames out of place, their peer closed");
	evbuffer_add_printf(b, "flare_frames_rejected_total %llu\n",
			    (unsigned long long)m->frames_rejected);
	HELP(b, "flare_auth_rejected_total", "counter", "peers that failed to authenticate");
	evbuffer_add_printf(b, "flare_auth_rejected_total %llu\n",
			    (unsigned long long)m->auth_rejected);
	HELP(b, "flare_connections_refused_total", "counter",
	     "connections closed as they arrived: over a manager.max_* bound");
	evbuffer_add_printf(b, "flare_connections_refused_total %llu\n",
			    (unsigned long long)m->conns_refused);
	HELP(b, "flare_connections", "gauge", "control connections open");
	evbuffer_add_printf(b, "flare_connections %d\n", limits_connections(m));
	HELP(b, "flare_connections_pending", "gauge", "connections that have not said HELLO yet");
	evbuffer_add_printf(b, "flare_connections_pending %d\n", limits_pending(m));
	HELP(b, "flare_rebinds_total", "counter", "connections the balancer asked to move");
	evbuffer_add_printf(b, "flare_rebinds_total %llu\n", (unsigned long long)m->rebinds);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
	struct manager *m = arg;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, 405, "only GET");
		return;
	}
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	manager_self(m, b);
	hosts(m, b);
	replicas(m, b);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

int metrics_start(struct manager *m)
{
	if (m->id > m->cfg->n_manager_metrics)
		return 0; /* no metrics address for this manager */
	m->metrics = metrics_listen(m->base, &m->cfg->manager_metrics[m->id - 1], on_metrics, m);
	return m->metrics ? 0 : -1;
}

void metrics_stop(struct manager *m)
{
	if (m->metrics)
		evhttp_free(m->metrics);
	m->metrics = NULL;
}
