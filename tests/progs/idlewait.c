/* idlewait MODE ADDR PORT MS: connects a non-blocking socket, then sits idle
 * in one readiness call (poll | ppoll | select | pselect | epoll_wait |
 * epoll_pwait) with a timeout of MS milliseconds on a socket that never
 * becomes readable. Prints what the call returned, how long it took and
 * the socket's TCP user timeout, keepalive and keepalive idle time:
 *
 *   n=0 elapsed_ms=301 opts=1000,1,1
 *
 * Under flare the wait is sliced (connections owe their TCP timeouts at
 * first); the program must still see one wait that keeps its deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int opt(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	getsockopt(fd, level, name, &v, &l);
	return v;
}

static int idle_wait(const char *mode, int fd, int ms)
{
	sigset_t mask;
	sigemptyset(&mask);
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (strcmp(mode, "poll") == 0)
		return poll(&p, 1, ms);
	if (strcmp(mode, "ppoll") == 0)
		return ppoll(&p, 1, &ts, &mask);
	if (strcmp(mode, "select") == 0 || strcmp(mode, "pselect") == 0) {
		fd_set r;
		FD_ZERO(&r);
		FD_SET(fd, &r);
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		return mode[0] == 'p' ? pselect(fd + 1, &r, NULL, NULL, &ts, &mask)
				      : select(fd + 1, &r, NULL, NULL, &tv);
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN}, out;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -1;
	int n = strcmp(mode, "epoll_pwait") == 0 ? epoll_pwait(ep, &out, 1, ms, &mask)
						 : epoll_wait(ep, &out, 1, ms);
	close(ep);
	return n;
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
	inet_pton(AF_INET, argv[2], &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		perror("idlewait: connect");
		return 1;
	}
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	if (poll(&p, 1, 5000) != 1 || opt(fd, SOL_SOCKET, SO_ERROR) != 0) {
		fprintf(stderr, "idlewait: not connected\n");
		return 1;
	}
	long t0 = now_ms();
	int n = idle_wait(argv[1], fd, atoi(argv[4]));
	long t1 = now_ms();
	printf("n=%d elapsed_ms=%ld opts=%d,%d,%d\n", n, t1 - t0,
	       opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), opt(fd, SOL_SOCKET, SO_KEEPALIVE),
	       opt(fd, IPPROTO_TCP, TCP_KEEPIDLE));
	return 0;
}
