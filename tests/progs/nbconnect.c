/* nbconnect MODE ADDR PORT: a non-blocking connect as event loops do it,
 * waiting with MODE (poll | ppoll | select | pselect | epoll | epollet |
 * epoll_pwait), then every check a
 * program may make of the outcome (SO_ERROR, getpeername, a second
 * connect), then one 64-byte request/reply. Prints the replica's tag.
 * Exit 1 with a reason on anything unexpected. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what)
{
	fprintf(stderr, "nbconnect: %s: %s\n", what, strerror(errno));
	return 1;
}

static int wait_writable(const char *mode, int fd)
{
	if (strcmp(mode, "poll") == 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		return poll(&p, 1, 5000) == 1 ? 0 : -1;
	}
	if (strcmp(mode, "ppoll") == 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		struct timespec ts = {5, 0};
		sigset_t mask;
		sigemptyset(&mask);
		return ppoll(&p, 1, &ts, &mask) == 1 ? 0 : -1;
	}
	if (strcmp(mode, "select") == 0 || strcmp(mode, "pselect") == 0) {
		fd_set w;
		FD_ZERO(&w);
		FD_SET(fd, &w);
		struct timeval tv = {5, 0};
		struct timespec ts = {5, 0};
		sigset_t mask;
		sigemptyset(&mask);
		int n = mode[0] == 'p' ? pselect(fd + 1, NULL, &w, NULL, &ts, &mask)
				       : select(fd + 1, NULL, &w, NULL, &tv);
		return n == 1 && FD_ISSET(fd, &w) ? 0 : -1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLOUT | (strcmp(mode, "epollet") == 0 ? EPOLLET : 0)};
	ev.data.u64 = 0xfeed0000u + (unsigned)fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -1;
	struct epoll_event out;
	sigset_t mask;
	sigemptyset(&mask);
	int n = strcmp(mode, "epoll_pwait") == 0 ? epoll_pwait(ep, &out, 1, 5000, &mask)
						 : epoll_wait(ep, &out, 1, 5000);
	close(ep);
	return n == 1 && out.data.u64 == ev.data.u64 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
	inet_pton(AF_INET, argv[2], &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc < 0 && errno != EINPROGRESS)
		return fail("connect");
	if (rc < 0 && wait_writable(argv[1], fd) < 0)
		return fail("wait");
	int err = -1;
	socklen_t l = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err != 0) {
		errno = err;
		return fail("SO_ERROR");
	}
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);
	if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0)
		return fail("getpeername");
	if (peer.sin_port != sa.sin_port)
		return fprintf(stderr, "nbconnect: getpeername is not the dialed address\n"), 1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno != EISCONN)
		return fail("second connect should say EISCONN");
	char req[64], rep[64];
	memset(req, 'q', sizeof(req));
	memset(req + 12, 0, 16);
	size_t got = 0;
	if (write(fd, req, sizeof(req)) != (ssize_t)sizeof(req))
		return fail("write");
	while (got < sizeof(rep)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 5000) != 1)
			return fail("poll for the reply");
		ssize_t n = read(fd, rep + got, sizeof(rep) - got);
		if (n <= 0)
			return fail("read");
		got += (size_t)n;
	}
	printf("%s tag=%.16s\n", argv[1], rep + 12);
	return 0;
}
