#include "config.h"
#include "config_keys.h"

#include <libconfig.h>
#include <stdarg.h>
#include <uthash.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <pwd.h>
#include <sys/stat.h>

/* Names and addresses seen so far, so duplicate checks stay O(1) on the
 * 30,000-replica configs the benchmarks load. */
struct seen {
	char key[FLARE_NAME_MAX + 2];
	const char *what; /* "host", "service", "replica" */
	int line;
	int index;
	UT_hash_handle hh;
};

struct loader {
	const char *file;
	char *err;
	size_t errlen;
	int failed;
	struct seen *names; /* key: kind letter + name */
	struct seen *addrs; /* key: the 20 address bytes */
};

static int fail(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error only: later ones are usually consequences. */
static int fail(struct loader *ld, int line, const char *fmt, ...)
{
	if (ld->failed++)
		return -1;
	int n = snprintf(ld->err, ld->errlen, "%s:%d: ", ld->file, line);
	if (n < 0 || (size_t)n >= ld->errlen)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static void seen_key(struct seen *probe, char kind, const void *key, size_t keylen)
{
	memset(probe->key, 0, sizeof(probe->key));
	probe->key[0] = kind;
	memcpy(probe->key + 1, key,
	       keylen < sizeof(probe->key) - 1 ? keylen : sizeof(probe->key) - 1);
}

static struct seen *seen_find(struct seen *set, char kind, const void *key, size_t keylen)
{
	struct seen probe, *found;
	seen_key(&probe, kind, key, keylen);
	HASH_FIND(hh, set, probe.key, sizeof(probe.key), found);
	return found;
}

/* Returns the earlier entry with this key, or NULL after recording this one
 * (NULL with ld->failed set when out of memory). */
static struct seen *seen_check(struct loader *ld, struct seen **set, char kind, const void *key,
			       size_t keylen, int line, int index)
{
	struct seen *found = seen_find(*set, kind, key, keylen);
	if (found)
		return found;
	struct seen probe;
	seen_key(&probe, kind, key, keylen);
	struct seen *e = malloc(sizeof(*e));
	if (!e) {
		ld->failed++;
		return NULL;
	}
	memcpy(e->key, probe.key, sizeof(e->key));
	e->line = line;
	e->index = index;
	HASH_ADD(hh, *set, key, sizeof(e->key), e);
	return NULL;
}

static void seen_free(struct seen **set)
{
	struct seen *e, *tmp;
	HASH_ITER(hh, *set, e, tmp)
	{
		HASH_DEL(*set, e);
		free(e);
	}
}

static int line_of(const config_setting_t *s) { return s ? (int)config_setting_source_line(s) : 0; }

/* Rejects keys this version does not know: a typo must not silently fall
 * back to a default. */
/* Every member of a group is one of its own keys (allowed) or one of the
 * numeric keys of table group `keys_group`. */
static int check_keys(struct loader *ld, const config_setting_t *group, const char *what,
		      const char *keys_group, const char *const *allowed)
{
	int n = config_setting_length(group);
	for (int i = 0; i < n; i++) {
		const config_setting_t *m = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(m);
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (name && strcmp(name, *a) == 0)
				ok = 1;
		for (const struct config_key *k = flare_config_keys; k->name && keys_group; k++)
			if (name && strcmp(k->group, keys_group) == 0 && strcmp(name, k->name) == 0)
				ok = 1;
		if (!ok)
			return fail(ld, line_of(m), "unknown key '%s' in %s", name ? name : "?",
				    what);
	}
	return 0;
}

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP: return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a number";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	case CONFIG_TYPE_ARRAY: return "an array";
	case CONFIG_TYPE_LIST: return "a list";
	default: return "something else";
	}
}

/* Returns the member, NULL when absent (an error if required). */
static config_setting_t *member(struct loader *ld, const config_setting_t *group, const char *key,
				const char *what, int required)
{
	config_setting_t *m = config_setting_get_member(group, key);
	if (!m && required)
		fail(ld, line_of(group), "missing required key '%s' in %s", key, what);
	return m;
}

static int get_string(struct loader *ld, const config_setting_t *group, const char *key,
		      const char *what, int required, const char **out)
{
	config_setting_t *m = member(ld, group, key, what, required);
	if (!m)
		return required ? -1 : 0;
	if (config_setting_type(m) != CONFIG_TYPE_STRING)
		return fail(ld, line_of(m), "'%s' in %s must be a string, not %s", key, what,
			    type_name(config_setting_type(m)));
	*out = config_setting_get_string(m);
	return 0;
}

