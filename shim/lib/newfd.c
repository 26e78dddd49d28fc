#include "hook.h"

/* Calls that make descriptors without dialing anything: the numbers they
 * return may be ones a managed socket had before glibc closed it where no
 * hook saw (closefrom, fclose of an fdopen'ed socket). What the library
 * knew of those numbers is forgotten before the program can use them
 * (socket() and accept() do the same in their own files). */
static void fresh_pair(int r, const int *fds)
{
	if (r == 0) {
		fdtab_fresh(fds[0], 0);
		fdtab_fresh(fds[1], 0);
	}
}

FLARE_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
	HOOK_ENTER(socketpair, (int)syscall(SYS_socketpair, domain, type, protocol, sv));
	int r = real.socketpair(domain, type, protocol, sv);
	fresh_pair(r, sv);
	return r;
}

FLARE_EXPORT int pipe(int fds[2])
{
	HOOK_ENTER(pipe, (int)syscall(SYS_pipe2, fds, 0));
	int r = real.pipe(fds);
	fresh_pair(r, fds);
	return r;
}

FLARE_EXPORT int pipe2(int fds[2], int flags)
{
	HOOK_ENTER(pipe2, (int)syscall(SYS_pipe2, fds, flags));
	int r = real.pipe2(fds, flags);
	fresh_pair(r, fds);
	return r;
}
