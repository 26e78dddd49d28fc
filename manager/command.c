/* Operators' commands (flarectl): drain and undrain a replica. A drained
 * replica gets no new bindings and no failover while any other replica of
 * its service lives (the library orders it after them), and on-demand
 * services move its connections off at request boundaries (its fair share
 * is zero). The mark lives in this manager's memory: flarectl sends it to
 * every manager, and a restarted manager starts with none. */
#include "manager.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

char *command_run(struct manager *m, const char *text, int *ok)
{
	char verb[16], name[FLARE_NAME_MAX + 1];
	*ok = 0;
	if (text && strncmp(text, "health", 6) == 0 && (text[6] == ' ' || !text[6]))
		return health(m, ok);
	int drain = 0;
	if (!text || sscanf(text, "%15s %32s", verb, name) != 2 || strlen(name) >= FLARE_NAME_MAX ||
	    (!(drain = strcmp(verb, "drain") == 0) && strcmp(verb, "undrain") != 0))
		return answer(NULL, "unknown command (drain NAME | undrain NAME | health)");
	int r = flare_config_replica_index(m->cfg, name);
	if (r < 0)
		return answer(name, "is no replica of this deployment");
	*ok = 1;
	if (m->reps[r].drained == drain)
		return answer(name, drain ? "was drained already" : "was not drained");
	m->reps[r].drained = drain;
	log_info("replica %s %s by an operator", name, drain ? "drained" : "undrained");
	state_rerank(m, drain ? "drain" : "undrain");
	return answer(name, drain ? "drained" : "undrained");
}