static int get_name(struct loader *ld, const config_setting_t *group, const char *what, char *out)
{
	const char *s = NULL;
	if (get_string(ld, group, "name", what, 1, &s) < 0)
		return -1;
	size_t n = strlen(s);
	if (n == 0 || n >= FLARE_NAME_MAX)
		return fail(ld, line_of(config_setting_get_member(group, "name")),
			    "%s name must be 1..%d characters", what, FLARE_NAME_MAX - 1);
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] == '"' || s[i] == '\\' || s[i] == 127)
			return fail(ld, line_of(config_setting_get_member(group, "name")),
				    "%s name '%s' has a space, quote or control character", what,
				    s);
	memcpy(out, s, n + 1);
	return 0;
}

static int get_int(struct loader *ld, const config_setting_t *group, const char *key,
		   const char *what, long long min, long long max, int *out)
{
	config_setting_t *m = member(ld, group, key, what, 0);
	if (!m)
		return 0;
	int t = config_setting_type(m);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
		return fail(ld, line_of(m), "'%s' in %s must be an integer, not %s", key, what,
			    type_name(t));
	long long v = config_setting_get_int64(m);
	if (v < min || v > max)
		return fail(ld, line_of(m), "'%s' in %s is %lld, outside %lld..%lld", key, what, v,
			    min, max);
	*out = (int)v;
	return 0;
}

static int get_number(struct loader *ld, const config_setting_t *group, const char *key,
		      const char *what, double min, double max, double *out)
{
	config_setting_t *m = member(ld, group, key, what, 0);
	if (!m)
		return 0;
	int t = config_setting_type(m);
	double v;
	if (t == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(m);
	else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
		v = (double)config_setting_get_int64(m);
	else
		return fail(ld, line_of(m), "'%s' in %s must be a number, not %s", key, what,
			    type_name(t));
	if (!(v >= min && v <= max))
		return fail(ld, line_of(m), "'%s' in %s is %g, outside %g..%g", key, what, v, min,
			    max);
	*out = v;
	return 0;
}

static int get_addr(struct loader *ld, const config_setting_t *group, const char *key,
		    const char *what, struct flare_addr *out)
{
	const char *s = NULL;
	const char *why;
	if (get_string(ld, group, key, what, 1, &s) < 0)
		return -1;
	if (flare_addr_parse(s, out, &why) < 0)
		return fail(ld, line_of(config_setting_get_member(group, key)),
			    "bad address '%s' in %s: %s", s, what, why);
	return 0;
}

static int get_group(struct loader *ld, const config_setting_t *parent, const char *key,
		     int required, config_setting_t **out)
{
	*out = member(ld, parent, key, "the top level", required);
	if (!*out)
		return required ? -1 : 0;
	if (config_setting_type(*out) != CONFIG_TYPE_GROUP)
		return fail(ld, line_of(*out), "'%s' must be a group { ... }, not %s", key,
			    type_name(config_setting_type(*out)));
	return 0;
}

static int get_list(struct loader *ld, const config_setting_t *parent, const char *key,
		    const char *what, config_setting_t **out)
{
	*out = member(ld, parent, key, what, 1);
	if (!*out)
		return -1;
	int t = config_setting_type(*out);
	if (t != CONFIG_TYPE_LIST && !(t == CONFIG_TYPE_ARRAY && config_setting_length(*out) == 0))
		return fail(ld, line_of(*out), "'%s' in %s must be a list ( ... ), not %s", key,
			    what, type_name(t));
	if (config_setting_length(*out) == 0)
		return fail(ld, line_of(*out), "'%s' in %s is empty", key, what);
	return 0;
}

/* The table's defaults for one group, into base (a flare_config, or a
 * flare_service_cfg for services[]). */
static void set_key_defaults(const char *group, void *base)
{
	for (const struct config_key *k = flare_config_keys; k->name; k++) {
		if (strcmp(k->group, group) != 0)
			continue;
		if (k->kind == KEY_INT)
			*(int *)((char *)base + k->offset) = (int)k->def;
		else
			*(double *)((char *)base + k->offset) = k->def;
	}
}

/* Every numeric key of the group that is present, bounds-checked. */
static int get_keys(struct loader *ld, const config_setting_t *g, const char *group,
		    const char *what, void *base)
{
	for (const struct config_key *k = flare_config_keys; k->name; k++) {
		if (strcmp(k->group, group) != 0)
			continue;
		void *at = (char *)base + k->offset;
		if (k->kind == KEY_INT
			? get_int(ld, g, k->name, what, (long long)k->min, (long long)k->max, at)
			: get_number(ld, g, k->name, what, k->min, k->max, at))
			return -1;
	}
	return 0;
}

static void set_defaults(struct flare_config *cfg)
{
	set_key_defaults("manager", cfg);
	set_key_defaults("monitor", cfg);
	set_key_defaults("agent", cfg);
	snprintf(cfg->agent_shm, sizeof(cfg->agent_shm), "/flare");
}

static int load_manager(struct loader *ld, const config_setting_t *root, struct flare_config *cfg)
{
	static const char *const keys[] = {"addresses", "metrics", NULL};
	config_setting_t *g, *addrs, *metrics;
	if (get_group(ld, root, "manager", 1, &g) < 0 ||
	    check_keys(ld, g, "manager", "manager", keys) < 0)
		return -1;
	addrs = member(ld, g, "addresses", "manager", 1);
	if (!addrs)
		return -1;
	int t = config_setting_type(addrs);
	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
		return fail(ld, line_of(addrs), "'addresses' in manager must be an array [ ... ]");
	int n = config_setting_length(addrs);
	if (n < 1 || n > FLARE_MAX_MANAGERS)
		return fail(ld, line_of(addrs), "manager needs 1..%d addresses, has %d",
			    FLARE_MAX_MANAGERS, n);
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(addrs, (unsigned)i);
		const char *s = config_setting_get_string(e);
		const char *why;
		if (!s)
			return fail(ld, line_of(e), "manager address %d must be a string", i + 1);
		if (flare_addr_parse(s, &cfg->managers[i], &why) < 0)
			return fail(ld, line_of(e), "bad address '%s' in manager: %s", s, why);
		for (int j = 0; j < i; j++)
			if (flare_addr_equal(&cfg->managers[i], &cfg->managers[j]))
				return fail(ld, line_of(e), "duplicate manager address '%s'", s);
	}
	cfg->n_managers = n;
	/* metrics: one HTTP address per manager, in the order of addresses */
	metrics = config_setting_get_member(g, "metrics");
	if (metrics) {
		t = config_setting_type(metrics);
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			return fail(ld, line_of(metrics),
				    "'metrics' in manager must be an array [ \"ADDR:PORT\", ... ]");
		int nm = config_setting_length(metrics);
		if (nm > n)
			return fail(ld, line_of(metrics),
				    "manager has %d metrics addresses for %d managers", nm, n);
		for (int i = 0; i < nm; i++) {
			config_setting_t *e = config_setting_get_elem(metrics, (unsigned)i);
			const char *s = config_setting_get_string(e);
			const char *why;
			if (!s)
				return fail(ld, line_of(e), "metrics address %d must be a string",
					    i + 1);
			if (flare_addr_parse(s, &cfg->manager_metrics[i], &why) < 0)
				return fail(ld, line_of(e), "bad metrics address '%s': %s", s, why);
		}
		cfg->n_manager_metrics = nm;
	}
	if (get_keys(ld, g, "manager", "manager", cfg))
		return -1;
	if (cfg->heartbeat_timeout_ms <= cfg->heartbeat_interval_ms)
		return fail(
		    ld, line_of(g),
		    "heartbeat_timeout_ms (%d) must be longer than heartbeat_interval_ms (%d)",
		    cfg->heartbeat_timeout_ms, cfg->heartbeat_interval_ms);
	return 0;
}

