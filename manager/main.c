/* flare-manager -c FILE [--id N] [--state-dir DIR] [-f] [--check] */
#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "manager.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int manager_init(struct manager *m, struct flare_config *cfg, struct event_base *base, int id,
		 const char *state_dir)
{
	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->base = base;
	m->id = id;
	m->addr = cfg->managers[id - 1];
	m->start_ns = flare_monotonic_ns();
	if (state_init(m) < 0)
		return -1;
	manager_note_config(m);
	intent_start(m, state_dir);
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
	int id;                /* 0: no manager address is on this machine */
	int id_given;          /* --id: no guessing */
	const char *state_dir; /* --state-dir, else systemd's $STATE_DIRECTORY */
};

static int option(void *ctx, int opt, const char *arg)
{
	if (opt == 'S') {
		((struct manager_main *)ctx)->state_dir = arg;
		return 0;
	}
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
	((struct manager_main *)ctx)->id_given = 1;
	return 0;
}

/* Is a an address of this machine? Binding its IP (any port) says. */
static int is_local(const struct flare_addr *a)
{
	struct flare_addr any = *a;
	struct sockaddr_storage ss;
	any.port = 0;
	socklen_t len = flare_addr_to_sockaddr(&any, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	int ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
	close(fd);
	return ok;
}

static int prepare(void *ctx, const char *path, struct flare_config *cfg, char *err, size_t n)
{
	struct manager_main *mm = ctx;
	(void)path;
	mm->cfg = cfg;
	if (!mm->id_given) {
		/* the first of manager.addresses on this machine: one unit,
		 * one config, on every host */
		mm->id = 0;
		for (int i = 0; i < cfg->n_managers && !mm->id; i++)
			if (is_local(&cfg->managers[i]))
				mm->id = i + 1;
		return 0;
	}
	if (mm->id > cfg->n_managers) {
		snprintf(err, n, "--id %d: the config lists %d manager address(es)", mm->id,
			 cfg->n_managers);
		return -1;
	}
	return 0;
}

static void describe(void *ctx, const struct flare_config *cfg, char *out, size_t n)
{
	const struct manager_main *mm = ctx;
	if (!mm->id)
		snprintf(out, n, "no manager address is on this machine: no manager runs here");
	else
		snprintf(out, n, "manager %d: %d hosts, %d services, %d replicas", mm->id,
			 cfg->n_hosts, cfg->n_services, cfg->n_replicas);
}

static int start(void *ctx, struct event_base *base)
{
	struct manager_main *mm = ctx;
	if (!mm->id) {
		/* a host of a deployment whose managers run elsewhere: the
		 * packaged unit ends here, inactive rather than failed */
		log_info("no entry of manager.addresses is an address of this machine: no "
			 "manager runs here (--id N runs one anyway)");
		return event_base_loopexit(base, NULL);
	}
	char dir[4096] = "";
	const char *env = getenv("STATE_DIRECTORY"); /* StateDirectory=: a list */
	if (mm->state_dir)
		snprintf(dir, sizeof(dir), "%s", mm->state_dir);
	else if (env)
		snprintf(dir, sizeof(dir), "%.*s", (int)strcspn(env, ":"), env);
	if (manager_init(&mm->m, mm->cfg, base, mm->id, dir) < 0 || server_start(&mm->m) < 0 ||
	    metrics_start(&mm->m) < 0)
		return -1;
	char a[FLARE_ADDR_STRLEN];
	log_info("manager %d listening on %s: %d hosts, %d services, %d replicas", mm->id,
		 flare_addr_format(&mm->m.addr, a, sizeof(a)), mm->cfg->n_hosts,
		 mm->cfg->n_services, mm->cfg->n_replicas);
	return 0;
}

static void stop(void *ctx)
{
	struct manager_main *mm = ctx;
	if (mm->id)
		manager_free(&mm->m);
}

static int reload(void *ctx, struct flare_config *cfg)
{
	struct manager_main *mm = ctx;
	if (!mm->id)
		return 0;
	if (manager_reload(&mm->m, cfg) < 0)
		return -1;
	mm->cfg = cfg;
	manager_note_config(&mm->m);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"id", required_argument, NULL, 'i'},
					     {"state-dir", required_argument, NULL, 'S'},
					     {NULL, 0, NULL, 0}};
	static const struct daemon_spec spec = {
	    .name = "flare-manager",
	    .usage =
		"usage: flare-manager -c FILE [--id N] [--state-dir DIR] [-f] [--check]\n"
		"  -c, --config FILE  the deployment config\n"
		"  --id N             which of manager.addresses this manager is (1-based;\n"
		"                     default: the first that is an address of this machine)\n"
		"  --state-dir DIR    keep operators' drains in DIR/manager-N.drains (default\n"
		"                     $STATE_DIRECTORY, set by systemd's StateDirectory=)\n"
		"  -f, --foreground   stay in the foreground, log to stderr\n"
		"  --check            validate the config and exit\n",
	    .long_opts = opts,
	    .option = option,
	    .prepare = prepare,
	    .describe = describe,
	    .start = start,
	    .stop = stop,
	    .reload = reload};
	struct manager_main mm = {0};
	return daemon_main(&spec, &mm, argc, argv);
}
