#include "hook.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>

/* The third argument is an int or a pointer; both travel in the same
 * register, so it is forwarded as a pointer-sized value. */
static int do_fcntl(int (*fn)(int, int, ...), int fd, int cmd, void *arg)
{
	int r = fn(fd, cmd, arg);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return fdtab_after_dup(fd, r);
	struct fconn *fc;
	if (cmd == F_SETFL && r == 0)
		fdtab_flags_set(fd, ((int)(intptr_t)arg & O_NONBLOCK) != 0);
	if ((cmd == F_SETFL || cmd == F_SETFD) && r == 0 && (fc = fdtab_get(fd))) {
		__atomic_store_n(&fc->rb.flags_dirty, 1,
				 __ATOMIC_RELEASE); /* per-request switches */
		fd_flags_changed(fc);
	}
	return r;
}

FLARE_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	HOOK_ENTER(fcntl, (int)syscall(SYS_fcntl, fd, cmd, arg));
	return do_fcntl(real.fcntl, fd, cmd, arg);
}

/* glibc >= 2.28 with 64-bit offsets (CPython always) calls fcntl64 */
FLARE_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	HOOK_ENTER(fcntl, (int)syscall(SYS_fcntl, fd, cmd, arg));
	return do_fcntl(real.fcntl64 ? real.fcntl64 : real.fcntl, fd, cmd, arg);
}
