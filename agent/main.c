/* flare-agent -c FILE [--shm NAME] [-f] [--check] [--keep] */
#include "agent.h"
#include "daemon.h"
#include "log.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: flare-agent -c FILE [--shm NAME] [-f] [--check] [--keep]\n"
		   "  -c, --config FILE  the deployment config\n"
		   "  --shm NAME         shared-memory table name (default: agent.shm, or /flare)\n"
		   "  -f, --foreground   stay in the foreground, log to stderr\n"
		   "  --keep             leave the table in place on exit (clients go on with it\n"
		   "                     until it is stale) instead of removing it\n"
		   "  --check            validate the config and exit\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"shm", required_argument, NULL, 's'},
					     {"foreground", no_argument, NULL, 'f'},
					     {"keep", no_argument, NULL, 'K'},
					     {"check", no_argument, NULL, 'k'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL, *shm = NULL;
	int fg = 0, check = 0, keep = 0, o;
	char err[512];
	while ((o = getopt_long(argc, argv, "c:fh", opts, NULL)) != -1) {
		switch (o) {
		case 'c': path = optarg; break;
		case 's': shm = optarg; break;
		case 'f': fg = 1; break;
		case 'K': keep = 1; break;
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
		fprintf(stderr, "flare-agent: %s\n", err);
		return 1;
	}
	struct agent a = {.cfg = &cfg};
	if (!shm)
		shm = cfg.agent_shm;
	if (flare_tbl_writer_init(&a.writer, shm, (uint32_t)cfg.table_stale_ms) < 0) {
		fprintf(stderr, "flare-agent: --shm '%s': must be /NAME with no other slash\n",
			shm);
		flare_config_free(&cfg);
		return 1;
	}
	if (check) {
		printf("%s: ok (table %s)\n", path, shm);
		flare_config_free(&cfg);
		return 0;
	}
	if (daemon_setup("flare-agent", fg) < 0)
		return 1;
	a.base = event_base_new();
	if (!a.base || agent_start(&a) < 0 || query_start(&a) < 0) {
		log_error("cannot start");
		return 1;
	}
	log_info("agent publishing %s from %d manager address(es)", shm, cfg.n_managers);
	struct event **sigs = daemon_signals(a.base);
	event_base_dispatch(a.base);
	query_stop(&a);
	agent_stop(&a);
	log_info("stopping: %llu full tables, %llu deltas, %llu rejected, %llu queries; table %s",
		 (unsigned long long)a.fulls, (unsigned long long)a.deltas,
		 (unsigned long long)a.rejected, (unsigned long long)a.queries,
		 keep ? "kept" : "removed");
	flare_tbl_writer_close(&a.writer, !keep);
	daemon_signals_free(sigs);
	event_base_free(a.base);
	flare_config_free(&cfg);
	return 0;
}
