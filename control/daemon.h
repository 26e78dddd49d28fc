/* What every flare daemon does the same way: logging set-up, going to the
 * background, stopping on SIGINT/SIGTERM, and listening sockets. */
#ifndef FLARE_DAEMON_H
#define FLARE_DAEMON_H

#include "addr.h"

#include <event2/event.h>
#include <event2/listener.h>

/* foreground: log to stderr; otherwise detach and log to syslog.
 * FLARE_LOG (error|warn|info|debug) sets the level, default info. */
int daemon_setup(const char *ident, int foreground);
/* Breaks the loop on SIGINT/SIGTERM; SIGPIPE is ignored. Free with
 * daemon_signals_free. */
struct event **daemon_signals(struct event_base *base);
void daemon_signals_free(struct event **evs);

struct evconnlistener *listen_tcp(struct event_base *base, const struct flare_addr *a,
				  evconnlistener_cb cb, void *arg);
/* path "@name" is Linux's abstract namespace; a file path is unlinked first. */
struct evconnlistener *listen_unix(struct event_base *base, const char *path, evconnlistener_cb cb,
				   void *arg);
/* sockaddr_un for path (abstract when it starts with '@'); returns its length. */
int unix_sockaddr(const char *path, struct sockaddr_storage *ss);
void describe_peer(const struct sockaddr *sa, int len, char *buf, size_t n);

#endif
