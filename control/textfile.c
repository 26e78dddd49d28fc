#include "textfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

char *flare_read_text(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *text = NULL;
	size_t cap = 0;
	ssize_t n = getdelim(&text, &cap, '\0', f); /* to the end: configs hold no NUL */
	int err = errno;
	fclose(f);
	if (n < 0) {
		free(text);
		errno = err;
		return NULL;
	}
	if (len)
		*len = (size_t)n;
	return text;
}