static int load_monitor_agent(struct loader *ld, const config_setting_t *root,
			      struct flare_config *cfg)
{
	static const char *const mkeys[] = {NULL};
	static const char *const akeys[] = {"shm", "metrics", "user", NULL};
	config_setting_t *g;
	if (get_group(ld, root, "monitor", 0, &g) < 0)
		return -1;
	if (g && (check_keys(ld, g, "monitor", "monitor", mkeys) ||
		  get_keys(ld, g, "monitor", "monitor", cfg)))
		return -1;
	if (get_group(ld, root, "agent", 0, &g) < 0)
		return -1;
	if (!g)
		return 0;
	const char *shm = NULL, *metrics = NULL, *user = NULL;
	if (check_keys(ld, g, "agent", "agent", akeys) ||
	    get_string(ld, g, "shm", "agent", 0, &shm) ||
	    get_string(ld, g, "user", "agent", 0, &user) ||
	    get_string(ld, g, "metrics", "agent", 0, &metrics) ||
	    get_keys(ld, g, "agent", "agent", cfg))
		return -1;
	const char *why;
	if (metrics && flare_addr_parse(metrics, &cfg->agent_metrics, &why) < 0)
		return fail(ld, line_of(config_setting_get_member(g, "metrics")),
			    "bad metrics address '%s' in agent: %s", metrics, why);
	if (shm) {
		if (shm[0] != '/' || strchr(shm + 1, '/') || strlen(shm) < 2 ||
		    strlen(shm) >= sizeof(cfg->agent_shm))
			return fail(ld, line_of(config_setting_get_member(g, "shm")),
				    "shm name '%s' must be /NAME (no other slash, under %zu chars)",
				    shm, sizeof(cfg->agent_shm));
		snprintf(cfg->agent_shm, sizeof(cfg->agent_shm), "%s", shm);
	}
	if (user) {
		/* resolved where it is used (the agent's host, flare-run) */
		if (!*user || strlen(user) >= sizeof(cfg->agent_user))
			return fail(ld, line_of(config_setting_get_member(g, "user")),
				    "agent.user '%s' must be a user name under %zu chars", user,
				    sizeof(cfg->agent_user));
		snprintf(cfg->agent_user, sizeof(cfg->agent_user), "%s", user);
		cfg->agent_user_line = line_of(config_setting_get_member(g, "user"));
	}
	return 0;
}

