/* flare-monitor: one per host. Samples the host's utilization, tracks the
 * liveness of the replicas on it (registrations from servers running under
 * flare-run, TCP probes for the others) and reports to every manager,
 * periodically and at once when something changes. */
#ifndef FLARE_MONITOR_H
#define FLARE_MONITOR_H

#include "config.h"
#include "evconn.h"
#include "mlink.h"

#include <event2/listener.h>
#include <stdint.h>

struct util_source {
	int kind;
	char path[512];      /* file, or cgroup directory */
	int cgroup_v2;       /* cgroup: which hierarchy */
	char v1_cpu[512];    /* cgroup v1: cpu controller directory (quota) */
	double cpus;         /* capacity in CPUs, for per-process shares */
	uint64_t prev_busy;  /* proc: busy jiffies; cgroup: usage in ns */
	uint64_t prev_total; /* proc: total jiffies; cgroup: monotonic ns */
	int primed;
	char last_error[160]; /* logged once per distinct error */
};

#define UTIL_WINDOW_MAX 256
#define MON_MAX_FOUND 8 /* processes sharing one listening socket (forked workers) */

struct mon_replica {
	int cfg; /* index into cfg->replicas */
	int alive;
	int reason;        /* enum flare_death while dead */
	int registrations; /* live registrations naming this replica */
	int running;       /* of which by a process that is not stopped */
	uint32_t pid;
	double load; /* measured share, < 0 unknown */
	/* hung.c: unread bytes on its connections, whether any was consumed
	 * since the last pass, since when nothing was, and the verdict */
	uint64_t hung_unread;
	int hung_progress, hung;
	uint64_t stalled_since;
	/* its request rate: data segments its connections received per second
	 * over the last sock_diag pass (hung.c) */
	uint64_t segs;
	double rate;
	/* probe state (replicas nobody registered): the probe under way, when
	 * it started, and the verdicts in a row (probe_fall, probe_rise) */
	evutil_socket_t probe_fd;
	struct event *probe_ev;
	uint64_t probe_start_ns;
	int probe_fails, probe_oks;
	/* discover.c: the processes found holding its listening socket (no
	 * registration), at which descriptor, and whether all are stopped */
	unsigned long found_inode;
	uint32_t found_pid[MON_MAX_FOUND];
	int found_fd[MON_MAX_FOUND];
	int n_found, found_stopped;
	uint64_t found_next_ns; /* when to look again for a replica with none */
};

struct registration {
	struct evconn *c;
	uint32_t pid;
	int n;
	int reps[FW_MAX_REG_ADDRS]; /* indexes into monitor->reps */
	uint64_t prev_ticks, prev_ns;
	int stopped; /* its process is stopped (SIGSTOP, a debugger): not serving */
	struct registration *next;
};

struct monitor {
	struct flare_config *cfg;
	struct flare_addr source; /* --source (family 0: any) */
	struct event_base *base;
	int host;
	struct util_source util;
	double utilization, reported_util;
	/* the last samples of a measured (proc, cgroup) utilization, averaged
	 * over monitor.util_window_ms: one request's CPU burst in a 60 ms
	 * sample is not the host's load */
	double window[UTIL_WINDOW_MAX];
	int window_len, window_pos, window_n;
	uint64_t last_report_ns, seq;
	int liveness_dirty;

	struct mon_replica *reps;
	int n_reps;
	struct registration *regs;
	struct evconnlistener *unix_listener;
	struct mlink links[FLARE_MAX_MANAGERS]; /* one per manager: reports go to all */

	/* the last pass's client connections to replicas of on-demand services
	 * (hung.c), and when it ran */
	struct fw_report_conn *conns;
	int n_conns;
	uint64_t traffic_ms;
	int want_traffic; /* a service balances on measured rates */

	struct event *sample_timer, *probe_timer;
	int sample_ms;
};

/* hung.c: one sock_diag pass over the replicas' connections: marks
 * replicas whose process stopped reading (r->hung) and measures request
 * rates (r->rate, m->conns) */
void hung_check(struct monitor *m);

/* util.c */
int util_open(struct util_source *u, const struct flare_host_cfg *h, char *err, size_t n);
/* Samples; returns 0 and sets *out (0..1), or -1 (logged once) */
int util_sample(struct util_source *u, double *out);
/* CPU ticks (utime + stime) of a process, or -1 when it is gone */
int64_t proc_cpu_ticks(uint32_t pid);
/* the state letter of a process (/proc/PID/stat), 0 when it is gone */
int proc_state(uint32_t pid);

/* liveness.c */
int liveness_start(struct monitor *m);
void liveness_stop(struct monitor *m);
void liveness_probe_all(struct monitor *m);
void liveness_measure_loads(struct monitor *m, uint64_t now);
/* alive, or dead for reason (enum flare_death); why is logged */
void liveness_set(struct monitor *m, int rep, int alive, int reason, const char *why);
/* SIGHUP: the host's replicas from cfg (host: its index there) */
int liveness_reload(struct monitor *m, const struct flare_config *cfg, int host);

/* verify.c: the inodes of the TCP sockets listening on a (exactly, or on
 * its port's wildcard) in the network namespace of netdir (/proc/PID/net) */
int proc_listeners(const char *netdir, const struct flare_addr *a, unsigned long *out, int max);

/* discover.c: the processes behind replicas nobody registered, found by
 * their listening sockets; a stopped one makes its replica dead */
void discover_check(struct monitor *m);

/* verify.c: 0 when the registering peer on sock is the process it names
 * and listens on every address it registers; -1 with *why otherwise */
int verify_registration(int sock, const struct fw_register *r, const char **why);

/* report.c */
int report_start(struct monitor *m);
void report_stop(struct monitor *m);
/* Sends a report to every connected manager now. */
void report_send(struct monitor *m);

#endif
