/* proofcase CASE HOST PORT: one path the library's lists once missed, run
 * against a line server (a reply line per request line). It prints a
 * trace that names no address, port or replica, so that a run under the
 * library can be compared with a run without it. Cases that need a
 * replica to die print "READY" and wait for a line on stdin: the test
 * kills the replica, then writes one.
 *
 *   stale-accept  closefrom() closes the managed socket inside glibc; the
 *   stale-raw     program's own listener accepts on the same number (by
 *                 accept(), or by a raw system call no hook sees), its
 *                 peer closes: the read is an EOF, the peer is the peer
 *   sendto        a request by sendto() with an address, one by send(),
 *                 the replica dies: each reply answers its own request
 *   zerocopy      MSG_ZEROCOPY: the completion's POLLERR is no failure
 *   rawsend       a request by a raw system call, the replica dies: the
 *                 hang-up is the program's to see, at once
 *   uring         the same with the request sent through io_uring
 *   rawrecv       a reply taken by a raw system call, the replica dies:
 *                 nothing is replayed
 *   badargs       counts and pointers the kernel rejects, as it rejects them
 *   vfork         a vfork child closes the managed number: the parent's own
 *                 TCP_USER_TIMEOUT stays its own
 *   nbflags       O_NONBLOCK set and cleared every way a program can (at
 *                 socket(), fcntl, ioctl, through a dup, by a fork child,
 *                 by a raw system call) before connect: the connect's
 *                 answer is the kernel's, and the connection works
 *   nbplain       only the first of them (its system calls are counted)
 *   stale-connect a non-blocking connect to the service, its number closed
 *                 by raw system calls and reused for a connect to a port
 *                 nobody listens on: the refusal is the program's, seen
 *                 by poll and by SO_ERROR asked without a poll */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif

static struct sockaddr_in svc;

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&svc, sizeof(svc)) < 0) {
		printf("connect: %s\n", strerror(errno));
		exit(1);
	}
	return fd;
}

static void ready(void)
{
	char line[16];
	printf("READY\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		exit(2);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* The next reply line within 5 s, printed without the replica's name
 * ("250 A-2 REQ X 1" -> "reply: REQ X 1"), or how reading it ended. */
static void read_reply(int fd)
{
	char buf[256];
	size_t have = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (have < sizeof(buf) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 5000) <= 0) {
			printf("reply: none in 5 s\n");
			return;
		}
		ssize_t n = read(fd, buf + have, 1);
		if (n == 0) {
			printf("reply: EOF%s\n", ms_since(&t0) < 1000 ? "" : " (late)");
			return;
		}
		if (n < 0) {
			printf("reply: %s\n", strerror(errno));
			return;
		}
		if (buf[have++] == '\n')
			break;
	}
	buf[have] = 0;
	char *req = strstr(buf, "REQ");
	printf("reply: %s", req ? req : buf);
}

static void send_line(int fd, const char *line)
{
	if (send(fd, line, strlen(line), 0) != (ssize_t)strlen(line))
		printf("send: %s\n", strerror(errno));
}

/* closefrom(fd) inside glibc, then a connection of the program's own on
 * the same number */
static void stale(int raw)
{
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t ll = sizeof(la);
	if (bind(l, (struct sockaddr *)&la, sizeof(la)) < 0 || listen(l, 4) < 0 ||
	    getsockname(l, (struct sockaddr *)&la, &ll) < 0)
		return perror("listener");
	int fd = dial();
	send_line(fd, "REQ X\n");
	closefrom(fd);
	if (connect(c, (struct sockaddr *)&la, sizeof(la)) < 0)
		return perror("connect to own listener");
	struct sockaddr_in peer, mine;
	socklen_t pl = sizeof(peer), ml = sizeof(mine);
	int a = raw ? (int)syscall(SYS_accept4, l, NULL, NULL, 0) : accept(l, NULL, NULL);
	printf("accepted on the same number: %s\n", a == fd ? "yes" : "no");
	getsockname(c, (struct sockaddr *)&mine, &ml);
	close(c); /* the peer closes */
	char buf[64];
	ssize_t n = read(a, buf, sizeof(buf));
	printf("read: %zd%s\n", n, n < 0 ? strerror(errno) : "");
	if (getpeername(a, (struct sockaddr *)&peer, &pl) < 0)
		printf("getpeername: %s\n", strerror(errno));
	else
		printf("getpeername is the real peer: %s\n",
		       peer.sin_port == mine.sin_port ? "yes" : "no");
}