static int parse_util(struct loader *ld, int line, const char *s, struct flare_host_cfg *h)
{
	if (strcmp(s, "proc") == 0) {
		h->util_kind = FLARE_UTIL_PROC;
		return 0;
	}
	const char *arg = NULL;
	if (strncmp(s, "cgroup:", 7) == 0) {
		h->util_kind = FLARE_UTIL_CGROUP;
		arg = s + 7;
	} else if (strncmp(s, "file:", 5) == 0) {
		h->util_kind = FLARE_UTIL_FILE;
		arg = s + 5;
	} else {
		return fail(ld, line,
			    "unknown utilization source '%s' (proc | cgroup:PATH | file:PATH)", s);
	}
	if (!*arg || strlen(arg) >= sizeof(h->util_arg))
		return fail(ld, line, "utilization source '%s' needs a path under %zu chars", s,
			    sizeof(h->util_arg));
	snprintf(h->util_arg, sizeof(h->util_arg), "%s", arg);
	return 0;
}

static int load_hosts(struct loader *ld, const config_setting_t *root, struct flare_config *cfg)
{
	static const char *const keys[] = {"name", "utilization", "monitor_socket", NULL};
	config_setting_t *list;
	if (get_list(ld, root, "hosts", "the top level", &list) < 0)
		return -1;
	int n = config_setting_length(list);
	if (n <= 0)
		return -1;
	cfg->hosts = calloc((size_t)n, sizeof(*cfg->hosts));
	if (!cfg->hosts)
		return fail(ld, 0, "out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		struct flare_host_cfg *h = &cfg->hosts[i];
		const char *util = "proc", *sock = NULL;
		h->line = line_of(e);
		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			return fail(ld, h->line, "host %d must be a group { ... }", i + 1);
		if (check_keys(ld, e, "host", NULL, keys) || get_name(ld, e, "host", h->name) ||
		    get_string(ld, e, "utilization", "host", 0, &util) ||
		    get_string(ld, e, "monitor_socket", "host", 0, &sock))
			return -1;
		struct seen *dup =
		    seen_check(ld, &ld->names, 'h', h->name, strlen(h->name), h->line, i);
		if (dup)
			return fail(ld, h->line, "duplicate host name '%s' (first at line %d)",
				    h->name, dup->line);
		if (parse_util(ld, line_of(config_setting_get_member(e, "utilization")) ?: h->line,
			       util, h) < 0)
			return -1;
		if (sock && (!*sock || strlen(sock) >= sizeof(h->monitor_socket)))
			return fail(ld, h->line, "monitor_socket must be 1..%zu characters",
				    sizeof(h->monitor_socket) - 1);
		/* abstract UNIX socket by default: nothing to clean up, no stale
		 * file; named after the deployment's table as well as the host, so
		 * two deployments on one machine never share one */
		int len = sock ? snprintf(h->monitor_socket, sizeof(h->monitor_socket), "%s", sock)
			       : snprintf(h->monitor_socket, sizeof(h->monitor_socket),
					  "@flare-monitor%s-%s", cfg->agent_shm, h->name);
		if (len < 0 || (size_t)len >= sizeof(h->monitor_socket))
			return fail(ld, h->line,
				    "host '%s': the default monitor_socket name is too long for "
				    "agent.shm '%s' (set monitor_socket)",
				    h->name, cfg->agent_shm);
		cfg->n_hosts++;
	}
	return 0;
}

static int load_replica(struct loader *ld, config_setting_t *e, struct flare_config *cfg, int svc)
{
	static const char *const keys[] = {"name", "host", "address", "load", "capacity", NULL};
	struct flare_replica_cfg *r = &cfg->replicas[cfg->n_replicas];
	const char *host = NULL;
	r->line = line_of(e);
	r->service = svc;
	if (config_setting_type(e) != CONFIG_TYPE_GROUP)
		return fail(ld, r->line, "replica must be a group { ... }");
	if (check_keys(ld, e, "replica", NULL, keys) || get_name(ld, e, "replica", r->name) ||
	    get_string(ld, e, "host", "replica", 1, &host) ||
	    get_addr(ld, e, "address", "replica", &r->addr) ||
	    get_number(ld, e, "load", "replica", 0.0, 1.0, &r->load) ||
	    get_number(ld, e, "capacity", "replica", 0.0, 1e9, &r->capacity))
		return -1;
	struct seen *h = seen_find(ld->names, 'h', host, strlen(host));
	r->host = h ? h->index : -1;
	if (r->host < 0)
		return fail(ld, line_of(config_setting_get_member(e, "host")),
			    "replica '%s' is on undeclared host '%s'", r->name, host);
	struct seen *dup =
	    seen_check(ld, &ld->names, 'r', r->name, strlen(r->name), r->line, cfg->n_replicas);
	if (dup)
		return fail(ld, r->line, "duplicate replica name '%s' (first at line %d)", r->name,
			    dup->line);
	dup = seen_check(ld, &ld->addrs, 'r', &r->addr, sizeof(r->addr), r->line, cfg->n_replicas);
	if (dup)
		return fail(ld, r->line,
			    "duplicate address: replica '%s' has the address of replica '%s'",
			    r->name, cfg->replicas[dup->index].name);
	cfg->n_replicas++;
	return 0;
}

