/* Operators' intent that outlives a manager: drains.
 *
 * Each replica's drain mark carries the wall-clock time of the operator's
 * command that set it (flarectl stamps it, so every manager records the
 * same time). The marks are kept in STATE_DIR/manager-N.drains, rewritten
 * whole (temporary file, fsync, rename) on every change, and read back at
 * start. Managers agree the way a last-writer-wins register does: flarectl
 * sends every command to every manager, and a manager that starts asks the
 * other managers for their marks and keeps, per replica, the latest. A
 * manager that was down or cut off when a command went out catches up when
 * it starts; while it runs cut off, flarectl says it did not reach it. */
#include "manager.h"

#include "authcall.h"
#include "clock.h"
#include "log.h"
#include "textfile.h"

#include <sodium.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PEER_TIMEOUT_MS 300 /* per peer manager, at start only */

static const struct fw_io plain_io = {connect, send, recv, poll, getsockopt};

/* Applies one mark if it is newer than the one held; 1 when it changed. */
static int apply(struct manager *m, int r, int drained, uint64_t stamp)
{
	struct mreplica *q = &m->reps[r];
	if (stamp <= q->drain_stamp)
		return 0;
	q->drain_stamp = stamp;
	if (q->drained == drained)
		return 0;
	q->drained = drained;
	return 1;
}

/* "NAME drained|undrained STAMP" lines of every replica an operator
 * touched (the answer to the "intent" command, and the file's body) */
char *intent_dump(const struct manager *m)
{
	size_t cap = 64, n = 0;
	for (int r = 0; r < m->cfg->n_replicas; r++)
		cap += m->reps[r].drain_stamp ? FLARE_NAME_MAX + 40 : 0;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	s[0] = '\0';
	for (int r = 0; r < m->cfg->n_replicas; r++)
		if (m->reps[r].drain_stamp)
			n += (size_t)snprintf(s + n, cap - n, "%s %s %llu\n",
					      m->cfg->replicas[r].name,
					      m->reps[r].drained ? "drained" : "undrained",
					      (unsigned long long)m->reps[r].drain_stamp);
	return s;
}

/* Merges lines as intent_dump writes them; where names the source for
 * messages. Returns how many marks changed. */
static int merge(struct manager *m, const char *text, const char *where)
{
	int changed = 0, line = 0;
	while (text && *text) {
		const char *end = strchr(text, '\n');
		size_t len = end ? (size_t)(end - text) : strlen(text);
		char buf[FLARE_NAME_MAX + 64], name[FLARE_NAME_MAX + 1], state[16];
		unsigned long long stamp;
		line++;
		if (len && text[0] != '#') {
			snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) ? len : 0),
				 text);
			int r = -1;
			if (len >= sizeof(buf) ||
			    sscanf(buf, "%32s %15s %llu", name, state, &stamp) != 3 ||
			    (strcmp(state, "drained") != 0 && strcmp(state, "undrained") != 0) ||
			    !stamp)
				log_warn("%s:%d: not \"NAME drained|undrained STAMP\": ignored",
					 where, line);
			else if ((r = flare_config_replica_index(m->cfg, name)) < 0)
				log_info("%s:%d: %s is no replica of this config: its mark dropped",
					 where, line, name);
			else
				changed += apply(m, r, strcmp(state, "drained") == 0, stamp);
		}
		text = end ? end + 1 : "";
	}
	return changed;
}

/* Writes the marks: a temporary file, fsync'd, renamed over the old one. */
static int save(const struct manager *m, char *why, size_t n)
{
	char tmp[sizeof(m->op.intent_path) + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", m->op.intent_path);
	char *body = intent_dump(m);
	int fd = body ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640) : -1;
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	int ok = f &&
		 fprintf(f, "# flare-manager %d: operators' drains (NAME STATE STAMP_NS)\n%s",
			 m->id, body) > 0 &&
		 fflush(f) == 0 && fsync(fd) == 0;
	int err = errno;
	if (f)
		fclose(f);
	else if (fd >= 0)
		close(fd);
	free(body);
	if (ok && rename(tmp, m->op.intent_path) == 0)
		return 0;
	snprintf(why, n, "%s: %s", ok ? m->op.intent_path : tmp, strerror(ok ? errno : err));
	unlink(tmp);
	return -1;
}

int intent_record(struct manager *m, int r, int drained, uint64_t stamp, char *why, size_t n)
{
	if (!stamp)
		stamp = flare_realtime_ns();
	if (stamp <= m->reps[r].drain_stamp)
		stamp = m->reps[r].drain_stamp + 1; /* an operator's latest word wins here */
	apply(m, r, drained, stamp);                /* newer than the mark held: it applies */
	if (!m->op.intent_path[0])
		return 0;
	return save(m, why, n);
}

/* One peer manager's marks, over an operator's connection. */
static char *ask_peer(const struct manager *m, const struct flare_addr *a, const char **why)
{
	struct auth_key key;
	char err[256];
	int refused;
	if (m->cfg->auth &&
	    auth_key_for(m->cfg->auth, FW_ROLE_CTL, "", &key, err, sizeof(err)) < 0) {
		*why = "cannot derive an operator's key";
		return NULL;
	}
	char *text = authcall_ask(&plain_io, a, m->cfg->auth ? &key : NULL, FW_COMMAND, 0, "intent",
				  PEER_TIMEOUT_MS, why, &refused);
	sodium_memzero(&key, sizeof(key));
	if (text && refused) {
		free(text);
		*why = "it refused (an older manager?)";
		return NULL;
	}
	return text;
}

void intent_start(struct manager *m, const char *state_dir)
{
	char why[512];
	if (state_dir && *state_dir) {
		snprintf(m->op.intent_path, sizeof(m->op.intent_path), "%s/manager-%d.drains",
			 state_dir, m->id);
		char *text = flare_read_text(m->op.intent_path, NULL);
		if (text) {
			int n = merge(m, text, m->op.intent_path);
			free(text);
			log_info("%s: %d drained replica(s) restored", m->op.intent_path, n);
		} else if (errno != ENOENT) {
			log_warn("%s: %s: drains start empty", m->op.intent_path, strerror(errno));
		}
	} else {
		log_info("no state directory (--state-dir, $STATE_DIRECTORY): drains last as "
			 "long as this manager");
	}
	int changed = 0;
	for (int i = 0; i < m->cfg->n_managers; i++) {
		if (i + 1 == m->id)
			continue;
		char a[FLARE_ADDR_STRLEN], where[FLARE_ADDR_STRLEN + 16];
		const char *err = "cannot connect";
		flare_addr_format(&m->cfg->managers[i], a, sizeof(a));
		char *text = ask_peer(m, &m->cfg->managers[i], &err);
		if (!text) {
			log_info("manager %s: %s: its drains not merged", a, err);
			continue;
		}
		snprintf(where, sizeof(where), "manager %s", a);
		int n = merge(m, text, where);
		free(text);
		if (n)
			log_info("manager %s: %d drain mark(s) newer than ours taken", a, n);
		changed += n;
	}
	if (changed && m->op.intent_path[0] && save(m, why, sizeof(why)) < 0)
		log_warn("drains not saved: %s", why);
}
