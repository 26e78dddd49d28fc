/* flare-manager -c FILE [--id N] [-f] [--check] */
#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "manager.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int manager_init(struct manager *m, struct flare_config *cfg, struct event_base *base, int id)
{
	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->base = base;
	m->id = id;
	m->addr = cfg->managers[id - 1];
	m->start_ns = flare_monotonic_ns();
	if (state_init(m) < 0)
		return -1;
	state_rerank(m, "start"); /* everything dead until monitors report */
	return 0;
}

void manager_free(struct manager *m)
{
	metrics_stop(m);
	server_stop(m);
	limits_free(m);
	state_free(m);
}

struct manager_main {
	struct manager m;
	struct flare_config *cfg;
	int id;
};

static int option(void *ctx, int opt, const char *arg)
{
	if (opt != 'i')
		return -1;
	char *end;
	long id = strtol(arg, &end, 10);
	if (*arg == '\0' || *end != '\0' || id < 1 || id > FLARE_MAX_MANAGERS) {
		fprintf(stderr, "flare-manager: --id '%s': a number from 1 to %d\n", arg,
			FLARE_MAX_MANAGERS);
		return -1;
	}
	((struct manager_main *)ctx)->id = (int)id;
	return 0;
}

static int prepare(void *ctx, const char *path, struct flare_config *cfg, char *err, size_t n)
{
	struct manager_main *mm = ctx;
	(void)path;
	mm->cfg = cfg;
	if (mm->id > cfg->n_managers) {
		snprintf(err, n, "--id %d: the config lists %d manager address(es)", mm->id,
			 cfg->n_managers);
		return -1;
	}
	return 0;
}

static void describe(void *ctx, const struct flare_config *cfg, char *out, size_t n)
{
	(void)ctx;
	snprintf(out, n, "%d hosts, %d services, %d replicas", cfg->n_hosts, cfg->n_services,
		 cfg->n_replicas);
}

static int start(void *ctx, struct event_base *base)
{
	struct manager_main *mm = ctx;
	if (manager_init(&mm->m, mm->cfg, base, mm->id) < 0 || server_start(&mm->m) < 0 ||
	    metrics_start(&mm->m) < 0)
		return -1;
	char a[FLARE_ADDR_STRLEN];
	log_info("manager %d listening on %s: %d hosts, %d services, %d replicas", mm->id,
		 flare_addr_format(&mm->m.addr, a, sizeof(a)), mm->cfg->n_hosts,
		 mm->cfg->n_services, mm->cfg->n_replicas);
	return 0;
}

static void stop(void *ctx) { manager_free(&((struct manager_main *)ctx)->m); }

static int reload(void *ctx, struct flare_config *cfg)
{
	struct manager_main *mm = ctx;
	if (manager_reload(&mm->m, cfg) < 0)
		return -1;
	mm->cfg = cfg;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"id", required_argument, NULL, 'i'},
					     {NULL, 0, NULL, 0}};
	static const struct daemon_spec spec = {
	    .name = "flare-manager",
	    .usage = "usage: flare-manager -c FILE [--id N] [-f] [--check]\n"
		     "  -c, --config FILE  the deployment config\n"
		     "  --id N             which of manager.addresses this manager is (1-based, "
		     "default 1)\n"
		     "  -f, --foreground   stay in the foreground, log to stderr\n"
		     "  --check            validate the config and exit\n",
	    .long_opts = opts,
	    .option = option,
	    .prepare = prepare,
	    .describe = describe,
	    .start = start,
	    .stop = stop,
	    .reload = reload};
	struct manager_main mm = {.id = 1};
	return daemon_main(&spec, &mm, argc, argv);
}