static int load_service(struct loader *ld, config_setting_t *e, struct flare_config *cfg)
{
	static const char *const keys[] = {"name",    "address",  "strategy", "failover",
					   "replay",  "replicas", "protocol", "replay_unsafe",
					   "balance", "binding",  NULL};
	int idx = cfg->n_services;
	struct flare_service_cfg *s = &cfg->services[idx];
	const char *strategy = NULL, *failover = NULL, *replay = NULL, *protocol = NULL;
	const char *balance = NULL, *binding = NULL;
	config_setting_t *reps, *unsafe;

	s->line = line_of(e);
	set_key_defaults("services[]", s);
	s->primary = -1;
	if (config_setting_type(e) != CONFIG_TYPE_GROUP)
		return fail(ld, s->line, "service must be a group { ... }");
	if (check_keys(ld, e, "service", "services[]", keys) ||
	    get_name(ld, e, "service", s->name) ||
	    get_addr(ld, e, "address", "service", &s->addr) ||
	    get_string(ld, e, "strategy", "service", 0, &strategy) ||
	    get_string(ld, e, "failover", "service", 0, &failover) ||
	    get_string(ld, e, "replay", "service", 0, &replay) ||
	    get_string(ld, e, "protocol", "service", 0, &protocol) ||
	    get_string(ld, e, "balance", "service", 0, &balance) ||
	    get_string(ld, e, "binding", "service", 0, &binding) ||
	    get_keys(ld, e, "services[]", "service", s))
		return -1;
	struct seen *dup = seen_check(ld, &ld->names, 's', s->name, strlen(s->name), s->line, idx);
	if (dup)
		return fail(ld, s->line, "duplicate service name '%s' (first at line %d)", s->name,
			    dup->line);
	dup = seen_check(ld, &ld->addrs, 's', &s->addr, sizeof(s->addr), s->line, idx);
	if (dup)
		return fail(ld, s->line,
			    "duplicate address: service '%s' has the address of service '%s'",
			    s->name, cfg->services[dup->index].name);
	s->strategy = strategy ? flare_strategy_parse(strategy) : FLARE_STRATEGY_LEAST_LOADED;
	if (s->strategy < 0)
		return fail(ld, line_of(config_setting_get_member(e, "strategy")),
			    "unknown strategy '%s' (static | least-loaded)", strategy);
	s->failover = failover ? flare_failover_parse(failover) : FLARE_FAILOVER_PROACTIVE;
	if (s->failover < 0)
		return fail(ld, line_of(config_setting_get_member(e, "failover")),
			    "unknown failover '%s' (proactive | reactive | static)", failover);
	s->replay = replay ? flare_replay_parse(replay) : FLARE_REPLAY_AUTO;
	if (s->replay < 0)
		return fail(ld, line_of(config_setting_get_member(e, "replay")),
			    "unknown replay '%s' (auto | request-reply | none)", replay);
	s->protocol = protocol ? flare_protocol_parse(protocol) : FLARE_PROTO_AUTO;
	if (s->protocol < 0)
		return fail(ld, line_of(config_setting_get_member(e, "protocol")),
			    "unknown protocol '%s' (auto | redis | http | memcached | opaque)",
			    protocol);
	s->balance = balance ? flare_balance_parse(balance) : FLARE_BALANCE_PRIMARY;
	if (s->balance < 0)
		return fail(ld, line_of(config_setting_get_member(e, "balance")),
			    "unknown balance '%s' (primary | round-robin | random | least-loaded | "
			    "headroom)",
			    balance);
	s->binding = binding ? flare_binding_parse(binding) : FLARE_BINDING_SESSION;
	if (s->binding < 0)
		return fail(ld, line_of(config_setting_get_member(e, "binding")),
			    "unknown binding '%s' (session | on-demand | request)", binding);
	unsafe = config_setting_get_member(e, "replay_unsafe");
	if (unsafe && config_setting_type(unsafe) != CONFIG_TYPE_BOOL)
		return fail(ld, line_of(unsafe),
			    "'replay_unsafe' in service must be true or false");
	s->replay_unsafe = unsafe ? config_setting_get_bool(unsafe) : 0;
	if (get_list(ld, e, "replicas", "service", &reps) < 0)
		return -1;
	int n = config_setting_length(reps);
	if (n > FLARE_MAX_REPLICAS)
		return fail(ld, line_of(reps), "service '%s' has %d replicas, at most %d", s->name,
			    n, FLARE_MAX_REPLICAS);
	s->first_replica = cfg->n_replicas;
	s->n_replicas = n;
	for (int i = 0; i < n; i++) {
		if (load_replica(ld, config_setting_get_elem(reps, (unsigned)i), cfg, idx) < 0)
			return -1;
		if (flare_addr_equal(&cfg->replicas[cfg->n_replicas - 1].addr, &s->addr))
			s->primary = cfg->n_replicas - 1;
	}
	cfg->n_services++;
	return 0;
}

