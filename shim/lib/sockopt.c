#include "hook.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

/* Every option goes to the kernel as the program set it. The library
 * notes which ones were set (a replacement socket repeats them), and a
 * managed socket's SO_RCVTIMEO, which its blocking reads honour while they
 * wait in user space (io.c). */
FLARE_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	HOOK_ENTER(setsockopt, (int)syscall(SYS_setsockopt, fd, level, name, val, len));
	if (level == SOL_SOCKET && (name == SO_RCVBUF || name == SO_RCVBUFFORCE))
		fdtab_note_opt(fd, FLARE_BUF_RCV);
	else if (level == SOL_SOCKET && (name == SO_SNDBUF || name == SO_SNDBUFFORCE))
		fdtab_note_opt(fd, FLARE_BUF_SND);
	else if (level == SOL_SOCKET && name == SO_RCVTIMEO)
		fdtab_note_opt(fd, FLARE_SET_RCVTIMEO);
	else if (level == SOL_SOCKET && name == SO_KEEPALIVE)
		fdtab_note_opt(fd, FLARE_SET_KEEPALIVE);
	else if (level == IPPROTO_TCP && name == TCP_USER_TIMEOUT)
		fdtab_note_opt(fd, FLARE_SET_USER_TIMEOUT);
	int r = real.setsockopt(fd, level, name, val, len);
	struct fconn *fc;
	if (r == 0 && level == SOL_SOCKET && name == SO_RCVTIMEO && (fc = fdtab_get(fd))) {
		/* what the kernel took, as it will report it */
		struct timeval tv = {0, 0};
		socklen_t tl = sizeof(tv);
		if (real.getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &tl) == 0)
			fc->link.prog_rcvtimeo = tv;
	}
	return r;
}

/* SO_ERROR is read-and-clear: the library owes the program the error it
 * read itself when no replica was left; a failed attempt with replicas left
 * is replaced, and so is a failed established connection that can be
 * healed: the program reads 0, as it would have (nb_take_error). */
static int so_error(struct fconn *fc, int fd, void *val, socklen_t *len)
{
	int moved_on;
	int err = nb_take_error(fc, fd, 1, &moved_on);
	if (err < 0)
		return -1;
	memcpy(val, &err, sizeof(err));
	*len = sizeof(err);
	return 0;
}

FLARE_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	HOOK_ENTER(getsockopt, (int)syscall(SYS_getsockopt, fd, level, name, val, len));
	struct fconn *fc = fdtab_get(fd);
	if (fc && level == SOL_SOCKET && name == SO_ERROR && val && len && *len >= sizeof(int))
		return so_error(fc, fd, val, len);
	return real.getsockopt(fd, level, name, val, len);
}
