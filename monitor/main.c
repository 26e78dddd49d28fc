/* flare-monitor -c FILE --host NAME [-f] [--check] */
#include "daemon.h"
#include "log.h"
#include "monitor.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: flare-monitor -c FILE --host NAME [-f] [--check]\n"
		   "  -c, --config FILE  the deployment config\n"
		   "  --host NAME        the host this monitor watches (one of hosts[].name)\n"
		   "  -f, --foreground   stay in the foreground, log to stderr\n"
		   "  --check            validate the config (and the host) and exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'}, {"host", required_argument, NULL, 'H'},
	    {"foreground", no_argument, NULL, 'f'},   {"check", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
	const char *path = NULL, *host = NULL;
	int fg = 0, check = 0, o;
	char err[512];
	while ((o = getopt_long(argc, argv, "c:fh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': path = optarg; break;
		case 'H': host = optarg; break;
		case 'f': fg = 1; break;
		case 'k': check = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path || !host || optind != argc) {
		usage(stderr);
		return 2;
	}
	struct flare_config cfg;
	if (flare_config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "flare-monitor: %s\n", err);
		return 1;
	}
	struct monitor m = {.cfg = &cfg, .host = flare_config_host_index(&cfg, host)};
	if (m.host < 0) {
		fprintf(stderr, "flare-monitor: %s: no host named '%s'\n", path, host);
		flare_config_free(&cfg);
		return 1;
	}
	if (util_open(&m.util, &cfg.hosts[m.host], err, sizeof(err)) < 0) {
		fprintf(stderr, "flare-monitor: %s:%d: %s\n", path, cfg.hosts[m.host].line, err);
		flare_config_free(&cfg);
		return 1;
	}
	if (check) {
		printf("%s: ok (host %s)\n", path, host);
		flare_config_free(&cfg);
		return 0;
	}
	if (daemon_setup("flare-monitor", fg) < 0)
		return 1;
	m.base = event_base_new();
	m.utilization = m.reported_util = 0;
	if (!m.base || liveness_start(&m) < 0 || report_start(&m) < 0) {
		log_error("cannot start");
		return 1;
	}
	log_info("monitoring host %s (%d replicas), registrations on %s", host, m.n_reps,
		 cfg.hosts[m.host].monitor_socket);
	struct event **sigs = daemon_signals(m.base);
	event_base_dispatch(m.base);
	report_stop(&m);
	liveness_stop(&m);
	daemon_signals_free(sigs);
	event_base_free(m.base);
	flare_config_free(&cfg);
	return 0;
}