/* A service's address may be one of its own replicas (the primary) but not
 * another service's replica: the library could not tell what was dialed. */
static int check_cross_addresses(struct loader *ld, struct flare_config *cfg)
{
	for (int i = 0; i < cfg->n_services; i++) {
		struct flare_service_cfg *s = &cfg->services[i];
		struct seen *r = seen_find(ld->addrs, 'r', &s->addr, sizeof(s->addr));
		if (r && cfg->replicas[r->index].service != i)
			return fail(ld, s->line,
				    "duplicate address: service '%s' has the address of replica "
				    "'%s' of another service",
				    s->name, cfg->replicas[r->index].name);
	}
	return 0;
}

static int load_services(struct loader *ld, const config_setting_t *root, struct flare_config *cfg)
{
	config_setting_t *list;
	if (get_list(ld, root, "services", "the top level", &list) < 0)
		return -1;
	int n = config_setting_length(list);
	size_t total = 0;
	if (n <= 0)
		return -1;
	for (int i = 0; i < n; i++) {
		config_setting_t *reps = config_setting_get_member(
		    config_setting_get_elem(list, (unsigned)i), "replicas");
		total += reps ? (size_t)config_setting_length(reps) : 0;
	}
	cfg->services = calloc((size_t)n, sizeof(*cfg->services));
	cfg->replicas = calloc(total + 1, sizeof(*cfg->replicas));
	if (!cfg->services || !cfg->replicas)
		return fail(ld, 0, "out of memory");
	for (int i = 0; i < n; i++)
		if (load_service(ld, config_setting_get_elem(list, (unsigned)i), cfg) < 0)
			return -1;
	return check_cross_addresses(ld, cfg);
}

/* auth_key_file: a relative path is relative to the config file's folder,
 * so a deployment's files can move together. The key itself is read by
 * auth_config_key (the daemons and flarectl), not here. */
static int load_auth(struct loader *ld, const config_setting_t *root, struct flare_config *cfg)
{
	const char *s = NULL;
	if (get_string(ld, root, "auth_key_file", "the top level", 0, &s) < 0 || !s)
		return ld->failed ? -1 : 0;
	cfg->auth_key_line = line_of(config_setting_get_member(root, "auth_key_file"));
	if (!s[0])
		return fail(ld, cfg->auth_key_line, "auth_key_file is empty");
	const char *slash = strrchr(ld->file, '/');
	int dir = s[0] == '/' || !slash ? 0 : (int)(slash - ld->file + 1);
	if ((size_t)snprintf(cfg->auth_key_file, sizeof(cfg->auth_key_file), "%.*s%s", dir,
			     ld->file, s) >= sizeof(cfg->auth_key_file))
		return fail(ld, cfg->auth_key_line, "auth_key_file path is too long");
	return 0;
}

/* library = { log = "stderr" | "syslog"; }: what flare-run tells the
 * library it preloads (FLARE_LOG_TARGET) */
static int load_library(struct loader *ld, const config_setting_t *root, struct flare_config *cfg)
{
	static const char *const keys[] = {"log", NULL};
	config_setting_t *g;
	const char *log = NULL;
	if (get_group(ld, root, "library", 0, &g) < 0)
		return -1;
	if (!g)
		return 0;
	if (check_keys(ld, g, "library", "library", keys) ||
	    get_string(ld, g, "log", "library", 0, &log))
		return -1;
	if (log && strcmp(log, "stderr") != 0 && strcmp(log, "syslog") != 0)
		return fail(ld, line_of(config_setting_get_member(g, "log")),
			    "library.log '%s' must be \"stderr\" or \"syslog\"", log);
	cfg->library_syslog = log && strcmp(log, "syslog") == 0;
	return 0;
}

static int load_root(struct loader *ld, config_t *lc, struct flare_config *cfg)
{
	static const char *const keys[] = {"manager",  "monitor",       "agent",   "hosts",
					   "services", "auth_key_file", "library", NULL};
	const config_setting_t *root = config_root_setting(lc);
	set_defaults(cfg);
	if (check_keys(ld, root, "the top level", NULL, keys) || load_auth(ld, root, cfg) ||
	    load_manager(ld, root, cfg) || load_monitor_agent(ld, root, cfg) ||
	    load_library(ld, root, cfg) || load_hosts(ld, root, cfg) ||
	    load_services(ld, root, cfg))
		return -1;
	return 0;
}

