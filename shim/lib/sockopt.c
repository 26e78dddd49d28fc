#include "hook.h"

#include <string.h>

/* On a managed socket the kernel's SO_RCVTIMEO is the library's slice;
 * the program's value is kept and enforced by the library, and reported
 * back to the program unchanged. */
FLARE_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	HOOK_ENTER(setsockopt, (int)syscall(SYS_setsockopt, fd, level, name, val, len));
	if (level == SOL_SOCKET && (name == SO_RCVBUF || name == SO_RCVBUFFORCE))
		fdtab_note_bufset(fd, FLARE_BUF_RCV);
	else if (level == SOL_SOCKET && (name == SO_SNDBUF || name == SO_SNDBUFFORCE))
		fdtab_note_bufset(fd, FLARE_BUF_SND);
	struct fconn *fc = fdtab_get(fd);
	if (!fc || level != SOL_SOCKET || name != SO_RCVTIMEO || !val ||
	    len < (socklen_t)sizeof(struct timeval))
		return real.setsockopt(fd, level, name, val, len);
	struct timeval tv;
	memcpy(&tv, val, sizeof(tv));
	if (tv.tv_usec < 0 || tv.tv_usec >= 1000000) {
		errno = EDOM;
		return -1;
	}
	fc->prog_rcvtimeo = tv;
	dial_apply_flare_options(fc, fd);
	return 0;
}

FLARE_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	HOOK_ENTER(getsockopt, (int)syscall(SYS_getsockopt, fd, level, name, val, len));
	struct fconn *fc = fdtab_get(fd);
	if (!fc || level != SOL_SOCKET || name != SO_RCVTIMEO || !val || !len)
		return real.getsockopt(fd, level, name, val, len);
	socklen_t n = *len < (socklen_t)sizeof(fc->prog_rcvtimeo)
			  ? *len
			  : (socklen_t)sizeof(fc->prog_rcvtimeo);
	memcpy(val, &fc->prog_rcvtimeo, n);
	*len = n;
	return 0;
}