static void by_sendto(void)
{
	int fd = dial();
	struct sockaddr_in elsewhere = svc;
	elsewhere.sin_port = htons(9); /* ignored on a connected stream socket */
	const char *a = "REQ A\n";
	ssize_t n = sendto(fd, a, strlen(a), 0, (struct sockaddr *)&elsewhere, sizeof(elsewhere));
	printf("sendto: %zd\n", n);
	struct iovec iov = {(void *)"REQ B\n", 6};
	struct msghdr m = {.msg_name = &elsewhere,
			   .msg_namelen = sizeof(elsewhere),
			   .msg_iov = &iov,
			   .msg_iovlen = 1};
	printf("sendmsg with msg_name: %zd\n", sendmsg(fd, &m, 0));
	send_line(fd, "REQ C\n");
	ready();
	for (int i = 0; i < 3; i++)
		read_reply(fd);
}

static void zerocopy(void)
{
	int fd = dial(), one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)) < 0)
		return (void)printf("SO_ZEROCOPY: %s\n", strerror(errno));
	const char *z = "REQ Z\n";
	printf("send: %zd\n", send(fd, z, strlen(z), MSG_ZEROCOPY));
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int r = poll(&p, 1, 3000);
	printf("poll: %d%s%s%s\n", r, p.revents & POLLIN ? " IN" : "",
	       p.revents & POLLERR ? " ERR" : "", p.revents & POLLHUP ? " HUP" : "");
	char ctl[128];
	for (int i = 0; i < 2; i++) {
		struct msghdr m = {.msg_control = ctl, .msg_controllen = sizeof(ctl)};
		ssize_t n = recvmsg(fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
		struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&m) : NULL;
		struct sock_extended_err *ee =
		    cm ? (struct sock_extended_err *)CMSG_DATA(cm) : NULL;
		printf("error queue: %zd %s\n", n,
		       n < 0                                          ? strerror(errno)
		       : ee && ee->ee_origin == SO_EE_ORIGIN_ZEROCOPY ? "zerocopy notification"
								      : "other");
	}
	read_reply(fd);
}

/* A send no hook sees: a raw system call, or io_uring's */
static long unseen_send(int fd, const char *p, int uring)
{
	if (!uring)
		return syscall(SYS_sendto, fd, p, strlen(p), 0, NULL, 0);
	struct io_uring ring;
	if (io_uring_queue_init(4, &ring, 0) < 0)
		return -2;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	io_uring_prep_send(sqe, fd, p, strlen(p), 0);
	io_uring_submit(&ring);
	struct io_uring_cqe *cqe;
	long r = io_uring_wait_cqe(&ring, &cqe) < 0 ? -3 : cqe->res;
	io_uring_queue_exit(&ring);
	return r;
}

static void rawsend(int uring)
{
	int fd = dial();
	const char *r = uring ? "REQ U\n" : "REQ R\n";
	printf("unseen send: %ld\n", unseen_send(fd, r, uring));
	ready();
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n = poll(&p, 1, 5000);
	printf("poll: %d%s within 1 s: %s\n", n,
	       p.revents & (POLLHUP | POLLERR | POLLIN) ? " event" : "",
	       ms_since(&t0) < 1000 ? "yes" : "no");
	read_reply(fd);
}

static void rawrecv(void)
{
	int fd = dial();
	send_line(fd, "REQ Q\n");
	char buf[256];
	struct pollfd p = {.fd = fd, .events = POLLIN};
	poll(&p, 1, 5000);
	long n = syscall(SYS_recvfrom, fd, buf, sizeof(buf), 0, NULL, NULL);
	printf("raw recv: %s\n", n > 0 && memchr(buf, '\n', (size_t)n) ? "a reply" : "nothing");
	ready();
	read_reply(fd);
}

