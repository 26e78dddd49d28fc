#include "hook.h"

FLARE_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	HOOK_ENTER(send, (ssize_t)syscall(SYS_sendto, fd, buf, len, flags, NULL, 0));
	struct fconn *fc = fdtab_get(fd);
	if (!fc)
		return real.send(fd, buf, len, flags);
	return flare_send_managed(fc, fd, buf, len, flags);
}

/* A destination on a connected stream socket is ignored by the kernel (or
 * refused): the bytes that go out are a write like any other, recorded. */
FLARE_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
			    const struct sockaddr *to, socklen_t tolen)
{
	HOOK_ENTER(sendto, (ssize_t)syscall(SYS_sendto, fd, buf, len, flags, to, tolen));
	struct fconn *fc = fdtab_get(fd);
	if (!fc)
		return real.sendto(fd, buf, len, flags, to, tolen);
	return flare_sendto_managed(fc, fd, buf, len, flags, to, tolen);
}

/* msg_name and control data (SO_TIMESTAMPING, SO_MARK...) go to the
 * kernel with the bytes; the bytes are recorded as any write's. */
FLARE_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	HOOK_ENTER(sendmsg, (ssize_t)syscall(SYS_sendmsg, fd, msg, flags));
	struct fconn *fc = fdtab_get(fd);
	if (!fc || !msg || iov_args_bad(msg->msg_iov, (long)msg->msg_iovlen))
		return real.sendmsg(fd, msg, flags);
	return flare_sendmsg_managed(fc, fd, msg, flags);
}
