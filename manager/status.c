/* `flarectl status`: what the manager believes, as text or JSON. */
#include "clock.h"
#include "manager.h"

#include "table.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

static const char *yes(int v) { return v ? "yes" : "no"; }

static void age(struct evbuffer *b, uint64_t now, uint64_t then)
{
	if (!then)
		evbuffer_add_printf(b, "never");
	else
		evbuffer_add_printf(b, "%.0f ms ago", (double)(now - then) / 1e6);
}

/* How its monitor knows it lives: its process registered, its process
 * found by its listening socket, or probes only (a host not heard from:
 * unknown) */
static const char *watched_kind(const struct manager *m, int r)
{
	if (!m->hosts[m->cfg->replicas[r].host].reports)
		return "unknown";
	return m->reps[r].registered ? "process" : m->reps[r].pid ? "found" : "probe";
}

/* The same for a person: with the process's pid */
static void watched_text(const struct manager *m, int r, char *out, size_t n)
{
	const char *k = watched_kind(m, r);
	if (!strcmp(k, "process"))
		snprintf(out, n, "pid %u", m->reps[r].pid);
	else if (!strcmp(k, "found"))
		snprintf(out, n, "found pid %u", m->reps[r].pid);
	else
		snprintf(out, n, "%s", k);
}

static void changed_text(uint64_t now, uint64_t then, char *out, size_t n)
{
	if (!then)
		snprintf(out, n, "never");
	else if (now - then < 100000000000ull)
		snprintf(out, n, "%.1fs ago", (double)(now - then) / 1e9);
	else
		snprintf(out, n, "%.0fs ago", (double)(now - then) / 1e9);
}

static void order_names(struct evbuffer *b, const struct flare_config *c, int first, uint8_t n,
			const uint8_t *idx, int json)
{
	for (int k = 0; k < n; k++)
		evbuffer_add_printf(b, json ? "%s\"%s\"" : "%s%s", k ? (json ? "," : " ") : "",
				    c->replicas[first + idx[k]].name);
}

static void render_text(struct manager *m, struct evbuffer *b, uint64_t now)
{
	const struct flare_config *c = m->cfg;
	char a[FLARE_ADDR_STRLEN];
	int monitors = 0;
	for (int i = 0; i < c->n_hosts; i++)
		monitors += m->hosts[i].monitor != NULL;
	evbuffer_add_printf(b,
			    "manager %d at %s: gen %llu, up %.1f s%s, %d agent(s), %d/%d "
			    "monitor(s), last ranking %.0f us\n",
			    m->id, flare_addr_format(&m->addr, a, sizeof(a)),
			    (unsigned long long)m->gen, (double)(now - m->start_ns) / 1e9,
			    m->warm ? "" : " (catching up: agents held)", m->n_agents, monitors,
			    c->n_hosts, m->last_rank_us);
	if (c->auth)
		evbuffer_add_printf(b, "authentication on: %llu peer(s) rejected\n\n",
				    (unsigned long long)m->auth_rejected);
	else
		evbuffer_add_printf(b, "authentication OFF (no auth_key_file)\n\n");
	evbuffer_add_printf(b, "%-20s %-6s %-6s %s\n", "HOST", "ALIVE", "UTIL", "LAST REPORT");
	for (int i = 0; i < c->n_hosts; i++) {
		evbuffer_add_printf(b, "%-20s %-6s %-6.2f ", c->hosts[i].name,
				    yes(m->hosts[i].alive), m->hosts[i].util);
		age(b, now, m->hosts[i].last_report_ns);
		evbuffer_add_printf(b, "\n");
	}
	for (int s = 0; s < c->n_services; s++) {
		const struct flare_service_cfg *sv = &c->services[s];
		const struct fw_rank_service *p = &m->pub_svcs[s];
		evbuffer_add_printf(
		    b,
		    "\nSERVICE %s %s  strategy %s, failover %s, replay %s, protocol %s%s\n  "
		    "balance %s, binding %s\n  order: ",
		    sv->name, flare_addr_format(&sv->addr, a, sizeof(a)),
		    flare_strategy_name(sv->strategy), flare_failover_name(sv->failover),
		    flare_replay_name(sv->replay), flare_protocol_name(sv->protocol),
		    sv->replay_unsafe ? " (unsafe requests replayed)" : "",
		    flare_balance_name(sv->balance), flare_binding_name(sv->binding));
		order_names(b, c, sv->first_replica, p->n_order, p->order, 0);
		evbuffer_add_printf(
		    b, "\n  %-16s %-12s %-24s %-6s %-8s %-18s %-10s %-6s %-9s %-6s %s\n", "REPLICA",
		    "HOST", "ADDRESS", "ALIVE", "REASON", "WATCHED", "CHANGED", "LOAD", "RATE/S",
		    "WEIGHT", "FAILOVER");
		for (int r = sv->first_replica; r < sv->first_replica + sv->n_replicas; r++) {
			const struct fw_rank_replica *q = &m->pub_reps[r];
			char watched[32], changed[32];
			watched_text(m, r, watched, sizeof(watched));
			changed_text(now, m->reps[r].changed_ns, changed, sizeof(changed));
			evbuffer_add_printf(
			    b, "  %-16s %-12s %-24s %-6s %-8s %-18s %-10s %-6.2f %-9.1f %-6.2f ",
			    c->replicas[r].name, c->hosts[c->replicas[r].host].name,
			    flare_addr_format(&c->replicas[r].addr, a, sizeof(a)), yes(q->alive),
			    q->alive ? "-" : flare_death_name(q->reason), watched, changed,
			    (double)q->load_ppm / FLARE_PPM, m->reps[r].rate,
			    (double)q->weight_ppm / FLARE_PPM);
			order_names(b, c, sv->first_replica, q->n_failover, q->failover, 0);
			evbuffer_add_printf(b, "%s\n", m->reps[r].drained ? "  (DRAINED)" : "");
		}
	}
}

