/* flarectl -c FILE status [--json]: asks the first reachable manager what
 * it believes and prints it.
 * flarectl -c FILE drain|undrain REPLICA: tells every manager.
 * flarectl -c FILE health: exit 0 when the first reachable manager has
 * heard every host and every service has a live replica, 1 otherwise (why
 * on stderr), for scripts and probes.
 * flarectl [-c FILE] table [--shm NAME] [--json]: prints the shared table
 * exactly as this host's libflare.so reads it.
 * flarectl [-c FILE] segments [--shm NAME] [--remove-stale]: the table's
 * shared-memory segments on this host.
 * flarectl -c FILE key ROLE [HOST]: one role's key, from the secret. */
#include "authcall.h"
#include "clock.h"
#include "config.h"
#include "table.h"
#include "textfile.h"
#include "flarectl.h"
#include "fwcall.h"
#include "wire.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 2000

static void usage(FILE *f)
{
	fprintf(f,
		"usage: flarectl -c FILE status [--json]\n"
		"       flarectl [-c FILE] table [--shm NAME] [--json]\n"
		"       flarectl -c FILE drain|undrain REPLICA\n"
		"       flarectl -c FILE health\n"
		"       flarectl -c FILE config\n"
		"       flarectl -c FILE top [--interval S] [--count N]\n"
		"       flarectl [-c FILE] segments [--shm NAME] [--remove-stale]\n"
		"       flarectl -c FILE key monitor HOST | key agent | key operator\n"
		"       (any verb) -c FILE: default " FLARE_DEFAULT_CONFIG " when it exists\n"
		"       (any verb) --key FILE: the key file to use instead of auth_key_file\n"
		"  status   hosts, replicas, rankings and the age of the last reports (manager)\n"
		"  table    the shared-memory table as the library reads it (this host)\n"
		"  drain    no new connections to REPLICA (and on-demand ones move off it);\n"
		"           failover goes to it only when nothing else lives (every manager)\n"
		"  undrain  takes REPLICA back\n"
		"  health   exit 0 when the manager heard every host and every service has a\n"
		"           live replica; 1 with the reasons on stderr\n"
		"  config   the config file the first manager that answers runs, as it\n"
		"           loaded it; says so when FILE here differs\n"
		"  top      status, refreshed every --interval seconds (default 1)\n"
		"  segments this host's shared-memory segments of the table: whose, in use\n"
		"           or stale (a dead agent's, a user's with no live process)\n"
		"  key      prints a role's key (monitors: one per host) for its key file\n"
		"  --json   as one JSON document\n");
}

static const struct fw_io io = {connect, send, recv, poll, getsockopt};

/* One manager's answer (control/authcall.h) */
static char *ask(const struct flare_addr *a, const struct auth_key *key, uint8_t type, int json,
		 const char *command, const char **why, int *refused)
{
	return authcall_ask(&io, a, key, type, json, command, TIMEOUT_MS, why, refused);
}

/* The config a manager runs, and whether this host's file differs from
 * it (edited since, not reloaded; or another host's copy) */
static void show_config(const char *text, const char *path)
{
	fputs(text, stdout);
	const char *body = strchr(text, '\n');
	char *mine = path && body ? flare_read_text(path, NULL) : NULL;
	if (mine && strcmp(mine, body + 1) != 0)
		fprintf(stderr,
			"flarectl: %s here differs from the config in use above (not reloaded "
			"yet?)\n",
			path);
	free(mine);
}

/* Walks the table through the reader API only: services by index until
 * NOTFOUND, so what is printed is what a client would get. */
/* The owners a client run by this user (through flare-run -c with this
 * config) trusts: root, its own user, agent.user (shim/core/route/route.c) */
static long trusted_agent_uid = -1;
static int table_trusted(uint32_t uid)
{
	return uid == 0 || uid == (uint32_t)geteuid() || (long)uid == trusted_agent_uid;
}

/* The table as a client reads it, through the same reader and the same
 * owner check: exit 1 when a client would not use it (absent, corrupt,
 * untrusted, retired, busy, a service unreadable); a stale one is used. */
