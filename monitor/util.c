/* Host utilization sources: /proc/stat, a cgroup's CPU usage against its
 * quota (v2 cpu.stat/cpu.max or v1 cpuacct/cpu), or a number in a file. */
#include "monitor.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup"

static void util_error(struct util_source *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void util_error(struct util_source *u, const char *fmt, ...)
{
	char msg[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (strcmp(msg, u->last_error) != 0) {
		log_error("utilization: %s", msg);
		snprintf(u->last_error, sizeof(u->last_error), "%s", msg);
	}
}

static int read_small(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t got = fread(buf, 1, n - 1, f);
	fclose(f);
	buf[got] = '\0';
	return 0;
}

static double online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (double)n : 1.0;
}

/* cgroup quota in CPUs; the machine's CPUs when unlimited */
static double cgroup_cpus(struct util_source *u)
{
	char buf[128], path[600];
	if (u->cgroup_v2) {
		snprintf(path, sizeof(path), "%s/cpu.max", u->path);
		if (read_small(path, buf, sizeof(buf)) == 0 && strncmp(buf, "max", 3) != 0) {
			double quota = 0, period = 0;
			if (sscanf(buf, "%lf %lf", &quota, &period) == 2 && quota > 0 && period > 0)
				return quota / period;
		}
		return online_cpus();
	}
	long long quota = -1, period = 0;
	snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", u->v1_cpu);
	if (read_small(path, buf, sizeof(buf)) == 0)
		quota = atoll(buf);
	snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", u->v1_cpu);
	if (read_small(path, buf, sizeof(buf)) == 0)
		period = atoll(buf);
	if (quota > 0 && period > 0)
		return (double)quota / (double)period;
	return online_cpus();
}

int util_open(struct util_source *u, const struct flare_host_cfg *h, char *err, size_t n)
{
	memset(u, 0, sizeof(*u));
	u->kind = h->util_kind;
	u->cpus = 1.0;
	switch (h->util_kind) {
	case FLARE_UTIL_PROC:
		snprintf(u->path, sizeof(u->path), "/proc/stat");
		u->cpus = online_cpus();
		return 0;
	case FLARE_UTIL_FILE: snprintf(u->path, sizeof(u->path), "%s", h->util_arg); return 0;
	case FLARE_UTIL_CGROUP: {
		const char *p = h->util_arg;
		char probe[600];
		if (p[0] == '/')
			snprintf(u->path, sizeof(u->path), "%s", p);
		else
			snprintf(u->path, sizeof(u->path), CGROUP_ROOT "/%s", p);
		snprintf(probe, sizeof(probe), "%s/cpu.stat", u->path);
		if (access(probe, R_OK) == 0) {
			u->cgroup_v2 = 1;
		} else if (p[0] != '/') {
			snprintf(u->v1_cpu, sizeof(u->v1_cpu), CGROUP_ROOT "/cpu/%s", p);
			snprintf(u->path, sizeof(u->path), CGROUP_ROOT "/cpuacct/%s", p);
			snprintf(probe, sizeof(probe), "%s/cpuacct.usage", u->path);
			if (access(probe, R_OK) != 0) {
				snprintf(err, n,
					 "cgroup '%s' not found (no cpu.stat under %s/%s, no v1 "
					 "cpuacct)",
					 p, CGROUP_ROOT, p);
				return -1;
			}
		} else {
			snprintf(err, n, "cgroup '%s' has no cpu.stat", p);
			return -1;
		}
		u->cpus = cgroup_cpus(u);
		return 0;
	}
	}
	snprintf(err, n, "unknown utilization source");
	return -1;
}

static int sample_proc(struct util_source *u, double *out)
{
	char buf[512];
	unsigned long long v[8] = {0};
	if (read_small("/proc/stat", buf, sizeof(buf)) < 0 ||
	    sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) < 4) {
		util_error(u, "cannot parse %s", "/proc/stat");
		return -1;
	}
	uint64_t total = 0, idle = v[3] + v[4];
	for (int i = 0; i < 8; i++)
		total += v[i];
	uint64_t busy = total - idle;
	int primed = u->primed;
	uint64_t dt = total - u->prev_total, db = busy - u->prev_busy;
	u->prev_total = total;
	u->prev_busy = busy;
	u->primed = 1;
	if (!primed || dt == 0)
		return -1;
	*out = (double)db / (double)dt;
	return 0;
}

static int sample_cgroup(struct util_source *u, double *out)
{
	char buf[1024], path[600];
	uint64_t usage_ns = 0;
	if (u->cgroup_v2) {
		snprintf(path, sizeof(path), "%s/cpu.stat", u->path);
		char *p;
		if (read_small(path, buf, sizeof(buf)) < 0 || !(p = strstr(buf, "usage_usec "))) {
			util_error(u, "cannot read usage_usec from %s", path);
			return -1;
		}
		usage_ns = strtoull(p + 11, NULL, 10) * 1000ull;
	} else {
		snprintf(path, sizeof(path), "%s/cpuacct.usage", u->path);
		if (read_small(path, buf, sizeof(buf)) < 0) {
			util_error(u, "cannot read %s", path);
			return -1;
		}
		usage_ns = strtoull(buf, NULL, 10);
	}
	uint64_t now = flare_monotonic_ns();
	int usable = u->primed && usage_ns >= u->prev_busy && now > u->prev_total;
	uint64_t dt = now - u->prev_total, du = usage_ns - u->prev_busy;
	u->prev_total = now;
	u->prev_busy = usage_ns;
	u->primed = 1;
	u->cpus = cgroup_cpus(u); /* quotas can be changed at run time */
	if (!usable)
		return -1;
	*out = (double)du / (double)dt / u->cpus;
	return 0;
}

static int sample_file(struct util_source *u, double *out)
{
	char buf[64], *end;
	if (read_small(u->path, buf, sizeof(buf)) < 0) {
		util_error(u, "cannot read %s (keeping the last value)", u->path);
		return -1;
	}
	errno = 0;
	double v = strtod(buf, &end);
	while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r')
		end++;
	if (end == buf || *end || errno || !(v >= 0 && v <= 1)) {
		util_error(u, "%s does not hold a number 0..1 (keeping the last value)", u->path);
		return -1;
	}
	u->last_error[0] = '\0';
	*out = v;
	return 0;
}

int util_sample(struct util_source *u, double *out)
{
	int rc;
	switch (u->kind) {
	case FLARE_UTIL_PROC: rc = sample_proc(u, out); break;
	case FLARE_UTIL_CGROUP: rc = sample_cgroup(u, out); break;
	default: rc = sample_file(u, out); break;
	}
	if (rc == 0) {
		if (*out < 0)
			*out = 0;
		if (*out > 1)
			*out = 1;
	}
	return rc;
}

/* The state letter of /proc/PID/stat (R, S, D, T, t, Z, ...), 0 when gone. */
int proc_state(uint32_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%" PRIu32 "/stat", pid);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return 0;
	char *p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
	return p && p[1] == ' ' && p[2] ? (unsigned char)p[2] : 0;
}

int64_t proc_cpu_ticks(uint32_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%" PRIu32 "/stat", pid);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return -1;
	/* the command name may hold spaces and parentheses: fields start
	 * after the last ')' */
	char *p = strrchr(buf, ')');
	unsigned long long utime, stime;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
			 &stime) != 2)
		return -1;
	return (int64_t)(utime + stime);
}
