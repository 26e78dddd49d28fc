/* libFuzzer target for the config loader: arbitrary text must load or be
 * refused with a FILE:LINE: reason, never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[256];
	struct flare_config c;
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (flare_config_load_string(text, "fuzz.conf", &c, err, sizeof(err)) == 0)
		flare_config_free(&c);
	else if (strncmp(err, "fuzz.conf:", 10) != 0)
		abort();
	free(text);
	return 0;
}
