#include "segments.h"

#include "table.h"
#include "usershm.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHM_DIR "/dev/shm"
#define SCAN_MAX 100000 /* entries of /dev/shm looked at, at most */

const char *flare_seg_kind_name(int kind)
{
	static const char *const n[] = {"table", "new-table", "user", "legacy", "other"};
	return kind >= 0 && kind <= SEG_OTHER ? n[kind] : "?";
}

static int alive(pid_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM); }

static int parse_u(const char *s, unsigned long *v)
{
	char *end;
	if (!*s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoul(s, &end, 10);
	return errno || *end ? -1 : 0;
}

static void judge_table(int fd, struct flare_seg *g)
{
	struct flare_tbl_hdr h;
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || h.magic != FLARE_TBL_MAGIC) {
		g->stale = 1;
		snprintf(g->why, sizeof(g->why), "not a table");
		return;
	}
	g->pid = (pid_t)h.writer_pid;
	if (h.flags & FLARE_TBL_FLAG_RETIRED) {
		g->stale = 1;
		snprintf(g->why, sizeof(g->why), "retired");
	} else if (!alive(g->pid)) {
		g->stale = 1;
		snprintf(g->why, sizeof(g->why), "its agent (pid %d) is gone", (int)g->pid);
	} else {
		snprintf(g->why, sizeof(g->why), "written by pid %d", (int)g->pid);
	}
}

static void judge_user(int fd, const char *uid_text, struct flare_seg *g)
{
	static struct flare_user_hdr h; /* 1 KiB: off the stack */
	unsigned long uid;
	if (parse_u(uid_text, &uid) < 0 || uid != (unsigned long)g->owner) {
		g->stale = 1;
		snprintf(g->why, sizeof(g->why), "not owned by the uid in its name");
		return;
	}
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || h.magic != FLARE_USER_MAGIC) {
		g->stale = 1;
		snprintf(g->why, sizeof(g->why), "not a user segment");
		return;
	}
	if (h.version != FLARE_USER_VERSION || g->size != FLARE_USER_SEG_SIZE) {
		g->stale = 1;
		snprintf(g->why, sizeof(g->why), "another layout");
		return;
	}
	g->valid = 1;
	for (int i = 0; i < FLARE_USER_SLOTS; i++)
		g->live_processes += h.pid[i] && alive((pid_t)h.pid[i]);
	g->stale = g->live_processes == 0;
	snprintf(g->why, sizeof(g->why), "%d live process(es)", g->live_processes);
}

static void judge(const char *suffix, struct flare_seg *g)
{
	int fd = shm_open(g->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(g->why, sizeof(g->why), "cannot open: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	g->owner = st.st_uid;
	g->size = st.st_size;
	g->ino = (uint64_t)st.st_ino;
	unsigned long pid;
	if (!*suffix) {
		g->kind = SEG_TABLE;
		judge_table(fd, g);
	} else if (strncmp(suffix, FLARE_TBL_NEW_INFIX, strlen(FLARE_TBL_NEW_INFIX)) == 0) {
		g->kind = SEG_NEW;
		char num[24];
		snprintf(num, sizeof(num), "%s", suffix + strlen(FLARE_TBL_NEW_INFIX));
		char *dot = strchr(num, '.');
		if (dot)
			*dot = '\0';
		g->pid = parse_u(num, &pid) == 0 ? (pid_t)pid : 0;
		g->stale = !alive(g->pid);
		snprintf(g->why, sizeof(g->why), g->stale ? "its maker is gone" : "being made");
	} else if (strncmp(suffix, FLARE_USER_INFIX, strlen(FLARE_USER_INFIX)) == 0) {
		g->kind = SEG_USER;
		judge_user(fd, suffix + strlen(FLARE_USER_INFIX), g);
	} else if (strcmp(suffix, ".rr") == 0 || strcmp(suffix, ".stats") == 0) {
		g->kind = SEG_LEGACY;
		g->stale = 1;
		snprintf(g->why, sizeof(g->why), "left by an older agent");
	} else {
		g->kind = SEG_OTHER;
		snprintf(g->why, sizeof(g->why), "not one of flare's names");
	}
	close(fd);
}

int flare_segs_list(const char *name, struct flare_seg *out, int max)
{
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return -1;
	const char *base = name[0] == '/' ? name + 1 : name;
	size_t n = strlen(base);
	int count = 0;
	struct dirent *e;
	for (int seen = 0; (e = readdir(d)) != NULL && seen < SCAN_MAX; seen++) {
		const char *suffix = e->d_name + n;
		/* NAME itself or NAME.something: not NAMEother */
		if (strncmp(e->d_name, base, n) != 0 || (*suffix && *suffix != '.'))
			continue;
		if (count < max) {
			struct flare_seg *g = &out[count];
			memset(g, 0, sizeof(*g));
			snprintf(g->name, sizeof(g->name), "/%s", e->d_name);
			judge(suffix, g);
		}
		count++;
	}
	closedir(d);
	return count;
}

int flare_seg_user_sum(const struct flare_seg *g, uint64_t (*sum)[SS_N])
{
	static struct flare_user_hdr h;
	static struct flare_user_slot slot;
	struct stat st;
	int fd = shm_open(g->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0), rc = -1;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_ino != g->ino || st.st_uid != g->owner ||
	    pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		goto out;
	for (int i = 0; i < FLARE_USER_SLOTS; i++) {
		if (!h.pid[i]) /* never used: never counted */
			continue;
		off_t at =
		    (off_t)offsetof(struct flare_user_seg, slots) + (off_t)i * (off_t)sizeof(slot);
		if (pread(fd, &slot, sizeof(slot), at) != (ssize_t)sizeof(slot))
			goto out; /* truncated by its owner meanwhile */
		for (int v = 0; v < FLARE_USER_SERVICES; v++)
			for (int f = 0; f < SS_N; f++)
				sum[v][f] += slot.v[v][f];
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

int flare_seg_user_waits(const struct flare_seg *g, uint64_t *out, int max)
{
	static struct flare_user_hdr h;
	static struct flare_user_waits w;
	struct stat st;
	int fd = shm_open(g->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0), n = 0;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_ino != g->ino || st.st_uid != g->owner ||
	    pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		close(fd);
		return -1;
	}
	for (int i = 0; i < FLARE_USER_SLOTS && n < max; i++) {
		if (!h.pid[i] || !alive((pid_t)h.pid[i]))
			continue; /* an exited process's entries name closed sockets */
		off_t at = (off_t)offsetof(struct flare_user_seg, waits) + (off_t)i * (off_t)sizeof(w);
		if (pread(fd, &w, sizeof(w), at) != (ssize_t)sizeof(w))
			break;
		for (int k = 0; k < FLARE_USER_WAITS && n < max; k++)
			if (w.cookie[k])
				out[n++] = w.cookie[k];
	}
	close(fd);
	return n;
}

int flare_seg_remove(const struct flare_seg *s) { return shm_unlink(s->name); }
