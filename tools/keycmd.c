#include "flarectl.h"

#include "auth.h"
#include "config.h"
#include "wire.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

int cmd_key(const struct flare_config *cfg, const char *role_name, const char *host)
{
	struct auth_key secret, k;
	char err[512], text[256];
	int role = auth_role_parse(role_name);
	if (role < 0 || (role == FW_ROLE_MONITOR) != (host != NULL)) {
		fprintf(stderr, "flarectl: key monitor HOST | key agent | key operator\n");
		return 2;
	}
	if (role == FW_ROLE_MONITOR && flare_config_host_index(cfg, host) < 0) {
		fprintf(stderr, "flarectl: %s: no host named '%s'\n", cfg->path, host);
		return 1;
	}
	int keyed = auth_config_key(cfg, &secret, err, sizeof(err));
	if (keyed <= 0 || secret.role != 0) {
		fprintf(stderr, "flarectl: %s\n",
			keyed < 0    ? err
			: keyed == 0 ? "the config sets no auth_key_file"
				     : "auth_key_file holds a role key, not the secret");
		return 1;
	}
	int rc = auth_key_for(&secret, role, host ? host : "", &k, err, sizeof(err)) < 0 ||
		 auth_key_format(&k, text, sizeof(text)) < 0;
	if (!rc)
		fputs(text, stdout);
	sodium_memzero(&secret, sizeof(secret));
	sodium_memzero(&k, sizeof(k));
	sodium_memzero(text, sizeof(text));
	return rc;
}
