#include "hook.h"

extern void __chk_fail(void) __attribute__((noreturn));

FLARE_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	HOOK_ENTER(recv, (ssize_t)syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL));
	struct fconn *fc = fdtab_get(fd);
	if (!fc)
		return real.recv(fd, buf, len, flags);
	return flare_recv_managed(fc, fd, buf, len, flags);
}

FLARE_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
			      socklen_t *fromlen)
{
	HOOK_ENTER(recvfrom, (ssize_t)syscall(SYS_recvfrom, fd, buf, len, flags, from, fromlen));
	struct fconn *fc = fdtab_get(fd);
	if (!fc)
		return real.recvfrom(fd, buf, len, flags, from, fromlen);
	if (!from || !fromlen || (flags & MSG_ERRQUEUE))
		return flare_recv_managed(fc, fd, buf, len, flags);
	struct iovec iov = {buf, len};
	struct msghdr m = {
	    .msg_name = from, .msg_namelen = *fromlen, .msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n = flare_recvmsg_managed(fc, fd, &m, flags);
	if (n >= 0)
		*fromlen = m.msg_namelen;
	return n;
}

FLARE_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	HOOK_ENTER(recvmsg, (ssize_t)syscall(SYS_recvmsg, fd, msg, flags));
	struct fconn *fc = fdtab_get(fd);
	if (!fc || !msg || iov_args_bad(msg->msg_iov, (long)msg->msg_iovlen))
		return real.recvmsg(fd, msg, flags);
	return flare_recvmsg_managed(fc, fd, msg, flags);
}

/* _FORTIFY_SOURCE entry points (Debian builds curl and wget fortified) */
FLARE_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		__chk_fail();
	return recv(fd, buf, len, flags);
}

FLARE_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
				    struct sockaddr *from, socklen_t *fromlen)
{
	if (len > buflen)
		__chk_fail();
	return recvfrom(fd, buf, len, flags, from, fromlen);
}