static const char *err_or(long r)
{
	static char b[64];
	if (r >= 0)
		snprintf(b, sizeof(b), "%ld", r);
	else
		snprintf(b, sizeof(b), "%s", strerror(errno));
	return b;
}

static void badargs(void)
{
	int fd = dial();
	static struct iovec many[1025];
	char c = 0;
	/* values the compiler cannot see coming (it would refuse them) */
	volatile int minus = -1;
	struct iovec *volatile none = NULL;
	struct msghdr *volatile nomsg = NULL;
	for (int i = 0; i < 1025; i++)
		many[i] = (struct iovec){&c, 1};
	printf("readv count -1: %s\n", err_or(readv(fd, many, minus)));
	printf("readv 1025 iovecs: %s\n", err_or(readv(fd, many, 1025)));
	printf("writev 1025 iovecs: %s\n", err_or(writev(fd, many, 1025)));
	printf("writev count -1: %s\n", err_or(writev(fd, many, minus)));
	printf("readv NULL: %s\n", err_or(readv(fd, none, 1)));
	printf("writev NULL: %s\n", err_or(writev(fd, none, 1)));
	printf("recvmsg NULL: %s\n", err_or(recvmsg(fd, nomsg, MSG_DONTWAIT)));
	printf("sendmsg NULL: %s\n", err_or(sendmsg(fd, nomsg, 0)));
	send_line(fd, "REQ OK\n");
	read_reply(fd);
}

static void in_vfork(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), ut = 12345;
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
	if (connect(fd, (struct sockaddr *)&svc, sizeof(svc)) < 0)
		return perror("connect");
	pid_t pid = vfork();
	if (pid == 0) {
		close(fd);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	usleep(60 * 1000); /* past the library's deferral of its own timeouts */
	send_line(fd, "REQ V\n");
	read_reply(fd);
	send_line(fd, "REQ W\n");
	read_reply(fd);
	socklen_t l = sizeof(ut);
	getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, &l);
	printf("TCP_USER_TIMEOUT: %d\n", ut);
}

/* fd's O_NONBLOCK set to nb by way `how` */
static void set_nonblock(int fd, int nb, const char *how)
{
	if (!strcmp(how, "fcntl")) {
		fcntl(fd, F_SETFL, nb ? O_NONBLOCK : 0);
	} else if (!strcmp(how, "ioctl")) {
		ioctl(fd, FIONBIO, &nb);
	} else if (!strcmp(how, "dup")) {
		int d = dup(fd);
		fcntl(d, F_SETFL, nb ? O_NONBLOCK : 0);
		close(d);
	} else if (!strcmp(how, "fork")) {
		pid_t pid = fork();
		if (pid == 0) {
			fcntl(fd, F_SETFL, nb ? O_NONBLOCK : 0);
			_exit(0);
		}
		waitpid(pid, NULL, 0);
	} else if (!strcmp(how, "raw")) {
		syscall(SYS_fcntl, fd, F_SETFL, nb ? O_NONBLOCK : 0);
	}
}

static void nbflags(int only_plain)
{
	static const struct {
		const char *name, *how;
		int made_nb, set_nb;
	} ways[] = {
	    {"socket(SOCK_NONBLOCK)", "", 1, 1},   {"fcntl set", "fcntl", 0, 1},
	    {"fcntl cleared", "fcntl", 1, 0},      {"ioctl set", "ioctl", 0, 1},
	    {"ioctl cleared", "ioctl", 1, 0},      {"set through a dup", "dup", 0, 1},
	    {"set by a fork child", "fork", 0, 1}, {"cleared by a fork child", "fork", 1, 0},
	    {"set by a raw call", "raw", 0, 1},    {"cleared by a raw call", "raw", 1, 0},
	};
	for (size_t i = 0; i < (only_plain ? 1 : sizeof(ways) / sizeof(ways[0])); i++) {
		int fd = socket(AF_INET, SOCK_STREAM | (ways[i].made_nb ? SOCK_NONBLOCK : 0), 0);
		set_nonblock(fd, ways[i].set_nb, ways[i].how);
		int rc = connect(fd, (struct sockaddr *)&svc, sizeof(svc));
		printf("%s: connect %s\n", ways[i].name, rc == 0 ? "0" : strerror(errno));
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int err = 0;
		socklen_t el = sizeof(err);
		if (rc < 0 && errno == EINPROGRESS &&
		    (poll(&p, 1, 5000) != 1 ||
		     getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err)) {
			printf("%s: not connected\n", ways[i].name);
			close(fd);
			continue;
		}
		fcntl(fd, F_SETFL, 0); /* the request, blocking */
		char line[64];
		snprintf(line, sizeof(line), "REQ N%zu\n", i);
		send_line(fd, line);
		read_reply(fd);
		close(fd);
	}
}

