#include "hook.h"

#include <stdio.h>

/* libc's own name for fdopen (the same function): the call before the
 * real symbols are known, or if they cannot be */
extern FILE *_IO_fdopen(int fd, const char *mode);

/* stdio reads and writes its FILE through glibc's internal calls, which
 * no hook sees: a managed socket handed to stdio is tainted (a failure on
 * it surfaces as without the library; its connect was failed over). */
FLARE_EXPORT FILE *fdopen(int fd, const char *mode)
{
	HOOK_ENTER(fdopen, _IO_fdopen(fd, mode));
	fconn_taint(fd, "fdopen (stdio)");
	return real.fdopen(fd, mode);
}