/* Why a file cannot be read: missing, not allowed, not a file */
static const char *unreadable(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return errno == ENOENT ? "no such file" : strerror(errno);
	if (S_ISDIR(st.st_mode))
		return "a directory, not a file";
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == EACCES ? "permission denied" : strerror(errno);
	fclose(f);
	return "cannot read the file";
}

/* libconfig reports an unclosed group as a syntax error on the line past
 * the last: is line past the end of the file? (0 for a string) */
static int past_the_end(const char *path, int line)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int lines = 0, c, last = '\n';
	while ((c = getc(f)) != EOF) {
		lines += c == '\n';
		last = c;
	}
	fclose(f);
	return line > lines + (last != '\n');
}

/* The names' index a loaded config keeps (flare_config_*_index): open
 * addressing over 32-bit slots, kind in the top two bits and index + 1
 * below, the names themselves compared in the config's arrays. A tenth of
 * the loader's hash entries' size: it lives as long as the daemon. */
struct name_index {
	uint32_t mask;
	uint32_t slot[];
};

static uint32_t name_hash(char kind, const char *name)
{
	uint32_t h = 2166136261u ^ (uint8_t)kind;
	h *= 16777619u;
	for (; *name; name++) {
		h ^= (uint8_t)*name;
		h *= 16777619u;
	}
	return h;
}

static const char *name_at(const struct flare_config *cfg, uint32_t kind, uint32_t i)
{
	return kind == 0   ? cfg->hosts[i].name
	       : kind == 1 ? cfg->services[i].name
			   : cfg->replicas[i].name;
}

static int kind_code(char kind) { return kind == 'h' ? 0 : kind == 's' ? 1 : 2; }

static void index_put(struct name_index *x, char kind, const char *name, uint32_t i)
{
	uint32_t at = name_hash(kind, name) & x->mask;
	while (x->slot[at])
		at = (at + 1) & x->mask;
	x->slot[at] = (uint32_t)kind_code(kind) << 30 | (i + 1);
}

static struct name_index *index_build(const struct flare_config *cfg)
{
	size_t n = (size_t)cfg->n_hosts + (size_t)cfg->n_services + (size_t)cfg->n_replicas,
	       size = 8;
	while (size < 2 * n)
		size *= 2;
	struct name_index *x = calloc(1, sizeof(*x) + size * sizeof(uint32_t));
	if (!x)
		return NULL;
	x->mask = (uint32_t)size - 1;
	for (int i = 0; i < cfg->n_hosts; i++)
		index_put(x, 'h', cfg->hosts[i].name, (uint32_t)i);
	for (int i = 0; i < cfg->n_services; i++)
		index_put(x, 's', cfg->services[i].name, (uint32_t)i);
	for (int i = 0; i < cfg->n_replicas; i++)
		index_put(x, 'r', cfg->replicas[i].name, (uint32_t)i);
	return x;
}

static int index_find(const struct flare_config *cfg, char kind, const char *name)
{
	const struct name_index *x = cfg->name_index;
	if (!x)
		return -1;
	uint32_t k = (uint32_t)kind_code(kind);
	for (uint32_t at = name_hash(kind, name) & x->mask; x->slot[at]; at = (at + 1) & x->mask) {
		uint32_t v = x->slot[at], i = (v & 0x3fffffffu) - 1;
		if (v >> 30 == k && strcmp(name_at(cfg, k, i), name) == 0)
			return (int)i;
	}
	return -1;
}

static int load_common(config_t *lc, int read_ok, const char *name, struct flare_config *cfg,
		       char *err, size_t errlen)
{
	struct loader ld = {.file = name, .err = err, .errlen = errlen};
	int rc;
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->path, sizeof(cfg->path), "%s", name);
	if (!read_ok) {
		if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
			fail(&ld, 0, "%s", unreadable(name));
		else if (past_the_end(name, config_error_line(lc)))
			fail(&ld, config_error_line(lc),
			     "the file ends inside a group or list: a '}' or ')' is missing");
		else
			fail(&ld, config_error_line(lc), "syntax error: %s", config_error_text(lc));
		rc = -1;
	} else {
		rc = load_root(&ld, lc, cfg);
		if (ld.failed)
			rc = -1;
	}
	seen_free(&ld.names);
	if (rc == 0 && !(cfg->name_index = index_build(cfg))) {
		fail(&ld, 0, "out of memory");
		rc = -1;
	}
	seen_free(&ld.addrs);
	config_destroy(lc);
	if (rc < 0)
		flare_config_free(cfg);
	return rc;
}

