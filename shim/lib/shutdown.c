#include "hook.h"

/* A program that half-closes after its request (HTTP/1.0 style) expects
 * the half-close on whichever connection serves it: remembered, and
 * repeated on a replacement after the replay. */
FLARE_EXPORT int shutdown(int fd, int how)
{
	HOOK_ENTER(shutdown, (int)syscall(SYS_shutdown, fd, how));
	struct fconn *fc = fdtab_get(fd);
	if (fc && (how == SHUT_WR || how == SHUT_RDWR))
		__atomic_store_n(&fc->ex.shut_wr, 1, __ATOMIC_RELEASE);
	return real.shutdown(fd, how);
}
