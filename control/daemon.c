#include "daemon.h"

#include "auth.h"

#include <sodium.h>
#include "clock.h"
#include "config.h"
#include "log.h"
#include "unixaddr.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* systemd's readiness (Type=notify): "READY=1" to $NOTIFY_SOCKET once the
 * daemon listens and is connected. The protocol is one datagram on a UNIX
 * socket (a path, or '@' for the abstract namespace), so no libsystemd. */
static void notify_ready(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = path ? strlen(path) : 0;
	if (n < 2 || n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
		return;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	static const char msg[] = "READY=1";
	if (sendto(fd, msg, sizeof(msg) - 1, 0, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		log_warn("systemd readiness: %s", strerror(errno));
	close(fd);
}

/* SIGHUP: the config re-read; a bad one is refused with FILE:LINE: reason
 * and the one in use kept. The authentication key stays the one read at
 * start (changing it needs a restart, as every peer's must change too). */
struct reload_ctx {
	const struct daemon_spec *spec;
	void *ctx;
	const char *path;
	struct flare_config *cur; /* in use; the first is daemon_main's own */
	int cur_heap;
};

static void on_hup(evutil_socket_t fd, short what, void *arg)
{
	struct reload_ctx *r = arg;
	(void)fd;
	(void)what;
	char err[512];
	if (!r->spec->reload) {
		log_warn("SIGHUP: %s applies a new config only when restarted", r->spec->name);
		return;
	}
	struct flare_config *n = calloc(1, sizeof(*n));
	if (!n)
		return;
	if (flare_config_load(r->path, n, err, sizeof(err)) < 0) {
		log_error("SIGHUP: %s; keeping the config in use", err);
		free(n);
		return;
	}
	if (strcmp(n->auth_key_file, r->cur->auth_key_file) != 0)
		log_warn("SIGHUP: auth_key_file changed: it takes effect on a restart");
	n->auth = r->cur->auth;
	if (r->spec->reload(r->ctx, n) < 0) {
		log_error("SIGHUP: %s: the new config was not applied; keeping the one in use",
			  r->path);
		flare_config_free(n);
		free(n);
		return;
	}
	flare_config_free(r->cur);
	if (r->cur_heap)
		free(r->cur);
	r->cur = n;
	r->cur_heap = 1;
	log_info("SIGHUP: %s reloaded", r->path);
}

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

/* The log level at run time: SIGUSR1 one step more verbose (up to
 * debug), SIGUSR2 back to the level the daemon started with. */
static int started_level = -1;

static void on_level(evutil_socket_t sig, short what, void *arg)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	(void)what;
	(void)arg;
	if (started_level < 0)
		started_level = flare_log_threshold;
	int to = sig == SIGUSR1 ? flare_log_threshold + 1 : started_level;
	if (to > FLARE_LOG_DEBUG)
		to = FLARE_LOG_DEBUG;
	flare_log_threshold = to;
	/* said whatever the new level: an operator asked */
	flare_log_write(FLARE_LOG_WARN, "signal %d: log level %s", (int)sig, names[to]);
}

struct event **daemon_signals(struct event_base *base)
{
	struct event **evs = calloc(5, sizeof(*evs));
	if (!evs)
		return NULL;
	started_level = flare_log_threshold;
	evs[0] = evsignal_new(base, SIGINT, on_signal, base);
	evs[1] = evsignal_new(base, SIGTERM, on_signal, base);
	evs[2] = evsignal_new(base, SIGUSR1, on_level, NULL);
	evs[3] = evsignal_new(base, SIGUSR2, on_level, NULL);
	for (int i = 0; i < 4; i++)
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

struct evconnlistener *listen_unix(struct event_base *base, const char *path, evconnlistener_cb cb,
				   void *arg)
{
	struct sockaddr_un un;
	socklen_t len = flare_unix_addr(path, &un);
	if (!len) {
		log_error("bad UNIX socket path '%s'", path);
		return NULL;
	}
	if (path[0] != '@')
		unlink(path);
	struct evconnlistener *l =
	    evconnlistener_new_bind(base, cb, arg, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
				    128, (struct sockaddr *)&un, (int)len);
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

#define MAX_OPTS 16

static void print_usage(const struct daemon_spec *spec, FILE *f) { fputs(spec->usage, f); }

/* The key this daemon's role holds, in place of the one loaded: the
 * manager keeps the deployment's secret; the others derive theirs from it,
 * or were given their role's key. */
static int daemon_role_key(const struct daemon_spec *spec, void *ctx, struct auth_key *key,
			   char *err, size_t n)
{
	if (spec->auth_role == 0) {
		if (key->role != 0) {
			snprintf(err, n, "it holds a %s key: %s needs the deployment's secret",
				 auth_role_name(key->role), spec->name);
			return -1;
		}
		return 0;
	}
	struct auth_key role_key;
	const char *name = spec->auth_name ? spec->auth_name(ctx) : "";
	if (auth_key_for(key, spec->auth_role, name, &role_key, err, n) < 0)
		return -1;
	*key = role_key;
	sodium_memzero(&role_key, sizeof(role_key));
	return 0;
}

static void warn_stderr(void *arg, const char *line)
{
	fprintf(stderr, "%s: %s\n", (const char *)arg, line);
}

static void warn_log(void *arg, const char *line)
{
	(void)arg;
	log_warn("%s", line);
}

int daemon_source_option(const char *name, const char *arg, struct flare_addr *out)
{
	if (flare_addr_parse_ip(arg, out) == 0)
		return 0; /* port 0: the kernel picks one */
	fprintf(stderr, "%s: --source '%s': not an IPv4 or IPv6 address\n", name, arg);
	return -1;
}

int daemon_main(const struct daemon_spec *spec, void *ctx, int argc, char **argv)
{
	struct option opts[MAX_OPTS] = {{"config", required_argument, NULL, 'c'},
					{"foreground", no_argument, NULL, 'f'},
					{"check", no_argument, NULL, 1000},
					{"help", no_argument, NULL, 'h'}};
	int n = 4;
	for (const struct option *o = spec->long_opts; o && o->name && n < MAX_OPTS - 1; o++)
		opts[n++] = *o;
	char short_opts[32];
	snprintf(short_opts, sizeof(short_opts), "c:fh%s",
		 spec->short_opts ? spec->short_opts : "");
	const char *path = NULL;
	int fg = 0, check = 0, o;
	while ((o = getopt_long(argc, argv, short_opts, opts, NULL)) != -1) {
		switch (o) {
		case 'c': path = optarg; break;
		case 'f': fg = 1; break;
		case 1000: check = 1; break;
		case 'h': print_usage(spec, stdout); return 0;
		case '?': print_usage(spec, stderr); return 2;
		default:
			if (!spec->option || spec->option(ctx, o, optarg) < 0) {
				print_usage(spec, stderr);
				return 2;
			}
		}
	}
	if (!path || optind != argc) {
		print_usage(spec, stderr);
		return 2;
	}
	/* Large blocks (a big config's arrays, a table, a whole-table delta)
	 * from mmap, returned when freed: glibc's threshold otherwise rises
	 * with each large free, and they stay in the heap for good */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	struct flare_config cfg;
	char err[512];
	if (flare_config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", spec->name, err);
		return 1;
	}
	static struct auth_key key; /* lives as long as the daemon */
	int keyed = auth_config_key(&cfg, &key, err, sizeof(err));
	if (keyed < 0) {
		fprintf(stderr, "%s: %s\n", spec->name, err);
		flare_config_free(&cfg);
		return 1;
	}
	if (spec->prepare && spec->prepare(ctx, path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", spec->name, err);
		flare_config_free(&cfg);
		return 1;
	}
	if (keyed && daemon_role_key(spec, ctx, &key, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s:%d: auth_key_file %s: %s\n", spec->name, cfg.path,
			cfg.auth_key_line, cfg.auth_key_file, err);
		flare_config_free(&cfg);
		return 1;
	}
	if (keyed)
		cfg.auth = &key;
	if (check) {
		char what[256] = "";
		if (spec->describe)
			spec->describe(ctx, &cfg, what, sizeof(what));
		flare_config_warnings(&cfg, warn_stderr, (void *)spec->name);
		printf("%s: ok (%s)\n", path, what);
		flare_config_free(&cfg);
		return 0;
	}
	if (daemon_setup(spec->name, fg) < 0) {
		flare_config_free(&cfg);
		return 1;
	}
	flare_config_warnings(&cfg, warn_log, NULL);
	if (!cfg.auth)
		log_warn("%s sets no auth_key_file: control connections are not authenticated, "
			 "anyone who reaches the manager's port can steer clients",
			 path);
	struct event_base *base = event_base_new();
	if (!base || spec->start(ctx, base) < 0) {
		/* what did start stays: stopping a half-started daemon could
		 * remove what another one owns (a socket path it failed to take) */
		log_error("cannot start");
		return 1;
	}
	struct event **sigs = daemon_signals(base);
	struct reload_ctx rl = {spec, ctx, path, &cfg, 0};
	struct event *hup = evsignal_new(base, SIGHUP, on_hup, &rl);
	if (hup)
		event_add(hup, NULL);
	/* the config's parse tree was freed: give its pages back (on a
	 * 30,000-replica config, most of a daemon's memory at rest) */
	malloc_trim(0);
	notify_ready();
	event_base_dispatch(base);
	if (hup)
		event_free(hup);
	daemon_signals_free(sigs);
	spec->stop(ctx);
	event_base_free(base);
	flare_config_free(rl.cur);
	if (rl.cur_heap)
		free(rl.cur);
	return 0;
}

/* Connections to a metrics listener, at most METRICS_MAX_CONNS at once and
 * each at most METRICS_LIFETIME_S old, whatever it sends: evhttp (2.1)
 * has no such bound of its own, and its timeout restarts with every byte.
 * Each connection's bufferevent is made here (evhttp_set_bevcb) and held
 * by one more reference, so it can be looked at after evhttp is done
 * with it: evhttp cleared its callbacks then. A connection over a bound
 * is shut down, and evhttp closes it as it would any. */
#define METRICS_MAX_HEADERS 8192
#define METRICS_TIMEOUT_S 5
#define METRICS_MAX_CONNS 64
#define METRICS_LIFETIME_S 10

struct metrics_conn {
	struct bufferevent *bev;
	uint64_t born_ns;
};

struct metrics_guard {
	struct metrics_conn conns[METRICS_MAX_CONNS];
	int n;
	struct event *sweep;
};

static int conn_done(const struct metrics_conn *mc)
{
	bufferevent_data_cb rd = NULL;
	bufferevent_getcb(mc->bev, &rd, NULL, NULL, NULL);
	return rd == NULL && bufferevent_getfd(mc->bev) >= 0;
}

/* Forgets the connections evhttp is done with; shuts down those too old. */
static void metrics_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_guard *g = arg;
	uint64_t now = flare_monotonic_ns();
	(void)fd;
	(void)what;
	for (int i = 0; i < g->n;) {
		struct metrics_conn *mc = &g->conns[i];
		if (conn_done(mc)) {
			bufferevent_decref(mc->bev); /* the last reference: closed now */
			g->conns[i] = g->conns[--g->n];
			continue;
		}
		if (now - mc->born_ns > METRICS_LIFETIME_S * 1000000000ull &&
		    bufferevent_getfd(mc->bev) >= 0)
			shutdown(bufferevent_getfd(mc->bev), SHUT_RDWR);
		i++;
	}
}

/* Ends a connection over the bound once evhttp has given it its socket. */
static void metrics_refuse(evutil_socket_t fd, short what, void *arg)
{
	struct bufferevent *bev = arg;
	(void)fd;
	(void)what;
	if (bufferevent_getfd(bev) >= 0)
		shutdown(bufferevent_getfd(bev), SHUT_RDWR);
	bufferevent_decref(bev);
}

static struct bufferevent *metrics_bev(struct event_base *base, void *arg)
{
	struct metrics_guard *g = arg;
	metrics_sweep(-1, 0, g);
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		return NULL;
	if (g->n >= METRICS_MAX_CONNS) {
		/* over the bound: evhttp gets it, sets its descriptor, and the
		 * next sweep (right away) ends it */
		static uint64_t last_warn;
		uint64_t now = flare_monotonic_ns();
		if (now - last_warn > 1000000000ull) {
			last_warn = now;
			log_warn("metrics: %d connections open, refusing more", METRICS_MAX_CONNS);
		}
		bufferevent_incref(bev);
		struct timeval zero = {0, 0};
		if (event_base_once(base, -1, EV_TIMEOUT, metrics_refuse, bev, &zero) < 0)
			bufferevent_decref(bev);
		return bev;
	}
	bufferevent_incref(bev);
	g->conns[g->n++] = (struct metrics_conn){bev, flare_monotonic_ns()};
	return bev;
}

static int metrics_cap(struct event_base *base, struct evhttp *h)
{
	/* lives as long as the daemon: one per listener, made once */
	struct metrics_guard *g = calloc(1, sizeof(*g));
	if (!g)
		return -1;
	g->sweep = event_new(base, -1, EV_PERSIST, metrics_sweep, g);
	struct timeval tv = {1, 0};
	if (!g->sweep || event_add(g->sweep, &tv) < 0) {
		free(g);
		return -1;
	}
	evhttp_set_bevcb(h, metrics_bev, g);
	return 0;
}

struct evhttp *metrics_listen(struct event_base *base, const struct flare_addr *a,
			      void (*cb)(struct evhttp_request *, void *), void *arg)
{
	char ip[FLARE_ADDR_STRLEN], text[FLARE_ADDR_STRLEN];
	flare_addr_format(a, text, sizeof(text));
	/* evhttp binds a host and a port: the address without its port */
	snprintf(ip, sizeof(ip), "%s", text[0] == '[' ? text + 1 : text);
	char *cut = strrchr(ip, text[0] == '[' ? ']' : ':');
	if (cut)
		*cut = '\0';
	struct evhttp *h = evhttp_new(base);
	if (!h || evhttp_bind_socket(h, ip, a->port) < 0) {
		log_error("metrics: cannot listen on %s", text);
		if (h)
			evhttp_free(h);
		return NULL;
	}
	evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	/* a scrape is one small GET: anything bigger or slower is not one */
	evhttp_set_max_headers_size(h, METRICS_MAX_HEADERS);
	evhttp_set_max_body_size(h, 0);
	evhttp_set_timeout(h, METRICS_TIMEOUT_S);
	if (metrics_cap(base, h) < 0) {
		evhttp_free(h);
		return NULL;
	}
	evhttp_set_cb(h, "/metrics", cb, arg);
	log_info("metrics on http://%s/metrics", text);
	return h;
}
