/* Start-up: real symbols are resolved once, here. A hook called before
 * that (another library's constructor, or dlsym itself) passes straight
 * through with a raw system call. */
#include "core.h"
#include "lock.h"
#include "log.h"
#include "real.h"

#include "conn/fdtab.h"
#include "route/route.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

struct real_fns real;
int flare_ready;
int flare_disabled;
pid_t flare_pid;
struct flare_stats flare_stats;

static __thread int initializing;
/* 1, yes, true, on (any case): set; unset, empty, 0, no, false, off: not */
static int env_true(const char *v)
{
	static const char *const yes[] = {"1", "yes", "true", "on"};
	if (!v)
		return 0;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
	return 0;
}

static pthread_mutex_t init_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

/* dlsym may hand back our own definition when libflare.so is not first in
 * the lookup order; then the symbol stays NULL and callers use the raw
 * system call. */
static void *resolve(const char *name, void *self)
{
	void *p = dlsym(RTLD_NEXT, name);
	return p == self ? NULL : p;
}

/* functions we define (hooks) must not resolve to ourselves; functions we
 * only call (fork) are libc's whatever the address says */
#define SELF_HOOKED(f) ((void *)f)
#define SELF_CALLED(f) NULL
#define RESOLVE(name, ret, params, how, need)                                                      \
	real.name = (__typeof__(real.name))resolve(#name, SELF_##how(name));
#define MISSING_REQUIRED(name) (!real.name) ||
#define MISSING_OPTIONAL(name)
#define MISSING(name, ret, params, how, need) MISSING_##need(name)

int flare_in_foreign_child(void) { return (pid_t)syscall(SYS_getpid) != flare_pid; }

static void atfork_child(void)
{
	flare_pid = (pid_t)syscall(SYS_getpid);
	flare_mutex_init(&init_lock);
	fdtab_atfork_child(); /* every connection's lock, the table's and the pending list's */
	dial_atfork_child();
	route_atfork_child();
	register_atfork_child();
	usershm_atfork_child();
}

void flare_init(void)
{
	if (flare_ready || initializing)
		return;
	initializing = 1;
	if (flare_lock(&init_lock) == EDEADLK) { /* cannot happen past the flag above */
		initializing = 0;
		return;
	}
	if (!flare_ready) {
		FLARE_REAL_FNS(RESOLVE)
		const char *level = getenv("FLARE_LOG");
		int lv = level ? flare_log_level_parse(level) : -1;
		/* FLARE_LOG_TARGET=syslog: the program's stderr stays its own
		 * (the socket to syslog is opened at the first message) */
		const char *target = getenv("FLARE_LOG_TARGET");
		flare_log_init("libflare", lv >= 0 ? lv : FLARE_LOG_WARN,
			       target && strcmp(target, "syslog") == 0 ? 2 : 0);
		flare_disabled = env_true(getenv("FLARE_DISABLE"));
		flare_pid = (pid_t)syscall(SYS_getpid);
		if (FLARE_REAL_FNS(MISSING) 0) {
			log_error(
			    "cannot resolve libc's socket functions: passing everything through");
			flare_disabled = 1;
		}
		if (!flare_disabled && fdtab_init() < 0) {
			log_error(
			    "cannot allocate the descriptor table: passing everything through");
			flare_disabled = 1;
		}
		pthread_atfork(NULL, fdtab_atfork_parent, atfork_child);
		__atomic_store_n(&flare_ready, 1, __ATOMIC_RELEASE);
	}
	flare_unlock(&init_lock);
	initializing = 0;
}

__attribute__((constructor)) static void flare_ctor(void) { flare_init(); }

/* FLARE_STATS=PATH: the counters, appended to PATH as one line. */
static void write_stats(const struct flare_stats *s)
{
	const char *path = getenv("FLARE_STATS");
	if (!path || !*path)
		return;
	char line[1024];
	int n = snprintf(line, sizeof(line), "pid=%d", (int)flare_pid);
#define FLARE_STATS_PRINT(name)                                                                    \
	n += snprintf(line + n, sizeof(line) - (size_t)n, " " #name "=%llu",                       \
		      (unsigned long long)s->name);
	FLARE_STATS_FIELDS(FLARE_STATS_PRINT)
#undef FLARE_STATS_PRINT
	n += snprintf(line + n, sizeof(line) - (size_t)n, "\n");
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	if (real.write(fd, line, (size_t)n) < 0)
		log_debug("FLARE_STATS %s: %s", path, strerror(errno));
	real.close(fd);
}

/* The per-process summary: FLARE_LOG=info shows it at exit. */
__attribute__((destructor)) static void flare_dtor(void)
{
	if (!flare_ready || flare_disabled || flare_in_foreign_child())
		return;
	struct flare_stats s = flare_stats;
	write_stats(&s);
	if (s.managed || s.failovers || s.passed_errors)
		log_info("pid %d: %llu managed connection(s), %llu connect failover(s), %llu "
			 "failover(s), %llu replay(s) of %llu byte(s), %llu wake-up(s) on a dead "
			 "replica, %llu request timeout(s), %llu error(s) passed through",
			 (int)flare_pid, (unsigned long long)s.managed,
			 (unsigned long long)s.connect_failovers, (unsigned long long)s.failovers,
			 (unsigned long long)s.replays, (unsigned long long)s.replay_bytes,
			 (unsigned long long)s.table_dead_wakeups,
			 (unsigned long long)s.request_timeouts,
			 (unsigned long long)s.passed_errors);
}
