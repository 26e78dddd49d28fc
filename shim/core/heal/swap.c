/* Putting a new socket in place of a connection's old one, on every
 * descriptor number that names it, with the program's flags. */
#include "lock.h"
#include "log.h"
#include "real.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "heal/heal.h"
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int fconn_swap(struct fconn *fc, int nfd)
{
	int rc = 0;
	struct ep_regs regs;
	flare_lock(&fc->lock);
	fconn_prune_locked(fc);
	if (ep_read(fc, &regs) < 0) {
		/* the program would lose an epoll registration it cannot see go */
		flare_unlock(&fc->lock);
		real.close(nfd);
		log_warn("the program's epoll registrations cannot be read (/proc): its "
			 "connection is not moved");
		errno = EBADF;
		return -1;
	}
	int fl = fc->own.n_fds ? real.fcntl(fc->own.fds[0], F_GETFL) : -1;
	if (fl >= 0)
		real.fcntl(nfd, F_SETFL, fl & (O_NONBLOCK | O_ASYNC | O_APPEND));
	/* wake threads blocked on the old socket: they see the new generation
	 * and retry on the new one (a blocked recv does not wake on dup3) */
	if (fc->own.n_fds)
		real.shutdown(fc->own.fds[0], SHUT_RDWR);
	ep_detach(&regs);
	for (int i = 0; i < fc->own.n_fds && rc == 0; i++) {
		if (fdtab_get(fc->own.fds[i]) != fc)
			continue; /* closed from a signal handler just now: not ours */
		/* dup3, not dup2: dup2 would clear close-on-exec */
		int fdfl = real.fcntl(fc->own.fds[i], F_GETFD);
		if (real.dup3(nfd, fc->own.fds[i],
			      fdfl >= 0 && (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
			rc = -1;
	}
	if (!fc->own.n_fds)
		rc = -1;
	if (rc == 0) /* what the library resent on it so far is in the offsets */
		proof_mark(fc, fc->own.fds[0]);
	flare_unlock(&fc->lock);
	real.close(nfd);
	ep_attach(&regs); /* on the new socket, or back on the old one if dup3 failed */
	return rc;
}
