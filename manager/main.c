/* flare-manager -c FILE [--id N] [-f] [--check] */
#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "manager.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: flare-manager -c FILE [--id N] [-f] [--check]\n"
	    "  -c, --config FILE  the deployment config\n"
	    "  --id N             which of manager.addresses this manager is (1-based, default 1)\n"
	    "  -f, --foreground   stay in the foreground, log to stderr\n"
	    "  --check            validate the config and exit\n");
}

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
	server_stop(m);
	state_free(m);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"id", required_argument, NULL, 'i'},
	    {"foreground", no_argument, NULL, 'f'},   {"check", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
	const char *path = NULL;
	int id = 1, fg = 0, check = 0, o;
	char err[512];
	while ((o = getopt_long(argc, argv, "c:fh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': path = optarg; break;
		case 'i': id = atoi(optarg); break;
		case 'f': fg = 1; break;
		case 'k': check = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	struct flare_config cfg;
	if (flare_config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "flare-manager: %s\n", err);
		return 1;
	}
	if (id < 1 || id > cfg.n_managers) {
		fprintf(stderr, "flare-manager: --id %d: the config lists %d manager address(es)\n",
			id, cfg.n_managers);
		flare_config_free(&cfg);
		return 1;
	}
	if (check) {
		printf("%s: ok (%d hosts, %d services, %d replicas)\n", path, cfg.n_hosts,
		       cfg.n_services, cfg.n_replicas);
		flare_config_free(&cfg);
		return 0;
	}
	if (daemon_setup("flare-manager", fg) < 0)
		return 1;
	struct event_base *base = event_base_new();
	struct manager m;
	if (!base || manager_init(&m, &cfg, base, id) < 0 || server_start(&m) < 0) {
		log_error("cannot start");
		return 1;
	}
	char a[FLARE_ADDR_STRLEN];
	log_info("manager %d listening on %s: %d hosts, %d services, %d replicas", id,
		 flare_addr_format(&m.addr, a, sizeof(a)), cfg.n_hosts, cfg.n_services,
		 cfg.n_replicas);
	struct event **sigs = daemon_signals(base);
	event_base_dispatch(base);
	manager_free(&m);
	daemon_signals_free(sigs);
	event_base_free(base);
	flare_config_free(&cfg);
	return 0;
}
