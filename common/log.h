/* Levelled logging shared by the daemons and the library.
 *
 * Lines are formatted into a stack buffer and written with one raw write(2)
 * so that the library never touches stdio locks or its own interposed write
 * inside a client program. */
#ifndef FLARE_LOG_H
#define FLARE_LOG_H

enum flare_log_level {
	FLARE_LOG_ERROR = 0,
	FLARE_LOG_WARN = 1,
	FLARE_LOG_INFO = 2,
	FLARE_LOG_DEBUG = 3,
};

extern int flare_log_threshold;

/* ident prefixes every line ("flare-manager", "libflare"); use_syslog sends
 * lines to syslog(3) instead of stderr. */
void flare_log_init(const char *ident, int level, int use_syslog);
/* "error|warn|info|debug" -> level; returns -1 for anything else. */
int flare_log_level_parse(const char *s);
void flare_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define flare_log(level, ...)                                                                      \
	do {                                                                                       \
		if ((level) <= flare_log_threshold)                                                \
			flare_log_write((level), __VA_ARGS__);                                     \
	} while (0)
#define log_error(...) flare_log(FLARE_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) flare_log(FLARE_LOG_WARN, __VA_ARGS__)
#define log_info(...) flare_log(FLARE_LOG_INFO, __VA_ARGS__)
#define log_debug(...) flare_log(FLARE_LOG_DEBUG, __VA_ARGS__)

#endif
