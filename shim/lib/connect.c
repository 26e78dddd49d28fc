#include "hook.h"

#include <sys/stat.h>

/* A second connect on a managed descriptor (hiredis and others learn the
 * outcome this way): a failed attempt with replicas left is still in
 * progress, one with none left reports its error; otherwise the kernel's
 * socket is connected (or connecting) to a replica, not to the address
 * dialed again, so the answer is for the connection the program knows. */
static int connect_again(struct fconn *fc, int fd)
{
	int moved_on;
	int err = nb_take_error(fc, fd, 0, &moved_on);
	if (moved_on || err <= 0) {
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		errno = !moved_on && real.getpeername(fd, (struct sockaddr *)&peer, &pl) == 0
			    ? EISCONN
			    : EALREADY;
		return -1;
	}
	errno = err;
	return -1;
}

/* connect(2): the one place a descriptor becomes managed. Everything not a
 * stream socket to a service address in a healthy table goes through as
 * it is, after one hash lookup. */
FLARE_EXPORT int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	HOOK_ENTER(connect, (int)syscall(SYS_connect, fd, sa, len));
	struct flare_addr dst;
	struct flare_route rt;
	if (flare_disabled || !sa || flare_addr_from_sockaddr(sa, len, &dst) < 0)
		return real.connect(fd, sa, len);
	struct fconn *known = fdtab_get(fd);
	if (known) /* a number reused by a new socket was forgotten in socket() */
		return connect_again(known, fd);

	/* no vfork-child check here: such a child may only exec or _exit */
	if (route_lookup(&dst, &rt) != FLARE_TBL_OK)
		return real.connect(fd, sa, len);
	int type = SOCK_STREAM;
	socklen_t tl = sizeof(type);
	if (!(fdtab_opts(fd) & FLARE_INET_STREAM) &&
	    (real.getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM))
		return real.connect(fd, sa, len);
	return dial_managed(fd, type, sa, len, &dst, &rt);
}

/* A descriptor number reused by a new socket: whatever the library knew of
 * that number (a socket closed where no hook saw it, inside glibc) is
 * forgotten here, before the program can connect it. */
FLARE_EXPORT int socket(int domain, int type, int protocol)
{
	HOOK_ENTER(socket, (int)syscall(SYS_socket, domain, type, protocol));
	int fd = real.socket(domain, type, protocol);
	if (fd >= 0) {
		/* what connect() would otherwise ask the kernel (SO_TYPE, F_GETFL) */
		int stream = (domain == AF_INET || domain == AF_INET6) &&
			     (type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) == SOCK_STREAM;
		fdtab_fresh(fd, stream ? FLARE_INET_STREAM | FLARE_FL_KNOWN |
					     (type & SOCK_NONBLOCK ? FLARE_FL_NONBLOCK : 0)
				       : 0);
	}
	return fd;
}
