/* nbclient MODE ADDR PORT COUNT [SECONDS]: event-loop style clients for the
 * overhead benchmark, the tests and the soak, speaking rr-server's 64-byte
 * echo.
 *   connect-loop: per request, a non-blocking socket, connect, poll for
 *                 POLLOUT, SO_ERROR, send, poll for POLLIN, recv, close
 *                 (curl's pattern)
 *   connect-floor: connect-loop plus the two system calls the library
 *                 makes on a managed connection whatever it does: the
 *                 socket's SO_COOKIE once connected (its identity, proof.h)
 *                 and getpid at close (a vfork child must leave the
 *                 parent's state alone): the floor of the managed loop
 *   epoll:        one non-blocking connection driven by edge-triggered
 *                 epoll_wait; every reply is checked to be its request's
 *                 (rr-proto ids), so a lost, repeated or mixed reply fails
 * COUNT requests, or fewer when SECONDS pass first. Prints "requests=N
 * mean_us=X"; exits 1 naming the first failure. */
#include "rr-proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in sa;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int die(const char *what)
{
	fprintf(stderr, "nbclient: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void exchange_poll(int fd)
{
	char req[64], rep[64];
	memset(req, 'r', sizeof(req));
	if (send(fd, req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req))
		die("send");
	size_t got = 0;
	while (got < sizeof(rep)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 5000) != 1)
			die("poll in");
		ssize_t n = recv(fd, rep + got, sizeof(rep) - got, 0);
		if (n <= 0 && !(n < 0 && errno == EAGAIN))
			die("recv");
		if (n > 0)
			got += (size_t)n;
	}
}

static void connect_loop(long count, int floor)
{
	for (long i = 0; i < count; i++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0;
		socklen_t l = sizeof(err);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			if (errno != EINPROGRESS)
				die("connect");
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			if (poll(&p, 1, 5000) != 1)
				die("poll out");
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
			if (err) {
				errno = err;
				die("SO_ERROR");
			}
		}
		if (floor) {
			uint64_t cookie;
			socklen_t cl = sizeof(cookie);
			getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl);
		}
		exchange_poll(fd);
		if (floor)
			syscall(SYS_getpid);
		close(fd);
	}
}

static long epoll_loop(long count, double end_us)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET}, out[4];
	ev.data.fd = fd;
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	uint8_t req[64], rep[64];
	long done = 0;
	rr_fill(req, sizeof(req), 1);
	size_t sent = 0, got = 0;
	int writable = 0;
	while (done < count) {
		int n = epoll_wait(ep, out, 4, 5000);
		if (n <= 0)
			die("epoll_wait");
		if (out[0].events & EPOLLOUT)
			writable = 1;
		for (;;) {
			if (writable && sent < sizeof(req)) {
				ssize_t w = send(fd, req + sent, sizeof(req) - sent, MSG_NOSIGNAL);
				if (w < 0 && errno == EAGAIN)
					writable = 0;
				else if (w < 0)
					die("send");
				else
					sent += (size_t)w;
			}
			ssize_t r = recv(fd, rep + got, sizeof(rep) - got, 0);
			if (r < 0 && errno == EAGAIN)
				break;
			if (r <= 0)
				die("recv");
			got += (size_t)r;
			if (got == sizeof(rep)) {
				if (rr_verify(rep, sizeof(rep), (uint64_t)done + 1) != 0) {
					fprintf(stderr, "nbclient: request %ld: the reply is not its own\n",
						done + 1);
					exit(1);
				}
				got = sent = 0;
				if (++done == count || (end_us > 0 && (done & 63) == 0 && now_us() >= end_us))
					break;
				rr_fill(req, sizeof(req), (uint64_t)done + 1);
			}
		}
		if (end_us > 0 && (done & 63) == 0 && done && now_us() >= end_us)
			break;
	}
	close(ep);
	close(fd);
	return done;
}

int main(int argc, char **argv)
{
	if (argc != 5 && argc != 6)
		return 2;
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(argv[3]));
	inet_pton(AF_INET, argv[2], &sa.sin_addr);
	long count = atol(argv[4]);
	double t = now_us();
	double end = argc == 6 ? t + atof(argv[5]) * 1e6 : 0;
	if (strcmp(argv[1], "connect-loop") == 0 || strcmp(argv[1], "connect-floor") == 0)
		connect_loop(count, strcmp(argv[1], "connect-floor") == 0);
	else
		count = epoll_loop(count, end);
	printf("requests=%ld mean_us=%.2f\n", count, (now_us() - t) / (double)count);
	return 0;
}
