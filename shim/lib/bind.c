#include "hook.h"

/* Only noted: a socket the program bound is bound the same way when the
 * library replaces it (read back with getsockname at connect time). */
FLARE_EXPORT int bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	HOOK_ENTER(bind, (int)syscall(SYS_bind, fd, sa, len));
	int r = real.bind(fd, sa, len);
	if (r == 0 && sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
		fdtab_note_opt(fd, FLARE_SET_BIND);
	return r;
}
