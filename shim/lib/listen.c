#include "hook.h"

/* Server side: listening on a replica's address registers the process with
 * its host's monitor; accepts retry a registration that could not be made
 * yet (the monitor's probes produce accepts). */
FLARE_EXPORT int listen(int fd, int backlog)
{
	HOOK_ENTER(listen, (int)syscall(SYS_listen, fd, backlog));
	int r = real.listen(fd, backlog);
	if (r == 0 && !flare_disabled)
		register_listen(fd);
	return r;
}

FLARE_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	HOOK_ENTER(accept, (int)syscall(SYS_accept4, fd, addr, len, 0));
	int r = real.accept(fd, addr, len);
	if (r >= 0)
		fdtab_fresh(r, 0);
	register_retry();
	return r;
}

FLARE_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	HOOK_ENTER(accept4, (int)syscall(SYS_accept4, fd, addr, len, flags));
	int r = real.accept4(fd, addr, len, flags);
	if (r >= 0)
		fdtab_fresh(r, 0);
	register_retry();
	return r;
}
