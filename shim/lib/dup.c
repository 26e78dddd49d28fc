#include "hook.h"

/* A duplicate of a managed descriptor names the same connection: a heal
 * lands on every number. dup2/dup3 onto a managed descriptor closes it. */
int flare_after_dup(int oldfd, int newfd)
{
	if (newfd >= 0 && newfd != oldfd)
		fdtab_set_opts(newfd, fdtab_opts(oldfd));
	if (newfd >= 0 && newfd != oldfd &&
	    (fdtab_get(oldfd) || fdtab_get(newfd) || register_knows(newfd)) &&
	    !flare_in_foreign_child()) {
		register_forget_fd(newfd);
		fdtab_alias(oldfd, newfd);
	}
	return newfd;
}

FLARE_EXPORT int dup(int fd)
{
	HOOK_ENTER(dup, (int)syscall(SYS_dup, fd));
	return flare_after_dup(fd, real.dup(fd));
}

FLARE_EXPORT int dup2(int oldfd, int newfd)
{
	HOOK_ENTER(dup2, (int)syscall(SYS_dup3, oldfd, newfd, 0));
	return flare_after_dup(oldfd, real.dup2(oldfd, newfd));
}

FLARE_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	HOOK_ENTER(dup3, (int)syscall(SYS_dup3, oldfd, newfd, flags));
	return flare_after_dup(oldfd, real.dup3(oldfd, newfd, flags));
}
