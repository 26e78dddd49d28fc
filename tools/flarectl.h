/* flarectl's verbs that live in their own files */
#ifndef FLARECTL_H
#define FLARECTL_H

struct flare_config;

/* flarectl segments: NAME's shared-memory segments, stale ones removed
 * with remove_stale; exit code */
int cmd_segments(const char *shm, int remove_stale);
/* flarectl key ROLE [HOST]: a role's key from the config's secret, on
 * stdout as a key file's text; exit code */
int cmd_key(const struct flare_config *cfg, const char *role, const char *host);

#endif
