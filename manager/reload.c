/* SIGHUP: the manager takes a new config in place. Hosts and replicas are
 * matched by name: what the manager knew of those that stay (liveness,
 * utilization, loads, rates, drains, the connected monitor) is carried
 * over; new ones are dead until their monitor reports; a removed host's
 * monitor is told so and closed. Agents stay subscribed and get the whole
 * new table at once (a new layout makes their agents write a new segment,
 * which clients reopen); monitors stay connected. Its own listening and
 * metrics addresses change only on a restart. */
#include "manager.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Carries what is known of hosts that stay; returns the monitors of hosts
 * that are gone in gone[] (closed once the new state is in place). */
static int carry_hosts(struct manager *old, struct manager *n, struct evconn **gone)
{
	int n_gone = 0;
	const struct flare_config *oc = old->cfg, *nc = n->cfg;
	for (int h = 0; h < nc->n_hosts; h++) {
		int o = flare_config_host_index(oc, nc->hosts[h].name);
		if (o < 0)
			continue;
		struct mhost *src = &old->hosts[o], *dst = &n->hosts[h];
		*dst = *src;
		dst->seen = NULL; /* report positions: of the old config's indexes */
		dst->n_seen = 0;
		src->monitor = NULL;
		if (dst->monitor) /* the connection now names the host by its new index */
			dst->monitor->data = (void *)(intptr_t)(h + 1);
	}
	for (int o = 0; o < oc->n_hosts; o++)
		if (old->hosts[o].monitor) {
			log_warn("host %s is no longer in the config: closing its monitor",
				 oc->hosts[o].name);
			old->hosts[o].monitor->data = NULL; /* no host-lost handling: it is gone */
			gone[n_gone++] = old->hosts[o].monitor;
		}
	return n_gone;
}

static void carry_replicas(struct manager *old, struct manager *n)
{
	const struct flare_config *oc = old->cfg, *nc = n->cfg;
	for (int r = 0; r < nc->n_replicas; r++) {
		int o = flare_config_replica_index(oc, nc->replicas[r].name);
		/* the same replica only if it is still on the same host */
		if (o < 0 || strcmp(oc->hosts[oc->replicas[o].host].name,
				    nc->hosts[nc->replicas[r].host].name) != 0)
			continue;
		/* everything it knew; its connections change hands */
		n->reps[r] = old->reps[o];
		old->reps[o].conns = NULL;
		old->reps[o].n_conns = 0;
	}
}

int manager_reload(struct manager *m, struct flare_config *cfg)
{
	if (m->id > cfg->n_managers) {
		log_error("SIGHUP: the new config lists %d manager address(es), this is --id %d",
			  cfg->n_managers, m->id);
		return -1;
	}
	if (!flare_addr_equal(&cfg->managers[m->id - 1], &m->addr))
		log_warn("manager %d's address changed in the config: it moves on a restart",
			 m->id);
	struct manager n;
	memset(&n, 0, sizeof(n));
	n.cfg = cfg;
	if (state_init(&n) < 0) {
		state_free(&n);
		return -1;
	}
	/* what is not state: the loop, the sockets, the counters */
	n.base = m->base;
	n.listener = m->listener;
	n.metrics = m->metrics;
	n.addr = m->addr;
	n.id = m->id;
	n.tick = m->tick;
	n.debounce = m->debounce; /* the reload's own re-rank covers what waits */
	n.rerank_due = m->rerank_due;
	n.conns = m->conns;
	n.n_agents = m->n_agents;
	n.warm = m->warm;
	n.gen = m->gen;
	n.start_ns = m->start_ns;
	n.rank_count = m->rank_count;
	n.push_count = m->push_count;
	n.rebinds = m->rebinds;
	n.auth_rejected = m->auth_rejected;
	n.frames_rejected = m->frames_rejected;
	n.conns_refused = m->conns_refused;
	n.limits = m->limits;
	n.op = m->op;
	struct evconn **gone = calloc((size_t)m->cfg->n_hosts + 1, sizeof(*gone));
	if (!gone) {
		state_free(&n);
		return -1;
	}
	int n_gone = carry_hosts(m, &n, gone);
	carry_replicas(m, &n);
	log_info("config reloaded: %d hosts, %d services, %d replicas (were %d, %d, %d)",
		 cfg->n_hosts, cfg->n_services, cfg->n_replicas, m->cfg->n_hosts,
		 m->cfg->n_services, m->cfg->n_replicas);
	state_free(m);
	*m = n;
	for (int i = 0; i < n_gone; i++)
		evconn_close(gone[i], "host removed from the config");
	free(gone);
	/* every agent gets the whole new table: the layout may have changed */
	m->reloading = 1;
	state_rerank(m, "reload");
	m->reloading = 0;
	struct fw_buf b = {0};
	m->gen++;
	if (state_encode_full(m, &b) == 0)
		server_broadcast_agents(m, b.data, b.len);
	state_buf_free(&b);
	return 0;
}
