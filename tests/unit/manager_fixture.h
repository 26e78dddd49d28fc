/* A manager's state built from a config string, for the manager's unit
 * tests (no sockets, no event loop): each test file defines `conf` and
 * uses setup/teardown as cmocka fixtures. */
#ifndef FLARE_MANAGER_FIXTURE_H
#define FLARE_MANAGER_FIXTURE_H

#include "manager.h"

#include <stdio.h>
#include <stdlib.h>

struct fixture {
	struct flare_config cfg;
	struct manager m;
};

static const char *conf;

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];
	if (!f || flare_config_load_string(conf, "test", &f->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "config: %s\n", err);
		return -1;
	}
	f->m.cfg = &f->cfg;
	if (state_init(&f->m) < 0)
		return -1;
	state_rerank(&f->m, "start"); /* everything dead until monitors report */
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	state_free(&f->m);
	flare_config_free(&f->cfg);
	free(f);
	return 0;
}

#endif
