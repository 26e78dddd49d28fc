#include "hook.h"

#include <string.h>

/* A managed connection reports the address the program dialed, whichever
 * replica serves it: the program's view never changes. */
FLARE_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
	HOOK_ENTER(getpeername, (int)syscall(SYS_getpeername, fd, addr, len));
	struct fconn *fc = fdtab_get(fd);
	if (!fc || !addr || !len)
		return real.getpeername(fd, addr, len);
	socklen_t cap = *len;
	int r = real.getpeername(fd, addr, len); /* ENOTCONN while connecting */
	if (r < 0 || !proof_identity(fc, fd))
		return r; /* another socket on the number now: its own peer */
	memcpy(addr, &fc->dial.dialed_sa, cap < fc->dial.dialed_len ? cap : fc->dial.dialed_len);
	*len = fc->dial.dialed_len;
	return 0;
}
