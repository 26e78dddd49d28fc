/* What every flare daemon does the same way: logging set-up, going to the
 * background, stopping on SIGINT/SIGTERM, and listening sockets. */
#ifndef FLARE_DAEMON_H
#define FLARE_DAEMON_H

#include "addr.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <getopt.h>
#include <stddef.h>

struct flare_config;

/* What one daemon adds to the common skeleton (daemon_main): its name and
 * usage, its own options, its config checks, and its start and stop. */
struct daemon_spec {
	const char *name;               /* "flare-agent" */
	const char *usage;              /* the whole --help text */
	const char *short_opts;         /* beyond "c:fh" */
	const struct option *long_opts; /* beyond config, foreground, check, help */
	/* one of the daemon's own options; -1 for a bad value (say why) */
	int (*option)(void *ctx, int opt, const char *arg);
	/* after the config loaded: the daemon's own checks, 0 or -1 with err */
	int (*prepare)(void *ctx, const char *path, struct flare_config *cfg, char *err, size_t n);
	/* --check's line after "PATH: ok (" */
	void (*describe)(void *ctx, const struct flare_config *cfg, char *out, size_t n);
	int (*start)(void *ctx, struct event_base *base);
	void (*stop)(void *ctx);
	/* SIGHUP: the re-read config (loaded and valid; not passed to prepare:
	 * the daemon checks what it needs and logs why it refuses); 0 when
	 * the daemon now uses it (the old one is then freed), -1 when it
	 * keeps the old one. NULL: SIGHUP changes nothing (and says so). */
	int (*reload)(void *ctx, struct flare_config *cfg);
	/* the FW_ROLE_* whose key it holds (0: the manager, which holds the
	 * deployment's secret), and for a monitor its host, known after prepare */
	int auth_role;
	const char *(*auth_name)(void *ctx);
};

/* The whole life of a daemon: options (-c FILE, -f, --check, --help and
 * the spec's own), the config, --check, going to the background, the
 * event loop until SIGINT/SIGTERM, and teardown. Returns the exit code. */
int daemon_main(const struct daemon_spec *spec, void *ctx, int argc, char **argv);

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
void describe_peer(const struct sockaddr *sa, int len, char *buf, size_t n);
/* --source IP (monitor, agent): the address of this host the daemon's
 * connections to managers come from; -1 after saying why on stderr */
int daemon_source_option(const char *name, const char *arg, struct flare_addr *out);

struct evhttp;
struct evhttp_request;
/* An HTTP server for GET /metrics on a (Prometheus' text format is the
 * callback's); NULL (logged) when it cannot listen. */
struct evhttp *metrics_listen(struct event_base *base, const struct flare_addr *a,
			      void (*cb)(struct evhttp_request *, void *), void *arg);

#endif
