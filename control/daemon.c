#include "daemon.h"

#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

int daemon_setup(const char *ident, int foreground)
{
	int level = FLARE_LOG_INFO;
	const char *env = getenv("FLARE_LOG");
	if (env && flare_log_level_parse(env) >= 0)
		level = flare_log_level_parse(env);
	signal(SIGPIPE, SIG_IGN);
	if (!foreground && daemon(0, 0) < 0) {
		fprintf(stderr, "%s: cannot go to the background: %s\n", ident, strerror(errno));
		return -1;
	}
	flare_log_init(ident, level, !foreground);
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	log_info("signal %d: stopping", (int)sig);
	event_base_loopbreak(arg);
}

struct event **daemon_signals(struct event_base *base)
{
	struct event **evs = calloc(3, sizeof(*evs));
	if (!evs)
		return NULL;
	evs[0] = evsignal_new(base, SIGINT, on_signal, base);
	evs[1] = evsignal_new(base, SIGTERM, on_signal, base);
	for (int i = 0; i < 2; i++)
		if (evs[i])
			event_add(evs[i], NULL);
	return evs;
}

void daemon_signals_free(struct event **evs)
{
	for (int i = 0; evs && evs[i]; i++)
		event_free(evs[i]);
	free(evs);
}

struct evconnlistener *listen_tcp(struct event_base *base, const struct flare_addr *a,
				  evconnlistener_cb cb, void *arg)
{
	struct sockaddr_storage ss;
	socklen_t len = flare_addr_to_sockaddr(a, &ss);
	char buf[FLARE_ADDR_STRLEN];
	struct evconnlistener *l = evconnlistener_new_bind(
	    base, cb, arg, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 128,
	    (struct sockaddr *)&ss, (int)len);
	if (!l)
		log_error("cannot listen on %s: %s", flare_addr_format(a, buf, sizeof(buf)),
			  strerror(errno));
	return l;
}

int unix_sockaddr(const char *path, struct sockaddr_storage *ss)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;
	size_t n = strlen(path);
	memset(ss, 0, sizeof(*ss));
	un->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(un->sun_path))
		return -1;
	memcpy(un->sun_path, path, n);
	if (path[0] == '@') {
		un->sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
		return (int)(offsetof(struct sockaddr_un, sun_path) + n);
	}
	return (int)sizeof(*un);
}

struct evconnlistener *listen_unix(struct event_base *base, const char *path, evconnlistener_cb cb,
				   void *arg)
{
	struct sockaddr_storage ss;
	int len = unix_sockaddr(path, &ss);
	if (len < 0) {
		log_error("bad UNIX socket path '%s'", path);
		return NULL;
	}
	if (path[0] != '@')
		unlink(path);
	struct evconnlistener *l =
	    evconnlistener_new_bind(base, cb, arg, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				    128, (struct sockaddr *)&ss, len);
	if (!l)
		log_error("cannot listen on %s: %s", path, strerror(errno));
	return l;
}

void describe_peer(const struct sockaddr *sa, int len, char *buf, size_t n)
{
	struct flare_addr a;
	if (flare_addr_from_sockaddr(sa, (socklen_t)len, &a) == 0)
		flare_addr_format(&a, buf, n);
	else
		snprintf(buf, n, "local peer");
}
