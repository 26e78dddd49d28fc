#include "unixaddr.h"

#include <stddef.h>
#include <string.h>

socklen_t flare_unix_addr(const char *path, struct sockaddr_un *un)
{
	size_t n = strlen(path);
	memset(un, 0, sizeof(*un));
	un->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(un->sun_path))
		return 0;
	memcpy(un->sun_path, path, n);
	if (path[0] != '@')
		return (socklen_t)sizeof(*un);
	un->sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}
