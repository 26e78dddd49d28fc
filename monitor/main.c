/* flare-monitor -c FILE [--host NAME] [--source IP] [-f] [--check] */
#include "daemon.h"
#include "log.h"
#include "monitor.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdio.h>

struct monitor_main {
	struct monitor m;
	const char *host;
	char picked[FLARE_NAME_MAX + 1]; /* the host chosen without --host */
};

static int option(void *ctx, int opt, const char *arg)
{
	if (opt == 'S')
		return daemon_source_option("flare-monitor", arg,
					    &((struct monitor_main *)ctx)->m.source);
	if (opt != 'H')
		return -1;
	((struct monitor_main *)ctx)->host = arg;
	return 0;
}

/* request rates are measured only where something balances on them */
static int wants_traffic(const struct flare_config *cfg)
{
	for (int i = 0; i < cfg->n_services; i++)
		if (flare_service_balances(&cfg->services[i]))
			return 1;
	return 0;
}

/* Without --host: the host named as this machine (its short hostname),
 * else the config's only host (a single-host deployment, the package's
 * default config). */
static int pick_host(struct monitor_main *mm, const struct flare_config *cfg, const char *path,
		     char *err, size_t n)
{
	char me[256] = "";
	if (gethostname(me, sizeof(me) - 1) == 0)
		me[strcspn(me, ".")] = '\0';
	int i = *me ? flare_config_host_index(cfg, me) : -1;
	if (i < 0 && cfg->n_hosts == 1)
		i = 0;
	if (i < 0) {
		snprintf(err, n,
			 "%s: %d hosts and none named '%s' (this machine): give --host NAME", path,
			 cfg->n_hosts, me);
		return -1;
	}
	snprintf(mm->picked, sizeof(mm->picked), "%s", cfg->hosts[i].name);
	mm->host = mm->picked;
	return 0;
}

static int prepare(void *ctx, const char *path, struct flare_config *cfg, char *err, size_t n)
{
	struct monitor_main *mm = ctx;
	struct monitor *m = &mm->m;
	if (!mm->host && pick_host(mm, cfg, path, err, n) < 0)
		return -1;
	m->cfg = cfg;
	m->host = flare_config_host_index(cfg, mm->host);
	if (m->host < 0) {
		snprintf(err, n, "%s: no host named '%s'", path, mm->host);
		return -1;
	}
	char why[384];
	if (util_open(&m->util, &cfg->hosts[m->host], why, sizeof(why)) < 0) {
		snprintf(err, n, "%s:%d: %s", path, cfg->hosts[m->host].line, why);
		return -1;
	}
	m->want_traffic = wants_traffic(cfg);
	return 0;
}

static void describe(void *ctx, const struct flare_config *cfg, char *out, size_t n)
{
	(void)cfg;
	snprintf(out, n, "host %s", ((struct monitor_main *)ctx)->host);
}

static int start(void *ctx, struct event_base *base)
{
	struct monitor *m = &((struct monitor_main *)ctx)->m;
	m->base = base;
	if (liveness_start(m) < 0 || report_start(m) < 0)
		return -1;
	log_info("monitoring host %s (%d replicas), registrations on %s",
		 m->cfg->hosts[m->host].name, m->n_reps, m->cfg->hosts[m->host].monitor_socket);
	return 0;
}

static void stop(void *ctx)
{
	struct monitor *m = &((struct monitor_main *)ctx)->m;
	report_stop(m);
	liveness_stop(m);
	free(m->conns);
	m->conns = NULL;
}

/* SIGHUP: the host's replicas, utilization source and thresholds from the
 * new config; its links to the managers keep going (the manager list and
 * this host's monitor socket change on a restart). */
static int reload(void *ctx, struct flare_config *cfg)
{
	struct monitor *m = &((struct monitor_main *)ctx)->m;
	const char *name = m->cfg->hosts[m->host].name;
	int host = flare_config_host_index(cfg, name);
	if (host < 0) {
		log_error("SIGHUP: host %s is not in the new config", name);
		return -1;
	}
	if (cfg->n_managers != m->cfg->n_managers ||
	    memcmp(cfg->managers, m->cfg->managers,
		   sizeof(cfg->managers[0]) * (size_t)cfg->n_managers) != 0) {
		log_error("SIGHUP: manager.addresses changed: restart the monitor to follow them");
		return -1;
	}
	if (strcmp(cfg->hosts[host].monitor_socket, m->cfg->hosts[m->host].monitor_socket) != 0)
		log_warn("SIGHUP: host %s's monitor_socket changes on a restart", name);
	const struct flare_host_cfg *oh = &m->cfg->hosts[m->host], *nh = &cfg->hosts[host];
	if (oh->util_kind != nh->util_kind || strcmp(oh->util_arg, nh->util_arg) != 0) {
		struct util_source u = {0};
		char why[384];
		if (util_open(&u, nh, why, sizeof(why)) < 0) {
			log_error("SIGHUP: %s:%d: %s", cfg->path, nh->line, why);
			return -1;
		}
		m->util = u;
		m->window_n = m->window_pos = 0;
	}
	if (liveness_reload(m, cfg, host) < 0)
		return -1;
	free(m->conns); /* they name replicas by their old places: the next pass measures again */
	m->conns = NULL;
	m->n_conns = 0;
	m->cfg = cfg;
	m->host = host;
	for (int i = 0; i < cfg->n_managers; i++) {
		m->links[i].cfg = cfg;
		m->links[i].addrs = &cfg->managers[i];
	}
	m->want_traffic = wants_traffic(cfg);
	log_info("SIGHUP: host %s has %d replica(s)", name, m->n_reps);
	report_send(m);
	return 0;
}

/* a monitor's key is its host's */
static const char *auth_name(void *ctx) { return ((struct monitor_main *)ctx)->host; }

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
					     {"source", required_argument, NULL, 'S'},
					     {NULL, 0, NULL, 0}};
	static const struct daemon_spec spec = {
	    .name = "flare-monitor",
	    .usage =
		"usage: flare-monitor -c FILE [--host NAME] [--source IP] [-f] [--check]\n"
		"  -c, --config FILE  the deployment config\n"
		"  --host NAME        the host this monitor watches (one of hosts[].name;\n"
		"                     default: the one named as this machine, or the only one)\n"
		"  --source IP        connect to the managers from this address of the host\n"
		"  -f, --foreground   stay in the foreground, log to stderr\n"
		"  --check            validate the config (and the host) and exit\n",
	    .long_opts = opts,
	    .option = option,
	    .prepare = prepare,
	    .describe = describe,
	    .start = start,
	    .stop = stop,
	    .reload = reload,
	    .auth_role = FW_ROLE_MONITOR,
	    .auth_name = auth_name};
	struct monitor_main mm = {0};
	return daemon_main(&spec, &mm, argc, argv);
}
