/* The numeric configuration keys: one table with each key's group, bounds,
 * default and meaning. The loader reads and bounds-checks every key from it
 * and takes its defaults from it; the library's own fallbacks are the
 * macros in flare.h that the table uses; a unit test checks that README.md
 * documents every key with this default and range. Keys that are not
 * numbers (addresses, names, enumerations) are the loader's own. */
#ifndef FLARE_CONFIG_KEYS_H
#define FLARE_CONFIG_KEYS_H

#include <stddef.h>

enum config_key_kind { KEY_INT, KEY_NUMBER };

struct config_key {
	const char *group; /* "manager", "monitor", "agent" or "services[]" */
	const char *name;
	int kind;
	double min, max, def;
	size_t offset; /* into struct flare_config, or flare_service_cfg for services[] */
	const char *doc;
};

/* Ends with an entry whose name is NULL. */
extern const struct config_key flare_config_keys[];

#endif
