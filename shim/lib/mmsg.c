#include "hook.h"

#include <sys/socket.h>

/* Several messages a call: on a stream socket they are one byte stream
 * the library would have to record and frame message by message. It does
 * not: the connection is tainted first, and the call is the kernel's. */
FLARE_EXPORT int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
{
	HOOK_ENTER(sendmmsg, (int)syscall(SYS_sendmmsg, fd, v, n, flags));
	fconn_taint(fd, "sendmmsg");
	return real.sendmmsg(fd, v, n, flags);
}

FLARE_EXPORT int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *tmo)
{
	HOOK_ENTER(recvmmsg, (int)syscall(SYS_recvmmsg, fd, v, n, flags, tmo));
	fconn_taint(fd, "recvmmsg");
	return real.recvmmsg(fd, v, n, flags, tmo);
}
