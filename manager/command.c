/* Operators' commands (flarectl): drain and undrain a replica, health,
 * the drain marks (for the other managers, intent.c) and the config in
 * use. A drained replica gets no new bindings and no failover while any
 * other replica of its service lives (the library orders it after them),
 * and on-demand services move its connections off at request boundaries
 * (its fair share is zero). The mark outlives this manager (intent.c). */
#include "manager.h"

#include "clock.h"
#include "log.h"
#include "textfile.h"

#include <sodium.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* "NAME WHAT" (or "WHAT" when name is NULL), malloc'd */
static char *answer(const char *name, const char *what)
{
	size_t n = (name ? strlen(name) + 1 : 0) + strlen(what) + 1;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s%s%s", name ? name : "", name ? " " : "", what);
	return s;
}

/* Whether this manager's picture is whole: it heard every host's monitor
 * and every service has a live replica that is not drained. */
static char *health(struct manager *m, int *ok)
{
	const struct flare_config *c = m->cfg;
	char buf[1024] = "";
	size_t n = 0;
	if (!m->warm)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "catching up (agents held); ");
	for (int h = 0; h < c->n_hosts && n < sizeof(buf) - 64; h++)
		if (!m->hosts[h].alive)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "host %s dead; ",
					      c->hosts[h].name);
	for (int s = 0; s < c->n_services && n < sizeof(buf) - 64; s++) {
		int live = 0;
		for (int r = c->services[s].first_replica;
		     r < c->services[s].first_replica + c->services[s].n_replicas; r++)
			live += m->reps[r].alive && !m->reps[r].drained &&
				m->hosts[c->replicas[r].host].alive;
		if (!live)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,
					      "service %s has no live replica; ",
					      c->services[s].name);
	}
	*ok = n == 0;
	if (n >= 2)
		buf[n - 2] = '\0';
	return answer(NULL, *ok ? "healthy" : buf);
}

/* the file's bytes, malloc'd, with their hash */
static char *read_config(const char *path, uint8_t hash[32])
{
	size_t n;
	char *text = flare_read_text(path, &n);
	if (text)
		crypto_generichash(hash, 32, (const unsigned char *)text, n, NULL, 0);
	return text;
}

void manager_note_config(struct manager *m)
{
	char *text = read_config(m->cfg->path, m->op.cfg_hash);
	m->op.cfg_hashed = text != NULL;
	m->op.cfg_loaded_ns = flare_realtime_ns();
	free(text);
}

char *manager_config_text(const struct manager *m, int *changed)
{
	uint8_t now[32];
	char *text = read_config(m->cfg->path, now);
	*changed = !text || !m->op.cfg_hashed || memcmp(now, m->op.cfg_hash, sizeof(now)) != 0;
	if (*changed) {
		free(text);
		return NULL;
	}
	return text;
}

/* "# manager N: PATH as loaded at TIME" then the file's text, while the
 * file is still the one loaded */
static char *config_in_use(const struct manager *m, int *ok)
{
	char when[64];
	time_t t = (time_t)(m->op.cfg_loaded_ns / 1000000000u);
	struct tm tm;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	int changed;
	char *text = manager_config_text(m, &changed);
	size_t n = (text ? strlen(text) : 0) + strlen(m->cfg->path) + 256;
	char *s = malloc(n);
	if (s && text)
		snprintf(s, n, "# manager %d: %s as loaded at %s\n%s", m->id, m->cfg->path, when,
			 text);
	else if (s)
		snprintf(s, n,
			 "manager %d: %s has changed since it was loaded at %s: the config in use "
			 "is no longer on disk (reload to use the file, or put the old one back)",
			 m->id, m->cfg->path, when);
	*ok = text != NULL;
	free(text);
	return s;
}

/* text is the word verb, alone or followed by a space */
static int is_verb(const char *text, const char *verb)
{
	size_t n = strlen(verb);
	return text && strncmp(text, verb, n) == 0 && (text[n] == ' ' || !text[n]);
}

char *command_run(struct manager *m, const char *text, int *ok)
{
	char verb[16], name[FLARE_NAME_MAX + 1], why[512];
	unsigned long long stamp = 0;
	*ok = 0;
	if (is_verb(text, "health"))
		return health(m, ok);
	if (is_verb(text, "intent")) {
		*ok = 1;
		return intent_dump(m);
	}
	if (is_verb(text, "config"))
		return config_in_use(m, ok);
	int drain = 0;
	/* flarectl stamps its command (the same time at every manager) */
	if (!text || sscanf(text, "%15s %32s %llu", verb, name, &stamp) < 2 ||
	    strlen(name) >= FLARE_NAME_MAX ||
	    (!(drain = strcmp(verb, "drain") == 0) && strcmp(verb, "undrain") != 0))
		return answer(
		    NULL, "unknown command (drain NAME | undrain NAME | health | config | intent)");
	int r = flare_config_replica_index(m->cfg, name);
	if (r < 0)
		return answer(name, "is no replica of this deployment");
	*ok = 1;
	int was = m->reps[r].drained;
	if (intent_record(m, r, drain, stamp, why, sizeof(why)) < 0) {
		log_warn("replica %s %s, not saved: %s", name, drain ? "drained" : "undrained",
			 why);
		char what[600];
		snprintf(what, sizeof(what), "%s, until this manager restarts (not saved: %s)",
			 drain ? "drained" : "undrained", why);
		if (was != drain)
			state_rerank(m, drain ? "drain" : "undrain");
		return answer(name, what);
	}
	if (was == drain)
		return answer(name, drain ? "was drained already" : "was not drained");
	log_info("replica %s %s by an operator", name, drain ? "drained" : "undrained");
	state_rerank(m, drain ? "drain" : "undrain");
	return answer(name, drain ? "drained" : "undrained");
}
