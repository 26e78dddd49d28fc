/* The processes behind replicas no process registered. A registration can
 * be lost (the monitor restarted and the server has not come back, or the
 * server does not run under flare-run); the kernel still completes TCP
 * handshakes for a stopped process, so probes alone would call it alive.
 * The monitor finds such a replica's processes itself: the inode of the
 * socket that takes its connections (sock_diag's exact lookup;
 * /proc/self/net/tcp{,6} without it), then the processes that hold that
 * inode among their descriptors. A stopped process (SIGSTOP, a
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
#include "sockdiag.h"

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

/* The replicas looked for on one pass: each one's listening inode (one
 * exact sock_diag request each: the kernel's own lookup, where a dump or
 * /proc/net/tcp would walk every connection of the host), then the
 * processes holding them (one walk of /proc for them all). */
#define MAX_INODES 4

struct search {
	struct monitor *m;
	int n, *rep;
	unsigned long (*ino)[MAX_INODES];
	int *n_ino;
};

/* Fills each searched replica's inodes; sock_diag, else /proc/self/net */
static void find_inodes(struct search *s)
{
	for (int i = 0; i < s->n; i++) {
		const struct flare_addr *a = &s->m->cfg->replicas[s->m->reps[s->rep[i]].cfg].addr;
		long ino = sockdiag_listener_inode(a);
		if (ino > 0)
			s->ino[i][s->n_ino[i]++] = (unsigned long)ino;
		else if (ino < 0)
			s->n_ino[i] = proc_listeners("/proc/self/net", a, s->ino[i], MAX_INODES);
	}
}

/* One process's socket inode ino: is it one a searched replica wants? */
static void match(struct search *s, unsigned long pid, int fd, unsigned long ino)
{
	for (int i = 0; i < s->n; i++) {
		struct mon_replica *r = &s->m->reps[s->rep[i]];
		for (int k = 0; k < s->n_ino[i] && r->n_found < MON_MAX_FOUND; k++) {
			if (s->ino[i][k] != ino)
				continue;
			/* one descriptor per process is enough to watch it */
			if (r->n_found && r->found_pid[r->n_found - 1] == (uint32_t)pid)
				break;
			r->found_inode = ino;
			r->found_pid[r->n_found] = (uint32_t)pid;
			r->found_fd[r->n_found++] = fd;
			break;
		}
	}
}

/* Every process (but this one) holding a searched inode */
static void find_holders(struct search *s)
{
	DIR *proc = opendir("/proc");
	if (!proc)
		return;
	uint32_t self = (uint32_t)getpid();
	struct dirent *e;
	while ((e = readdir(proc))) {
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
			if (sscanf(target, "socket:[%lu]", &got) == 1)
				match(s, pid, atoi(f->d_name), got);
		}
		closedir(d);
	}
	closedir(proc);
}

/* Looks for the processes behind the replicas in rep[0..n) */
static void find(struct monitor *m, int *rep, int n)
{
	struct search s = {.m = m, .n = n, .rep = rep};
	s.ino = calloc((size_t)n, sizeof(*s.ino));
	s.n_ino = calloc((size_t)n, sizeof(*s.n_ino));
	if (s.ino && s.n_ino) {
		find_inodes(&s);
		int any = 0;
		for (int i = 0; i < n; i++)
			any |= s.n_ino[i] > 0;
		if (any)
			find_holders(&s);
	}
	for (int i = 0; i < n; i++) {
		const struct mon_replica *r = &m->reps[rep[i]];
		if (r->n_found)
			log_info("replica %s: no registration; its listening socket is held by pid "
				 "%" PRIu32 "%s: watched through it",
				 m->cfg->replicas[r->cfg].name, r->found_pid[0],
				 r->n_found > 1 ? " and others" : "");
	}
	free(s.ino);
	free(s.n_ino);
}

void discover_check(struct monitor *m)
{
	uint64_t now = flare_monotonic_ns();
	int *due = NULL, n_due = 0;
	for (int i = 0; i < m->n_reps; i++) {
		struct mon_replica *r = &m->reps[i];
		/* found ones are checked below; one that lost its holders there
		 * is looked for again on the next pass */
		if (r->registrations > 0 || r->n_found || now < r->found_next_ns)
			continue;
		if (!due && !(due = malloc(sizeof(*due) * (size_t)m->n_reps)))
			break;
		r->found_next_ns = now + DISCOVER_RETRY_NS;
		due[n_due++] = i;
	}
	if (n_due)
		find(m, due, n_due);
	free(due);
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