/* A port on the loopback that refuses: bound and never listened on (the
 * kernel answers a connect with a reset), kept so nobody else takes it.
 * Its socket, which the caller closes. */
static int refusing(struct sockaddr_in *a)
{
	*a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(*a);
	int t = socket(AF_INET, SOCK_STREAM, 0);
	if (t < 0 || bind(t, (struct sockaddr *)a, sizeof(*a)) < 0 ||
	    getsockname(t, (struct sockaddr *)a, &l) < 0) {
		perror("refusing port");
		exit(1);
	}
	return t;
}

/* then either polled, or asked SO_ERROR at once (libmemcached's way) once
 * the refusal is in */
static void stale_connect(int polled)
{
	struct sockaddr_in no;
	int bound = refusing(&no);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int rc = connect(fd, (struct sockaddr *)&svc, sizeof(svc));
	printf("service: connect %s\n", rc == 0 ? "0" : strerror(errno));
	syscall(SYS_close, fd); /* no hook sees it */
	/* made and connected where no hook sees either (a hooked socket()
	 * tells the library the number is new) */
	int again = (int)syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	printf("the same number: %s\n", again == fd ? "yes" : "no");
	rc = (int)syscall(SYS_connect, again, (struct sockaddr *)&no, sizeof(no));
	printf("refusing port: connect %s\n", rc == 0 ? "0" : strerror(errno));
	struct pollfd p = {.fd = again, .events = POLLOUT};
	int n = 0, err = 0;
	if (polled)
		n = poll(&p, 1, 5000);
	else
		usleep(100 * 1000);
	socklen_t el = sizeof(err);
	getsockopt(again, SOL_SOCKET, SO_ERROR, &err, &el);
	if (polled)
		printf("poll %d%s, ", n, p.revents & POLLERR ? " POLLERR" : "");
	printf("SO_ERROR %s\n", err ? strerror(err) : "0");
	close(again);
	close(bound);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: proofcase CASE HOST PORT\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(20); /* a case the library leaves hanging ends, and says nothing more */
	svc.sin_family = AF_INET;
	svc.sin_port = htons((uint16_t)atoi(argv[3]));
	inet_pton(AF_INET, argv[2], &svc.sin_addr);
	const char *c = argv[1];
	if (!strcmp(c, "stale-accept") || !strcmp(c, "stale-raw"))
		stale(!strcmp(c, "stale-raw"));
	else if (!strcmp(c, "sendto"))
		by_sendto();
	else if (!strcmp(c, "zerocopy"))
		zerocopy();
	else if (!strcmp(c, "rawsend") || !strcmp(c, "uring"))
		rawsend(!strcmp(c, "uring"));
	else if (!strcmp(c, "rawrecv"))
		rawrecv();
	else if (!strcmp(c, "badargs"))
		badargs();
	else if (!strcmp(c, "vfork"))
		in_vfork();
	else if (!strcmp(c, "nbflags") || !strcmp(c, "nbplain"))
		nbflags(!strcmp(c, "nbplain"));
	else if (!strcmp(c, "stale-connect")) {
		stale_connect(1);
		stale_connect(0);
	} else
		return fprintf(stderr, "proofcase: unknown case %s\n", c), 2;
	return 0;
}
