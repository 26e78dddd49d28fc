/* A whole file as text, for the daemons' and tools' small files (a
 * config shown to an operator, a manager's saved drains). */
#ifndef FLARE_TEXTFILE_H
#define FLARE_TEXTFILE_H

#include <stddef.h>

/* path's bytes, NUL-terminated and malloc'd, their count in *len (may be
 * NULL); NULL with errno set when it cannot be read. */
char *flare_read_text(const char *path, size_t *len);

#endif
