/* flare-monitor -c FILE --host NAME [-f] [--check] */
#include "daemon.h"
#include "log.h"
#include "monitor.h"

#include <stdlib.h>

#include <stdio.h>

struct monitor_main {
	struct monitor m;
	const char *host;
};

static int option(void *ctx, int opt, const char *arg)
{
	if (opt != 'H')
		return -1;
	((struct monitor_main *)ctx)->host = arg;
	return 0;
}

static int prepare(void *ctx, const char *path, struct flare_config *cfg, char *err, size_t n)
{
	struct monitor_main *mm = ctx;
	struct monitor *m = &mm->m;
	if (!mm->host) {
		snprintf(err, n, "--host NAME is required");
		return -1;
	}
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
	/* request rates are measured only where something balances on them */
	for (int i = 0; i < cfg->n_services; i++)
		if (cfg->services[i].balance != FLARE_BALANCE_PRIMARY ||
		    cfg->services[i].binding != FLARE_BINDING_SESSION)
			m->want_traffic = 1;
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
					     {NULL, 0, NULL, 0}};
	static const struct daemon_spec spec = {
	    .name = "flare-monitor",
	    .usage = "usage: flare-monitor -c FILE --host NAME [-f] [--check]\n"
		     "  -c, --config FILE  the deployment config\n"
		     "  --host NAME        the host this monitor watches (one of hosts[].name)\n"
		     "  -f, --foreground   stay in the foreground, log to stderr\n"
		     "  --check            validate the config (and the host) and exit\n",
	    .long_opts = opts,
	    .option = option,
	    .prepare = prepare,
	    .describe = describe,
	    .start = start,
	    .stop = stop};
	struct monitor_main mm = {0};
	return daemon_main(&spec, &mm, argc, argv);
}
