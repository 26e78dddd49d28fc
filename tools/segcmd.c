#include "flarectl.h"

#include "segments.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#define LIST_MAX 4096

static const char *user_name(uid_t uid, char *buf, size_t n)
{
	struct passwd *p = getpwuid(uid);
	if (p)
		snprintf(buf, n, "%s", p->pw_name);
	else
		snprintf(buf, n, "%u", (unsigned)uid);
	return buf;
}

int cmd_segments(const char *shm, int remove_stale)
{
	static struct flare_seg segs[LIST_MAX];
	int n = flare_segs_list(shm, segs, LIST_MAX), failed = 0;
	if (n < 0) {
		fprintf(stderr, "flarectl: /dev/shm: %s\n", strerror(errno));
		return 1;
	}
	printf("%-40s %-9s %-10s %9s  %s\n", "segment", "kind", "owner", "bytes", "state");
	for (int i = 0; i < n && i < LIST_MAX; i++) {
		const struct flare_seg *g = &segs[i];
		char who[64];
		const char *state = g->stale ? "stale" : "in use";
		if (remove_stale && g->stale && g->kind != SEG_OTHER) {
			if (flare_seg_remove(g) == 0) {
				state = "removed";
			} else {
				state = "stale, cannot remove";
				failed = 1;
			}
		}
		printf("%-40s %-9s %-10s %9lld  %s (%s)\n", g->name, flare_seg_kind_name(g->kind),
		       user_name(g->owner, who, sizeof(who)), (long long)g->size, state, g->why);
	}
	if (n > LIST_MAX)
		printf("... and %d more\n", n - LIST_MAX);
	return failed;
}