/* Names are validated by the config loader (no quotes, backslashes or
 * control characters), so they go into JSON strings as they are. */
static void render_json(struct manager *m, struct evbuffer *b, uint64_t now)
{
	const struct flare_config *c = m->cfg;
	char a[FLARE_ADDR_STRLEN];
	evbuffer_add_printf(
	    b,
	    "{\"manager\":{\"id\":%d,\"address\":\"%s\",\"gen\":%llu,\"uptime_ms\":%.0f,"
	    "\"caught_up\":%s,\"agents\":%d,\"rank_us\":%.1f,\"rankings\":%llu,"
	    "\"pushes\":%llu,\"auth\":%s,\"auth_rejected\":%llu,\"rebinds\":%llu,"
	    "\"moves_pending\":%d},\"hosts\":[",
	    m->id, flare_addr_format(&m->addr, a, sizeof(a)), (unsigned long long)m->gen,
	    (double)(now - m->start_ns) / 1e6, m->warm ? "true" : "false", m->n_agents,
	    m->last_rank_us, (unsigned long long)m->rank_count, (unsigned long long)m->push_count,
	    c->auth ? "true" : "false", (unsigned long long)m->auth_rejected,
	    (unsigned long long)m->rebinds, m->n_moves);
	for (int i = 0; i < c->n_hosts; i++) {
		const struct mhost *h = &m->hosts[i];
		evbuffer_add_printf(b,
				    "%s{\"name\":\"%s\",\"alive\":%s,\"util\":%.4f,\"monitor\":%s,"
				    "\"last_report_ms\":",
				    i ? "," : "", c->hosts[i].name, h->alive ? "true" : "false",
				    h->util, h->monitor ? "true" : "false");
		if (h->last_report_ns)
			evbuffer_add_printf(b, "%.1f}", (double)(now - h->last_report_ns) / 1e6);
		else
			evbuffer_add_printf(b, "null}");
	}
	evbuffer_add_printf(b, "],\"services\":[");
	for (int s = 0; s < c->n_services; s++) {
		const struct flare_service_cfg *sv = &c->services[s];
		const struct fw_rank_service *p = &m->pub_svcs[s];
		evbuffer_add_printf(
		    b,
		    "%s{\"name\":\"%s\",\"address\":\"%s\",\"strategy\":\"%s\","
		    "\"failover\":\"%s\",\"replay\":\"%s\",\"protocol\":\"%s\","
		    "\"replay_unsafe\":%s,\"balance\":\"%s\",\"binding\":\"%s\",\"order\":[",
		    s ? "," : "", sv->name, flare_addr_format(&sv->addr, a, sizeof(a)),
		    flare_strategy_name(sv->strategy), flare_failover_name(sv->failover),
		    flare_replay_name(sv->replay), flare_protocol_name(sv->protocol),
		    sv->replay_unsafe ? "true" : "false", flare_balance_name(sv->balance),
		    flare_binding_name(sv->binding));
		order_names(b, c, sv->first_replica, p->n_order, p->order, 1);
		evbuffer_add_printf(b, "],\"replicas\":[");
		for (int r = sv->first_replica; r < sv->first_replica + sv->n_replicas; r++) {
			const struct fw_rank_replica *q = &m->pub_reps[r];
			evbuffer_add_printf(
			    b,
			    "%s{\"name\":\"%s\",\"host\":\"%s\",\"address\":\"%s\","
			    "\"alive\":%s,\"reason\":\"%s\",\"watched\":\"%s\",\"changed_ms\":%.1f,"
			    "\"registered\":%s,\"pid\":%u,\"load\":%.4f,"
			    "\"rate\":%.3f,\"weight\":%.4f,\"ramp\":%.2f,\"connections\":%d,"
			    "\"drained\":%s,\"failover\":[",
			    r > sv->first_replica ? "," : "", c->replicas[r].name,
			    c->hosts[c->replicas[r].host].name,
			    flare_addr_format(&c->replicas[r].addr, a, sizeof(a)),
			    q->alive ? "true" : "false",
			    q->alive ? "none" : flare_death_name(q->reason), watched_kind(m, r),
			    m->reps[r].changed_ns ? (double)(now - m->reps[r].changed_ns) / 1e6
						  : -1.0,
			    m->reps[r].registered ? "true" : "false", m->reps[r].pid,
			    (double)q->load_ppm / FLARE_PPM, m->reps[r].rate,
			    (double)q->weight_ppm / FLARE_PPM, (double)q->ramp_ppm / FLARE_PPM,
			    m->reps[r].n_conns, m->reps[r].drained ? "true" : "false");
			order_names(b, c, sv->first_replica, q->n_failover, q->failover, 1);
			evbuffer_add_printf(b, "]}");
		}
		evbuffer_add_printf(b, "]}");
	}
	evbuffer_add_printf(b, "]}\n");
}

char *status_render(struct manager *m, int json)
{
	struct evbuffer *b = evbuffer_new();
	if (!b)
		return NULL;
	uint64_t now = flare_monotonic_ns();
	if (json)
		render_json(m, b, now);
	else
		render_text(m, b, now);
	size_t n = evbuffer_get_length(b);
	char *out = malloc(n + 1);
	if (out) {
		evbuffer_remove(b, out, n);
		out[n] = '\0';
	}
	evbuffer_free(b);
	return out;
}
