/* The processes behind replicas no process registered. A registration can
 * be lost (the monitor restarted and the server has not come back, or the
 * server does not run under flare-run); the kernel still completes TCP
 * handshakes for a stopped process, so probes alone would call it alive.
 * The monitor finds such a replica's processes itself: its listening
 * socket in /proc/self/net/tcp{,6} (the inode), then the processes that
 * hold that inode among their descriptors. A stopped process (SIGSTOP, a
 * debugger) makes its replica dead, as for a registered one; a listener
 * shared by forked workers serves while any of them runs.
 *
 * What was found is checked on every pass with one readlink per process;
 * a replica with nothing found is looked for again at most every
 * DISCOVER_RETRY_NS (a scan reads every process's descriptors). A monitor
 * that may not read another user's descriptors finds nothing there, and
 * the replica stays watched by probes alone (flarectl status says so). */
#include "monitor.h"

#include "clock.h"
#include "log.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DISCOVER_RETRY_NS 2000000000ull

/* Does pid's descriptor fd still name socket inode ino? */
static int holds(uint32_t pid, int fd, unsigned long ino)
{
	char path[64], target[64];
	snprintf(path, sizeof(path), "/proc/%" PRIu32 "/fd/%d", pid, fd);
	ssize_t k = readlink(path, target, sizeof(target) - 1);
	unsigned long got;
	if (k <= 0)
		return 0;
	target[k] = '\0';
	return sscanf(target, "socket:[%lu]", &got) == 1 && got == ino;
}

/* Every process (but this one) holding inode ino: up to max */
static int holders(unsigned long ino, uint32_t *pids, int *fds, int max)
{
	DIR *proc = opendir("/proc");
	if (!proc)
		return 0;
	int n = 0;
	uint32_t self = (uint32_t)getpid();
	struct dirent *e;
	while (n < max && (e = readdir(proc))) {
		char *end;
		unsigned long pid = strtoul(e->d_name, &end, 10);
		if (*end || !pid || pid == self)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "/proc/%lu/fd", pid);
		DIR *d = opendir(path);
		if (!d)
			continue;
		struct dirent *f;
		while ((f = readdir(d))) {
			char target[64];
			unsigned long got;
			ssize_t k = readlinkat(dirfd(d), f->d_name, target, sizeof(target) - 1);
			if (k <= 0)
				continue;
			target[k] = '\0';
			if (sscanf(target, "socket:[%lu]", &got) == 1 && got == ino) {
				pids[n] = (uint32_t)pid;
				fds[n] = atoi(f->d_name);
				n++;
				break;
			}
		}
		closedir(d);
	}
	closedir(proc);
	return n;
}

static void find(struct monitor *m, struct mon_replica *r, uint64_t now)
{
	const struct flare_replica_cfg *c = &m->cfg->replicas[r->cfg];
	unsigned long ino[4];
	r->found_next_ns = now + DISCOVER_RETRY_NS;
	int k = proc_listeners("/proc/self/net", &c->addr, ino, 4);
	for (int i = 0; i < k && !r->n_found; i++) {
		r->n_found = holders(ino[i], r->found_pid, r->found_fd, MON_MAX_FOUND);
		r->found_inode = ino[i];
	}
	if (r->n_found)
		log_info("replica %s: no registration; its listening socket is held by pid %" PRIu32
			 "%s: watched through it",
			 c->name, r->found_pid[0], r->n_found > 1 ? " and others" : "");
}

void discover_check(struct monitor *m)
{
	uint64_t now = flare_monotonic_ns();
	for (int i = 0; i < m->n_reps; i++) {
		struct mon_replica *r = &m->reps[i];
		if (r->registrations > 0) {
			r->n_found = r->found_stopped = 0;
			continue;
		}
		int k = 0;
		for (int j = 0; j < r->n_found; j++)
			if (holds(r->found_pid[j], r->found_fd[j], r->found_inode)) {
				r->found_pid[k] = r->found_pid[j];
				r->found_fd[k++] = r->found_fd[j];
			}
		r->n_found = k;
		if (!r->n_found && now >= r->found_next_ns)
			find(m, r, now);
		r->pid = r->n_found ? r->found_pid[0] : 0;
		int running = 0;
		for (int j = 0; j < r->n_found; j++) {
			int st = proc_state(r->found_pid[j]);
			running |= st && st != 'T' && st != 't';
		}
		int stopped = r->n_found && !running;
		if (stopped == r->found_stopped)
			continue;
		r->found_stopped = stopped;
		if (stopped)
			liveness_set(m, i, 0, FLARE_DEATH_STOPPED, "its process is stopped");
		else if (r->n_found && r->reason == FLARE_DEATH_STOPPED && r->probe_fails == 0)
			liveness_set(m, i, 1, FLARE_DEATH_NONE, "its process runs");
		/* (gone: the probes say what listens now) */
	}
}