static int print_table(const char *shm, int json)
{
	struct flare_tbl_reader r;
	const char *why = NULL;
	int rc = flare_tbl_reader_open_from(&r, shm, table_trusted, &why);
	if (rc != FLARE_TBL_OK) {
		fprintf(stderr, "flarectl: table %s: %s (%s)\n", shm, flare_tbl_rc_name(rc),
			rc == FLARE_TBL_UNTRUSTED ? "its owner is not root, this user or agent.user"
			: why                     ? why
						  : "");
		return 1;
	}
	int health = flare_tbl_health(&r, flare_monotonic_ns()), bad = 0;
	int wakes = flare_tbl_wakes(&r, flare_monotonic_ns());
	printf(json ? "{\"table\":\"%s\",\"state\":\"%s\",\"gen\":%llu,\"wake\":%s,\"services\":["
		    : "table %s: %s, gen %llu, kernel wake %s\n",
	       shm, flare_tbl_rc_name(health), (unsigned long long)flare_tbl_gen(&r),
	       json ? (wakes ? "true" : "false") : (wakes ? "on" : "off"));
	struct flare_route route;
	char a[FLARE_ADDR_STRLEN];
	for (uint32_t s = 0;; s++) {
		/* a stale table is shown as clients read it: their last ranking */
		rc = flare_tbl_read_route(&r, s, &route);
		if (rc != FLARE_TBL_OK && rc != FLARE_TBL_STALE) {
			/* past the last service: NOTFOUND; anything else a client
			 * would refuse */
			if (rc != FLARE_TBL_NOTFOUND) {
				fprintf(stderr, "flarectl: table %s: service %u: %s\n", shm, s,
					flare_tbl_rc_name(rc));
				bad = 1;
			}
			break;
		}
		const struct flare_tbl_service *sv = &route.svc;
		if (json) {
			printf("%s{\"name\":\"%s\",\"address\":\"%s\",\"balance\":\"%s\","
			       "\"binding\":\"%s\",\"moves\":%llu,\"order\":[",
			       s ? "," : "", sv->name, flare_addr_format(&sv->addr, a, sizeof(a)),
			       flare_balance_name(sv->balance), flare_binding_name(sv->binding),
			       (unsigned long long)flare_tbl_moves_gen(&r));
			for (int k = 0; k < sv->n_order; k++)
				printf("%s\"%s\"", k ? "," : "", route.reps[sv->order[k]].name);
			printf("],\"replicas\":[");
		} else {
			printf("service %s %s balance %s, binding %s; order:", sv->name,
			       flare_addr_format(&sv->addr, a, sizeof(a)),
			       flare_balance_name(sv->balance), flare_binding_name(sv->binding));
			for (int k = 0; k < sv->n_order; k++)
				printf(" %s", route.reps[sv->order[k]].name);
			printf("\n");
		}
		for (uint32_t i = 0; i < sv->n_replicas; i++) {
			const struct flare_tbl_replica *p = &route.reps[i];
			if (json)
				printf(
				    "%s{\"name\":\"%s\",\"address\":\"%s\",\"alive\":%s,"
				    "\"reason\":\"%s\",\"load\":%.4f,\"rate\":%.3f,\"weight\":%.4f,"
				    "\"ramp\":%.2f,\"failover\":[",
				    i ? "," : "", p->name,
				    flare_addr_format(&p->addr, a, sizeof(a)),
				    p->alive ? "true" : "false", flare_death_name(p->reason),
				    (double)p->load_ppm / FLARE_PPM, p->rate_milli / 1000.0,
				    (double)p->weight_ppm / FLARE_PPM,
				    (double)p->ramp_ppm / FLARE_PPM);
			else
				printf("  %-16s %-24s %-5s%s%-8s load %.2f rate %.1f/s weight %.2f "
				       "ramp %.1f failover:",
				       p->name, flare_addr_format(&p->addr, a, sizeof(a)),
				       p->alive ? "alive" : "dead", p->alive ? "" : " ",
				       flare_death_name(p->reason), (double)p->load_ppm / FLARE_PPM,
				       p->rate_milli / 1000.0, (double)p->weight_ppm / FLARE_PPM,
				       (double)p->ramp_ppm / FLARE_PPM);
			for (int k = 0; k < p->n_failover; k++)
				printf(json ? "%s\"%s\"" : "%s%s", json && k ? "," : " ",
				       route.reps[p->failover[k]].name);
			printf(json ? "]}" : "\n");
		}
		if (json)
			printf("]}");
	}
	if (json)
		printf("]}\n");
	flare_tbl_reader_close(&r);
	return bad || (health != FLARE_TBL_OK && health != FLARE_TBL_STALE);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"shm", required_argument, NULL, 's'},
					     {"json", no_argument, NULL, 'j'},
					     {"interval", required_argument, NULL, 'I'},
					     {"count", required_argument, NULL, 'n'},
					     {"help", no_argument, NULL, 'h'},
					     {"remove-stale", no_argument, NULL, 'R'},
					     {"key", required_argument, NULL, 'K'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL, *shm = NULL, *key_file = NULL;
	int json = 0, o, count = 0, remove_stale = 0;
	double interval = 1.0;
	char err[512];
	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': path = optarg; break;
		case 's': shm = optarg; break;
		case 'j': json = 1; break;
		case 'I': interval = atof(optarg); break;
		case 'n': count = atoi(optarg); break;
		case 'R': remove_stale = 1; break;
		case 'K': key_file = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!path && !shm && access(FLARE_DEFAULT_CONFIG, F_OK) == 0)
		path = FLARE_DEFAULT_CONFIG; /* the host's, as the packaged units read it */
	const char *verb = optind < argc ? argv[optind] : "";
	if (strcmp(verb, "segments") == 0 || strcmp(verb, "key") == 0) {
		int segs = verb[0] == 's', n = argc - optind;
		struct flare_config cfg;
		if ((segs ? n != 1 || (!path && !shm) : n < 2 || n > 3 || !path)) {
			usage(stderr);
			return 2;
		}
		if (path && flare_config_load(path, &cfg, err, sizeof(err)) < 0) {
			fprintf(stderr, "flarectl: %s\n", err);
			return 1;
		}
		int rc = segs ? cmd_segments(shm ? shm : cfg.agent_shm, remove_stale)
			      : cmd_key(&cfg, argv[optind + 1], n == 3 ? argv[optind + 2] : NULL);
		if (path)
			flare_config_free(&cfg);
		return rc;
	}
	int table = strcmp(verb, "table") == 0, status = strcmp(verb, "status") == 0;
	int health = strcmp(verb, "health") == 0, top = strcmp(verb, "top") == 0;
	int config = strcmp(verb, "config") == 0;
	if (top) {
		/* status, again and again: a live view until interrupted (or --count) */
		status = 1;
		if (interval < 0.1)
			interval = 0.1;
	}
	int drain = strcmp(verb, "drain") == 0 || strcmp(verb, "undrain") == 0;
	int args = drain ? 2 : 1;
	if (argc - optind != args || !(table || status || health || drain || top || config) ||
	    (!path && !(table && shm))) {
		usage(stderr);
		return 2;
	}
	char command[96];
	if (drain) /* one time for every manager: the latest command wins (manager/intent.c) */
		snprintf(command, sizeof(command), "%s %s %llu", verb, argv[optind + 1],
			 (unsigned long long)flare_realtime_ns());
	else
		snprintf(command, sizeof(command), "%s", verb);
	struct flare_config cfg;
	if (path && flare_config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "flarectl: %s\n", err);
		return 1;
	}
	if (table) {
		if (!shm)
			shm = getenv("FLARE_SHM") ? getenv("FLARE_SHM") : cfg.agent_shm;
		if (path && cfg.agent_user[0]) {
			struct passwd *pw = getpwnam(cfg.agent_user);
			trusted_agent_uid = pw ? (long)pw->pw_uid : -1;
		}
		int rc = print_table(shm, json);
		if (path)
			flare_config_free(&cfg);
		return rc;
	}
	struct auth_key held, key;
	if (key_file) /* --key: another key file than the config's */
		snprintf(cfg.auth_key_file, sizeof(cfg.auth_key_file), "%s", key_file);
	int keyed = auth_config_key(&cfg, &held, err, sizeof(err));
	/* an operator's key: given, or derived from the secret */
	if (keyed < 0 ||
	    (keyed > 0 && auth_key_for(&held, FW_ROLE_CTL, "", &key, err, sizeof(err)) < 0)) {
		fprintf(stderr, "flarectl: %s%s%s\n", keyed > 0 ? cfg.auth_key_file : "",
			keyed > 0 ? ": " : "", err);
		flare_config_free(&cfg);
		return 1;
	}
	/* status and health: the first manager that answers; drain: all of
	 * them, so that whichever an agent follows agrees */
	int answered = 0, refused_any = 0;
	for (int round = 0; top && (count <= 0 || round < count); round++) {
		int shown = 0;
		for (int i = 0; i < cfg.n_managers && !shown; i++) {
			const char *why = "cannot connect";
			int refused = 0;
			char *text = ask(&cfg.managers[i], keyed ? &key : NULL, FW_STATUS_REQ, json,
					 NULL, &why, &refused);
			if (!text)
				continue;
			if (isatty(STDOUT_FILENO))
				fputs("\033[H\033[2J", stdout); /* home, clear */
			fputs(text, stdout);
			fflush(stdout);
			free(text);
			shown = answered = 1;
		}
		if (!shown)
			fprintf(stderr, "flarectl: no manager answers\n");
		if (count <= 0 || round + 1 < count)
			usleep((useconds_t)(interval * 1e6));
	}
	for (int i = 0; !top && i < cfg.n_managers && !(answered && !drain); i++) {
		char a[FLARE_ADDR_STRLEN];
		const char *why = "cannot connect";
		int refused = 0;
		flare_addr_format(&cfg.managers[i], a, sizeof(a));
		char *text =
		    ask(&cfg.managers[i], keyed ? &key : NULL, status ? FW_STATUS_REQ : FW_COMMAND,
			json, command, &why, &refused);
		if (!text) {
			fprintf(stderr, "flarectl: manager %s: %s\n", a, why);
			refused_any |= drain; /* a drain reaches every manager, or says not */
			continue;
		}
		answered = 1;
		refused_any |= refused;
		if (config && !refused)
			show_config(text, path);
		else if (status)
			fputs(text, stdout);
		else if (drain)
			printf("manager %s: %s\n", a, text);
		else
			fprintf(refused ? stderr : stdout, "%s\n", text);
		free(text);
	}
	flare_config_free(&cfg);
	return answered && !refused_any ? 0 : 1;
}
