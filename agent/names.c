/* The agent's names before it writes anything: the table NAME must be
 * free, this user's and left by a dead agent, or this agent's own; the
 * query socket is bound by query_start (a name held there fails it). What
 * a dead agent or its clients left under NAME is reclaimed. */
#include "agent.h"

#include "log.h"
#include "segments.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NAMES_MAX 256

static int may_remove(const struct flare_seg *g)
{
	uid_t me = geteuid();
	return me == 0 || g->owner == me;
}

int names_claim(struct agent *a, char *err, size_t n)
{
	static struct flare_seg segs[NAMES_MAX];
	const char *name = a->writer.name;
	int count = flare_segs_list(name, segs, NAMES_MAX);
	if (count < 0) {
		snprintf(err, n, "/dev/shm: cannot list the shared-memory segments: %s",
			 strerror(errno));
		return -1;
	}
	for (int i = 0; i < count && i < NAMES_MAX; i++) {
		const struct flare_seg *g = &segs[i];
		if (g->kind != SEG_TABLE)
			continue;
		if (g->owner != geteuid()) {
			snprintf(err, n,
				 "table %s belongs to uid %u, not to this agent's user (uid %u): "
				 "someone else holds the name; remove it, or set agent.shm",
				 name, (unsigned)g->owner, (unsigned)geteuid());
			return -1;
		}
		if (!g->stale && g->pid != getpid()) {
			snprintf(err, n, "table %s is published by another agent (pid %d)", name,
				 (int)g->pid);
			return -1;
		}
	}
	for (int i = 0; i < count && i < NAMES_MAX; i++) {
		const struct flare_seg *g = &segs[i];
		if (g->kind == SEG_TABLE) {
			log_info("%s: left by a previous agent (%s): replaced by the first table",
				 g->name, g->why);
			continue;
		}
		if (!g->stale || g->kind == SEG_OTHER || !may_remove(g))
			continue;
		if (flare_seg_remove(g) == 0)
			log_info("%s: reclaimed (%s %s)", g->name, flare_seg_kind_name(g->kind),
				 g->why);
		else
			log_warn("%s: cannot reclaim: %s", g->name, strerror(errno));
	}
	return 0;
}
