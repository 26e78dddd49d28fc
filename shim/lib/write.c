#include "hook.h"

/* write(2) on a managed socket is send(2) without flags: same bytes, same
 * SIGPIPE, but the library sends with MSG_NOSIGNAL and raises SIGPIPE
 * itself only where it cannot heal. */
FLARE_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	HOOK_ENTER(write, (ssize_t)syscall(SYS_write, fd, buf, len));
	struct fconn *fc = fdtab_get(fd);
	if (!fc)
		return real.write(fd, buf, len);
	ssize_t n = flare_send_managed(fc, fd, buf, len, 0);
	if (n < 0 && errno == ENOTSOCK)
		return real.write(fd, buf, len); /* not a socket any more: forgotten */
	return n;
}

FLARE_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	HOOK_ENTER(writev, (ssize_t)syscall(SYS_writev, fd, iov, iovcnt));
	struct fconn *fc = fdtab_get(fd);
	if (!fc || iov_args_bad(iov, iovcnt))
		return real.writev(fd, iov, iovcnt);
	struct msghdr m = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
	ssize_t n = flare_sendmsg_managed(fc, fd, &m, 0);
	if (n < 0 && errno == ENOTSOCK)
		return real.writev(fd, iov, iovcnt);
	return n;
}
