#include "hook.h"

/* A duplicate of a managed descriptor names the same connection
 * (fdtab_after_dup). */
FLARE_EXPORT int dup(int fd)
{
	HOOK_ENTER(dup, (int)syscall(SYS_dup, fd));
	return fdtab_after_dup(fd, real.dup(fd));
}

FLARE_EXPORT int dup2(int oldfd, int newfd)
{
	HOOK_ENTER(dup2, (int)syscall(SYS_dup3, oldfd, newfd, 0));
	return fdtab_after_dup(oldfd, real.dup2(oldfd, newfd));
}

FLARE_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	HOOK_ENTER(dup3, (int)syscall(SYS_dup3, oldfd, newfd, flags));
	return fdtab_after_dup(oldfd, real.dup3(oldfd, newfd, flags));
}
