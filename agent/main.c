/* flare-agent -c FILE [--shm NAME] [--source IP] [-f] [--check] [--keep] */
#include "agent.h"
#include "daemon.h"
#include "log.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>

struct agent_main {
	struct agent a;
	const char *shm;
	int keep;
};

static int option(void *ctx, int opt, const char *arg)
{
	struct agent_main *am = ctx;
	if (opt == 's')
		am->shm = arg;
	else if (opt == 'K')
		am->keep = 1;
	else if (opt == 'S')
		return daemon_source_option("flare-agent", arg, &am->a.source);
	else
		return -1;
	return 0;
}

static int prepare(void *ctx, const char *path, struct flare_config *cfg, char *err, size_t n)
{
	struct agent_main *am = ctx;
	(void)path;
	am->a.cfg = cfg;
	if (!am->shm)
		am->shm = cfg->agent_shm;
	if (flare_tbl_writer_init(&am->a.writer, am->shm, (uint32_t)cfg->table_stale_ms) < 0) {
		snprintf(err, n, "--shm '%s': must be /NAME with no other slash", am->shm);
		return -1;
	}
	return 0;
}

static void describe(void *ctx, const struct flare_config *cfg, char *out, size_t n)
{
	(void)cfg;
	snprintf(out, n, "table %s", ((struct agent_main *)ctx)->shm);
}

/* After setuid with PR_SET_KEEPCAPS: CAP_NET_ADMIN alone stays permitted
 * and effective, if it was permitted (raw capset: no libcap for one bit) */
static void keep_net_admin(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d) < 0)
		return;
	uint32_t bit = 1u << (CAP_NET_ADMIN % 32);
	int w = CAP_NET_ADMIN / 32;
	int had = (d[w].permitted & bit) != 0;
	memset(d, 0, sizeof(d));
	if (had)
		d[w].permitted = d[w].effective = bit;
	syscall(SYS_capset, &h, d);
}

/* agent.user: the user that owns the table (clients trust it). Started
 * as root, the agent becomes that user before it makes anything; started
 * as anyone else, it must already be that user. */
static int become_user(const struct flare_config *cfg, char *err, size_t n)
{
	if (!cfg->agent_user[0])
		return 0;
	struct passwd *pw = getpwnam(cfg->agent_user);
	if (!pw) {
		snprintf(err, n, "%s: agent.user '%s': no such user", cfg->path, cfg->agent_user);
		return -1;
	}
	if (geteuid() == pw->pw_uid)
		return 0;
	if (geteuid() != 0) {
		snprintf(err, n, "%s: agent.user is '%s' (uid %u) but this agent runs as uid %u",
			 cfg->path, cfg->agent_user, (unsigned)pw->pw_uid, (unsigned)geteuid());
		return -1;
	}
	/* CAP_NET_ADMIN is kept across the change, and only it: the kernel
	 * wake (wake.c) ends sockets through sock_diag */
	prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		snprintf(err, n, "cannot become agent.user '%s': %s", cfg->agent_user,
			 strerror(errno));
		return -1;
	}
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	keep_net_admin();
	log_info("running as agent.user %s (uid %u)", cfg->agent_user, (unsigned)pw->pw_uid);
	return 0;
}

static int start(void *ctx, struct event_base *base)
{
	struct agent *a = &((struct agent_main *)ctx)->a;
	char err[512];
	a->base = base;
	if (become_user(a->cfg, err, sizeof(err)) < 0 || names_claim(a, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return -1;
	}
	if (agent_start(a) < 0 || query_start(a) < 0 || metrics_start(a) < 0 || wake_start(a) < 0)
		return -1;
	log_info("agent publishing %s from %d manager address(es)", a->writer.name,
		 a->cfg->n_managers);
	return 0;
}

static void stop(void *ctx)
{
	struct agent_main *am = ctx;
	struct agent *a = &am->a;
	query_stop(a);
	wake_stop(a);
	agent_stop(a);
	metrics_stop(a);
	log_info("stopping: %llu full tables, %llu deltas, %llu rejected, %llu queries; table %s",
		 (unsigned long long)a->fulls, (unsigned long long)a->deltas,
		 (unsigned long long)a->rejected, (unsigned long long)a->queries,
		 am->keep ? "kept" : "removed");
	flare_tbl_writer_close(&a->writer, !am->keep);
}

/* SIGHUP: the agent's own settings; the topology comes from the manager.
 * A changed manager list is followed at once (the link starts over). */
static int reload(void *ctx, struct flare_config *cfg)
{
	struct agent *a = &((struct agent_main *)ctx)->a;
	int moved = cfg->n_managers != a->cfg->n_managers ||
		    memcmp(cfg->managers, a->cfg->managers,
			   sizeof(cfg->managers[0]) * (size_t)cfg->n_managers) != 0;
	if (moved)
		mlink_stop(&a->link);
	a->cfg = cfg;
	a->link.cfg = cfg;
	a->link.addrs = cfg->managers;
	a->link.n_addrs = cfg->n_managers;
	a->link.current = a->link.tries = 0;
	a->writer.stale_ms = (uint32_t)cfg->table_stale_ms;
	if (moved) {
		log_info("SIGHUP: following the new manager list (%d address(es))",
			 cfg->n_managers);
		a->subscribed = 0;
		if (mlink_start(&a->link) < 0)
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"shm", required_argument, NULL, 's'},
					     {"keep", no_argument, NULL, 'K'},
					     {"source", required_argument, NULL, 'S'},
					     {NULL, 0, NULL, 0}};
	static const struct daemon_spec spec = {
	    .name = "flare-agent",
	    .usage =
		"usage: flare-agent -c FILE [--shm NAME] [--source IP] [-f] [--check] [--keep]\n"
		"  -c, --config FILE  the deployment config\n"
		"  --shm NAME         shared-memory table name (default: agent.shm, or /flare)\n"
		"  --source IP        connect to the managers from this address of the host\n"
		"  -f, --foreground   stay in the foreground, log to stderr\n"
		"  --keep             leave the table in place on exit (clients go on with it\n"
		"                     until it is stale) instead of removing it\n"
		"  --check            validate the config and exit\n",
	    .long_opts = opts,
	    .option = option,
	    .prepare = prepare,
	    .describe = describe,
	    .start = start,
	    .stop = stop,
	    .reload = reload,
	    .auth_role = FW_ROLE_AGENT};
	struct agent_main am = {0};
	return daemon_main(&spec, &am, argc, argv);
}
