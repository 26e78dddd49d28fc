#include "hook.h"

#include <sys/sendfile.h>

/* The kernel copies a file into the socket: the library never sees those
 * bytes, so a replay would lack them. The connection is tainted first
 * (before any byte can move), then the call is the kernel's. */
FLARE_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	HOOK_ENTER(sendfile, (ssize_t)syscall(SYS_sendfile, out, in, off, count));
	fconn_taint(out, "sendfile");
	return real.sendfile(out, in, off, count);
}

FLARE_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t count)
{
	HOOK_ENTER(sendfile64, (ssize_t)syscall(SYS_sendfile, out, in, off, count));
	fconn_taint(out, "sendfile");
	return real.sendfile64(out, in, off, count);
}
