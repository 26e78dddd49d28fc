#include "hook.h"

#include <stdarg.h>
#include <sys/ioctl.h>

/* Only the file flags matter (nginx sets non-blocking mode with FIONBIO):
 * a per-request connection reads them again. */
FLARE_EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	HOOK_ENTER(ioctl, (int)syscall(SYS_ioctl, fd, req, arg));
	int r = real.ioctl(fd, req, arg);
	struct fconn *fc;
	if (r == 0 && req == FIONBIO)
		fdtab_flags_set(fd, arg && *(const int *)arg);
	if (r == 0 && (req == FIONBIO || req == FIOCLEX || req == FIONCLEX || req == FIOASYNC) &&
	    (fc = fdtab_get(fd))) {
		__atomic_store_n(&fc->rb.flags_dirty, 1,
				 __ATOMIC_RELEASE); /* per-request switches */
		fd_flags_changed(fc);
	}
	return r;
}
