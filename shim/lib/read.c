#include "hook.h"

extern void __chk_fail(void) __attribute__((noreturn));

/* read(2) is the hottest call there is (files, pipes, terminals): one
 * array load decides it is none of our business. */
FLARE_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	HOOK_ENTER(read, (ssize_t)syscall(SYS_read, fd, buf, len));
	struct fconn *fc = fdtab_get(fd);
	if (!fc)
		return real.read(fd, buf, len);
	ssize_t n = flare_recv_managed(fc, fd, buf, len, 0);
	if (n < 0 && errno == ENOTSOCK)
		return real.read(fd, buf, len); /* not a socket any more: forgotten */
	return n;
}

FLARE_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	HOOK_ENTER(readv, (ssize_t)syscall(SYS_readv, fd, iov, iovcnt));
	struct fconn *fc = fdtab_get(fd);
	if (!fc || iov_args_bad(iov, iovcnt))
		return real.readv(fd, iov, iovcnt);
	ssize_t n = flare_readv_managed(fc, fd, iov, iovcnt);
	if (n < 0 && errno == ENOTSOCK)
		return real.readv(fd, iov, iovcnt);
	return n;
}

FLARE_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		__chk_fail();
	return read(fd, buf, len);
}