int flare_config_warnings(const struct flare_config *cfg, void (*warn)(void *arg, const char *line),
			  void *arg)
{
	char line[1536]; /* a path, names and the sentence: never cut */
	int n = 0;
	for (int i = 0; i < cfg->n_services; i++) {
		const struct flare_service_cfg *s = &cfg->services[i];
		if (s->binding == FLARE_BINDING_SESSION ||
		    s->replay == FLARE_REPLAY_REQUEST_REPLY ||
		    (s->protocol != FLARE_PROTO_OPAQUE && s->protocol != FLARE_PROTO_AUTO))
			continue;
		snprintf(
		    line, sizeof(line),
		    "%s:%d: warning: service '%s': binding '%s' moves a connection only between "
		    "requests it can tell apart; %s connection is a session after its first "
		    "reply (set protocol, or replay = \"request-reply\" if every request "
		    "stands alone)",
		    cfg->path, s->line, s->name, flare_binding_name(s->binding),
		    s->protocol == FLARE_PROTO_OPAQUE ? "an opaque"
						      : "unless its first bytes are Redis, HTTP "
							"or memcached, a");
		warn(arg, line);
		n++;
	}
	if (cfg->agent_user[0] && !getpwnam(cfg->agent_user)) {
		snprintf(line, sizeof(line), "%s:%d: warning: agent.user '%s': no such user here",
			 cfg->path, cfg->agent_user_line, cfg->agent_user);
		warn(arg, line);
		n++;
	}
	for (int i = 0; i < cfg->n_hosts; i++) {
		const struct flare_host_cfg *h = &cfg->hosts[i];
		if (h->util_kind != FLARE_UTIL_FILE || access(h->util_arg, R_OK) == 0)
			continue;
		snprintf(line, sizeof(line),
			 "%s:%d: warning: host '%s': utilization file %s: %s (its monitor reports "
			 "nothing until it can)",
			 cfg->path, h->line, h->name, h->util_arg, strerror(errno));
		warn(arg, line);
		n++;
	}
	return n;
}

int flare_config_load(const char *path, struct flare_config *cfg, char *err, size_t errlen)
{
	config_t lc;
	config_init(&lc);
	int ok = config_read_file(&lc, path) == CONFIG_TRUE;
	return load_common(&lc, ok, path, cfg, err, errlen);
}

/* The client side's part of a config that fails validation elsewhere (a
 * service's typo): the agent keeps serving the table of its last good
 * config, so flare-run still finds it by agent.shm, agent.user and
 * library.log when those three are valid. */
static int load_client_part(config_t *lc, const char *path, struct flare_config *cfg)
{
	char err[512];
	struct loader ld = {.file = path, .err = err, .errlen = sizeof(err)};
	const config_setting_t *root = config_root_setting(lc);
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->path, sizeof(cfg->path), "%s", path);
	set_defaults(cfg);
	int rc = load_monitor_agent(&ld, root, cfg) || load_library(&ld, root, cfg) ? -1 : 0;
	if (rc < 0 || ld.failed)
		flare_config_free(cfg);
	return rc < 0 || ld.failed ? -1 : 0;
}

int flare_config_load_client(const char *path, struct flare_config *cfg, char *err, size_t errlen)
{
	if (flare_config_load(path, cfg, err, errlen) == 0)
		return 0;
	config_t lc;
	config_init(&lc);
	int rc = -1;
	if (config_read_file(&lc, path) == CONFIG_TRUE && load_client_part(&lc, path, cfg) == 0)
		rc = 1;
	config_destroy(&lc);
	return rc;
}

int flare_config_load_string(const char *text, const char *name, struct flare_config *cfg,
			     char *err, size_t errlen)
{
	config_t lc;
	config_init(&lc);
	int ok = config_read_string(&lc, text) == CONFIG_TRUE;
	return load_common(&lc, ok, name, cfg, err, errlen);
}

void flare_config_free(struct flare_config *cfg)
{
	free(cfg->name_index);
	cfg->name_index = NULL;
	free(cfg->hosts);
	free(cfg->services);
	free(cfg->replicas);
	cfg->hosts = NULL;
	cfg->services = NULL;
	cfg->replicas = NULL;
	cfg->n_hosts = cfg->n_services = cfg->n_replicas = 0;
}

static int index_of(const struct flare_config *cfg, char kind, const char *name)
{
	if (!name || strlen(name) >= FLARE_NAME_MAX)
		return -1;
	return index_find(cfg, kind, name);
}

int flare_config_host_index(const struct flare_config *cfg, const char *name)
{
	return index_of(cfg, 'h', name);
}

int flare_config_service_index(const struct flare_config *cfg, const char *name)
{
	return index_of(cfg, 's', name);
}

int flare_config_replica_index(const struct flare_config *cfg, const char *name)
{
	return index_of(cfg, 'r', name);
}
