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

void flare_log_init(const char *ident, int level, int use_syslog)
{
	if (ident)
		log_ident = ident;
	flare_log_threshold = level;
	log_to_syslog = use_syslog;
	if (use_syslog)
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
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
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] %s: ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, log_ident, (long)syscall(SYS_getpid),
			     level_names[level]);
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
