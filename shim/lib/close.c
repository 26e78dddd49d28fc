#include "hook.h"

#include <linux/close_range.h>

FLARE_EXPORT int close(int fd)
{
	HOOK_ENTER(close, (int)syscall(SYS_close, fd));
	/* the pid check (a system call) only when there is state a vfork
	 * child must leave to its parent (it closes its own table's numbers):
	 * not for the kind bits socket() sets on every inet socket */
	int opts = fdtab_opts(fd);
	if ((fdtab_get(fd) || register_knows(fd) || (opts & ~FLARE_KIND_BITS)) &&
	    !flare_in_foreign_child()) {
		fdtab_clear_opts(fd);
		fdtab_detach(fd);
		register_forget_fd(fd);
	} else if (opts && !(opts & ~FLARE_KIND_BITS)) {
		fdtab_clear_opts(fd); /* (a vfork child's too: kinds, nothing set) */
	}
	return real.close(fd);
}

/* close_range(2): programs close every descriptor before exec (ssh, and
 * many daemons); managed ones in the range are forgotten. */
FLARE_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	HOOK_ENTER(close_range, (int)syscall(SYS_close_range, first, last, flags));
	if (!(flags & CLOSE_RANGE_CLOEXEC) && !flare_in_foreign_child()) {
		fdtab_detach_range(first, last);
		register_forget_range(first, last);
	}
	return real.close_range(first, last, flags);
}
