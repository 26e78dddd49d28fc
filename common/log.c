#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

int flare_log_threshold = FLARE_LOG_WARN;
static const char *log_ident = "flare";
static int log_to_syslog;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* UTC date from days since the epoch (H. Hinnant's algorithm). gmtime_r
 * would do, but glibc's reads /etc/localtime on first use: a file open
 * inside a client program in the middle of a failover. */
static void civil_from_days(long z, int *y, int *m, int *d)
{
	z += 719468;
	long era = (z >= 0 ? z : z - 146096) / 146097;
	long doe = z - era * 146097;
	long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	long mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

void flare_log_init(const char *ident, int level, int use_syslog)
{
	if (ident)
		log_ident = ident;
	flare_log_threshold = level;
	log_to_syslog = use_syslog;
	/* 2: inside a client program (libflare.so): user facility, and no
	 * descriptor of ours in its table until the first message */
	if (use_syslog)
		openlog(log_ident, LOG_PID | (use_syslog == 2 ? 0 : LOG_NDELAY),
			use_syslog == 2 ? LOG_USER : LOG_DAEMON);
}

int flare_log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (s && strcmp(s, level_names[i]) == 0)
			return i;
	return -1;
}

void flare_log_write(int level, const char *fmt, ...)
{
	static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char line[1024];
	va_list ap;
	int n = 0;

	if (level < 0 || level > FLARE_LOG_DEBUG)
		level = FLARE_LOG_ERROR;
	if (!log_to_syslog) {
		struct timespec ts;
		int y, mo, d;
		clock_gettime(CLOCK_REALTIME, &ts);
		civil_from_days(ts.tv_sec / 86400, &y, &mo, &d);
		long sod = ts.tv_sec % 86400;
		n = snprintf(line, sizeof(line),
			     "%04d-%02d-%02dT%02ld:%02ld:%02ld.%03ldZ %s[%ld] %s: ", y, mo, d,
			     sod / 3600, sod / 60 % 60, sod % 60, ts.tv_nsec / 1000000, log_ident,
			     (long)syscall(SYS_getpid), level_names[level]);
		if (n < 0 || (size_t)n >= sizeof(line))
			n = 0;
	}
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	if (log_to_syslog) {
		line[n] = '\0';
		syslog(syslog_prio[level], "%s", line);
		return;
	}
	line[n++] = '\n';
	/* raw syscall: inside the library, write() is our own hook */
	(void)!syscall(SYS_write, 2, line, (size_t)n);
}
