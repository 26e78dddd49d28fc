/* Signal semantics the library must keep without installing handlers. */
#include "io/io.h"

#include <signal.h>
#include <string.h>
#include <sys/socket.h>

int sig_would_restart(void)
{
	for (int s = 1; s < NSIG; s++) {
		struct sigaction sa;
		if (s == SIGKILL || s == SIGSTOP || sigaction(s, NULL, &sa) < 0)
			continue;
		if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)
			continue;
		if (!(sa.sa_flags & SA_RESTART))
			return 0;
	}
	return 1;
}

void sig_pipe_as_program(int flags)
{
	struct sigaction sa;
	if (flags & MSG_NOSIGNAL)
		return;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
		return;
	/* the kernel sends SIGPIPE to the writing thread */
	pthread_kill(pthread_self(), SIGPIPE);
}
