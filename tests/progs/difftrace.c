/* difftrace SEED HOST PORT KILLAT: a random client program, the same for
 * the same seed, that talks to an "anon" line server (each request line
 * "REQ ..." answered "250 REQ ...") and prints a trace of what every call
 * returned: the transparency fuzzer (tests/integration/test_transparency.py)
 * runs it without the library and under it and compares the traces.
 *
 * The program picks, step by step: how to connect (blocking, non-blocking
 * with a readiness wait), how to write a request (write, send, sendto
 * with and without an address, sendmsg with msg_name, writev, split
 * writes, sendfile, splice, stdio, a raw system call, MSG_ZEROCOPY), how
 * to wait (poll, ppoll, select, pselect, epoll level, edge and one-shot,
 * none), how to read (read, recv, recvfrom, recvmsg, readv, peeks,
 * MSG_WAITALL, chunks), and what to do between requests (dup, dup2, dup3,
 * F_DUPFD, flag changes, socket options, getpeername, zero-length calls,
 * the error queue, fork and vfork children, shutdown, closefrom,
 * socketpair and pipe on a number glibc closed, reconnects).
 *
 * Timing never shows in the trace: an EAGAIN is waited out, not printed,
 * and reads ask for at most what the reply still owes. With KILLAT k > 0,
 * the k-th request is marked SLOW (the server answers it 0.4 s late) and
 * the program prints KILL and waits for a line on stdin before waiting
 * for its reply: the test kills the replica serving it meanwhile. With
 * KILLAT -k, the k-th request is marked RESET: the server resets the
 * connection instead of answering it (once: another replica answers). The
 * program stops at the first failure ("END ..."); a reply that does not
 * answer its own request is "WRONG" (exit 3). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
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

static uint64_t rng;
static unsigned pick(unsigned n)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (unsigned)((rng * 0x2545F4914F6CDD1DULL) >> 33) % n;
}

static struct sockaddr_in svc;
static int fd = -1, epfd = -1, epmode, zerocopy_on;
static unsigned long seed;
static int n_calls;

#define T(...) (n_calls++, printf(__VA_ARGS__), putchar('\n'))

static const char *res(long r)
{
	static char b[4][48];
	static int k;
	k = (k + 1) & 3;
	if (r >= 0)
		snprintf(b[k], sizeof(b[k]), "%ld", r);
	else
		snprintf(b[k], sizeof(b[k]), "-1 %s", strerrorname_np(errno) ?: "?");
	return b[k];
}

static void end(const char *what)
{
	T("END %s", what);
	exit(0);
}

/* ---- waiting ---- */

static const char *const wait_names[] = {"poll", "ppoll", "select", "pselect", "epoll", "none"};

/* A zerocopy completion waits in the error queue and raises POLLERR until
 * it is read, as a program that sends with MSG_ZEROCOPY must do. */
static void drain_errqueue(void)
{
	char ctl[128];
	for (int i = 0; i < 64; i++) {
		struct msghdr mh = {.msg_control = ctl, .msg_controllen = sizeof(ctl)};
		if (recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
			break;
	}
}

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits (5 s at most) for events on fd by method m; the trace shows
 * whether the wanted event came, never the timing-dependent rest. */
static int wait_for(int m, int out)
{
	short want = out ? POLLOUT : POLLIN;
	if (m == 4 && epfd < 0)
		m = 0;
	if (m == 5)
		return 1; /* the read blocks */
	int got = 0, r = 0;
	long end_ms = now_ms() + 5000;
	while (!got && now_ms() < end_ms) {
		int errq = 0; /* only the error queue woke the wait */
		if (m == 0 || m == 1) {
			struct pollfd p = {.fd = fd, .events = want};
			struct timespec ts = {0, 100 * 1000000L};
			r = m == 0 ? poll(&p, 1, 100) : ppoll(&p, 1, &ts, NULL);
			errq = r > 0 && p.revents == POLLERR && zerocopy_on;
			got = r > 0 && !errq;
		} else if (m == 2 || m == 3) {
			fd_set s;
			FD_ZERO(&s);
			FD_SET(fd, &s);
			struct timeval tv = {0, 100000};
			struct timespec ts = {0, 100 * 1000000L};
			r = m == 2 ? select(fd + 1, out ? NULL : &s, out ? &s : NULL, NULL, &tv)
				   : pselect(fd + 1, out ? NULL : &s, out ? &s : NULL, NULL, &ts,
					     NULL);
			got = r > 0;
			if (got && !out && zerocopy_on) { /* readable may be the error queue */
				char c;
				ssize_t k = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
				errq = k < 0 && errno == EAGAIN;
				got = !errq;
			}
		} else {
			struct epoll_event ev = {.events = (uint32_t)(out ? EPOLLOUT : EPOLLIN)};
			if (epmode == 1)
				ev.events |= EPOLLET;
			if (epmode == 2)
				ev.events |= EPOLLONESHOT;
			ev.data.u64 = 7;
			if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0 && errno == ENOENT)
				epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
			struct epoll_event got_ev;
			r = epoll_wait(epfd, &got_ev, 1, 100);
			errq = r > 0 && got_ev.events == EPOLLERR && zerocopy_on;
			got = r > 0 && got_ev.data.u64 == 7 && !errq;
		}
		if (errq)
			drain_errqueue();
		if (r < 0 && errno != EINTR)
			break;
	}
	return got;
}

/* ---- connecting ---- */

static void connect_new(void)
{
	int nb = pick(3) == 0, cloexec = pick(2);
	fd = socket(AF_INET, SOCK_STREAM | (nb ? SOCK_NONBLOCK : 0) | (cloexec ? SOCK_CLOEXEC : 0),
		    0);
	if (pick(4) == 0) {
		int one = 1;
		T("setsockopt TCP_NODELAY before connect -> %s",
		  res(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))));
	}
	int r = connect(fd, (struct sockaddr *)&svc, sizeof(svc));
	if (nb) {
		int started = r == 0 || errno == EINPROGRESS;
		T("connect non-blocking -> %s", started ? "started" : res(r));
		if (!started)
			end("connect");
		unsigned m = pick(5);
		int ok = wait_for((int)m, 1);
		int err = -1;
		socklen_t l = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
		T("wait %s writable -> %d, SO_ERROR %d", wait_names[m], ok, err);
		if (pick(2)) { /* a program that makes it blocking again */
			T("fcntl clear O_NONBLOCK -> %s",
			  res(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)));
		}
	} else {
		T("connect -> %s", res(r));
		if (r < 0)
			end("connect");
	}
	if (epfd >= 0)
		close(epfd);
	epfd = -1;
	if (pick(2)) {
		epfd = epoll_create1(EPOLL_CLOEXEC);
		epmode = (int)pick(3);
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
		if (epmode == 1)
			ev.events |= EPOLLET;
		if (epmode == 2)
			ev.events |= EPOLLONESHOT;
		T("epoll_ctl ADD mode %d -> %s", epmode,
		  res(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)));
	}
	zerocopy_on = 0;
}

/* ---- writing ---- */

static const char *const write_names[] = {
    "write",    "send",         "send-nosignal", "sendto-null", "sendto-addr",
    "sendmsg",  "sendmsg-2iov", "sendmsg-name",  "writev",      "two-writes",
    "sendfile", "splice",       "stdio",         "raw",         "zerocopy"};
#define N_WRITES 15

static long write_by(unsigned m, const char *p, size_t n)
{
	struct sockaddr_in elsewhere = svc;
	elsewhere.sin_port = htons(9);
	size_t h = n / 2;
	struct iovec two[2] = {{(void *)p, h}, {(void *)(p + h), n - h}};
	struct msghdr mh = {.msg_iov = two, .msg_iovlen = 2};
	switch (m) {
	case 0: return write(fd, p, n);
	case 1: return send(fd, p, n, 0);
	case 2: return send(fd, p, n, MSG_NOSIGNAL);
	case 3: return sendto(fd, p, n, 0, NULL, 0);
	case 4: return sendto(fd, p, n, 0, (struct sockaddr *)&elsewhere, sizeof(elsewhere));
	case 5: {
		struct iovec one = {(void *)p, n};
		struct msghdr m1 = {.msg_iov = &one, .msg_iovlen = 1};
		return sendmsg(fd, &m1, 0);
	}
	case 6: return sendmsg(fd, &mh, 0);
	case 7:
		mh.msg_name = &elsewhere;
		mh.msg_namelen = sizeof(elsewhere);
		return sendmsg(fd, &mh, 0);
	case 8: return writev(fd, two, 2);
	case 9: {
		long a = write(fd, p, h);
		if (a != (long)h)
			return a;
		long b = send(fd, p + h, n - h, 0);
		return b < 0 ? b : a + b;
	}
	case 10: {
		char path[] = "/tmp/difftrace-XXXXXX";
		int f = mkstemp(path);
		unlink(path);
		if (f < 0 || write(f, p, n) != (ssize_t)n)
			return -1;
		off_t off = 0;
		long r = sendfile(fd, f, &off, n);
		close(f);
		return r;
	}
	case 11: {
		int pp[2];
		if (pipe(pp) < 0 || write(pp[1], p, n) != (ssize_t)n)
			return -1;
		long r = splice(pp[0], NULL, fd, NULL, n, 0);
		close(pp[0]);
		close(pp[1]);
		return r;
	}
	case 12: {
		FILE *f = fdopen(dup(fd), "w");
		if (!f)
			return -1;
		long r = (long)fwrite(p, 1, n, f);
		fclose(f);
		return r;
	}
	case 13: return syscall(SYS_sendto, fd, p, n, 0, NULL, 0);
	default:
		if (!zerocopy_on) {
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one));
			zerocopy_on = 1;
		}
		return send(fd, p, n, MSG_ZEROCOPY);
	}
}

/* ---- reading ---- */

static const char *const read_names[] = {"read",  "recv", "recvfrom", "recvfrom-addr", "recvmsg",
					 "readv", "peek", "waitall",  "dontwait"};
#define N_READS 9

static long read_by(unsigned m, char *p, size_t n)
{
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	size_t h = n / 2;
	struct iovec two[2] = {{p, h}, {p + h, n - h}};
	switch (m) {
	case 0: return read(fd, p, n);
	case 1: return recv(fd, p, n, 0);
	case 2: return recvfrom(fd, p, n, 0, NULL, NULL);
	case 3: return recvfrom(fd, p, n, 0, (struct sockaddr *)&from, &fl);
	case 4: {
		struct msghdr mh = {.msg_iov = two, .msg_iovlen = 2};
		return recvmsg(fd, &mh, 0);
	}
	case 5: return readv(fd, two, 2);
	case 6: {
		long k = recv(fd, p, n, MSG_PEEK);
		if (k <= 0)
			return k;
		return recv(fd, p, (size_t)k, 0);
	}
	case 7: return recv(fd, p, n, MSG_WAITALL);
	default: return recv(fd, p, n, MSG_DONTWAIT);
	}
}

static int is_nonblocking(void) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

/* Reads the reply to line (its whole length is known), traced per call */
static void read_reply(const char *line, unsigned wm)
{
	char want[160], got[160];
	int wl = snprintf(want, sizeof(want), "250 %s\n", line);
	size_t have = 0;
	unsigned rm = pick(N_READS);
	int chunked = pick(3) == 0;
	int waits = 0;
	while (have < (size_t)wl) {
		size_t ask = (size_t)wl - have;
		if (chunked && ask > 1)
			ask = 1 + pick((unsigned)ask);
		/* MSG_WAITALL and blocking reads without a wait need a blocking socket */
		if (wm == 5 && is_nonblocking())
			wm = 0;
		if ((rm == 8 || is_nonblocking() || (wm != 5 && have == 0)) && waits < 20) {
			if (!wait_for((int)(wm == 5 && (rm == 8 || is_nonblocking()) ? 0 : wm), 0))
				end("no reply in 5 s");
			waits++;
		}
		long r = read_by(rm, got + have, ask);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && waits < 20) {
			if (wm == 5)
				wm = 0;
			continue; /* timing, not behaviour: waited out, not traced */
		}
		T("read %s %zu -> %s", read_names[rm], ask, res(r));
		if (r == 0)
			end("eof");
		if (r < 0)
			end("read error");
		have += (size_t)r;
	}
	got[have] = 0;
	if (memcmp(got, want, (size_t)wl) != 0) {
		T("WRONG reply to %s: %.*s", line, (int)have, got);
		fflush(stdout);
		exit(3);
	}
}

static int request_no;

static void request(int killat)
{
	char line[96];
	request_no++;
	int slow = request_no == killat;
	snprintf(line, sizeof(line), "REQ %lu-%d%s", seed, request_no,
		 slow                    ? " SLOW"
		 : request_no == -killat ? " RESET"
					 : "");
	char out[100];
	int n = snprintf(out, sizeof(out), "%s\n", line);
	unsigned wm = pick(N_WRITES);
	if (zerocopy_on && wm == 14)
		wm = 1;
	long r = write_by(wm, out, (size_t)n);
	T("write %s %d -> %s", write_names[wm], n, res(r));
	if (r < 0)
		end("write error");
	if (r < n) {
		r = send(fd, out + r, (size_t)(n - r), 0);
		T("write rest -> %s", res(r));
	}
	if (slow) {
		char go[8];
		printf("KILL\n");
		fflush(stdout);
		if (!fgets(go, sizeof(go), stdin))
			exit(2);
	}
	read_reply(line, pick(6));
}

/* ---- between requests ---- */

static void set_fd(int nfd) { fd = nfd; }

static void misc(void)
{
	switch (pick(16)) {
	case 0: {
		unsigned how = pick(5);
		int nfd = how == 0   ? dup(fd)
			  : how == 1 ? dup2(fd, fd + 7)
			  : how == 2 ? dup3(fd, fd + 9, O_CLOEXEC)
			  : how == 3 ? fcntl(fd, F_DUPFD, 50)
				     : fcntl(fd, F_DUPFD_CLOEXEC, 60);
		T("dup kind %u -> %s", how, nfd >= 0 ? "ok" : res(nfd));
		if (nfd >= 0 && nfd != fd) {
			if (pick(2))
				T("close old -> %s", res(close(fd)));
			set_fd(nfd);
		}
		break;
	}
	case 1:
		if (pick(2)) {
			T("fcntl toggle O_NONBLOCK -> %s",
			  res(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) ^ O_NONBLOCK)));
		} else {
			int on = !is_nonblocking();
			T("ioctl FIONBIO %d -> %s", on, res(ioctl(fd, FIONBIO, &on)));
		}
		break;
	case 2: {
		int one = 1, v = 0;
		socklen_t l = sizeof(v);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l);
		T("TCP_NODELAY set -> %d", v != 0);
		break;
	}
	case 3: {
		int ut = 7777, v = 0;
		socklen_t l = sizeof(v);
		setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
		getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &l);
		T("TCP_USER_TIMEOUT set -> %d", v);
		break;
	}
	case 4: {
		struct sockaddr_in p;
		socklen_t l = sizeof(p);
		int r = getpeername(fd, (struct sockaddr *)&p, &l);
		T("getpeername -> %s, the dialed address: %d", res(r),
		  r == 0 && p.sin_port == svc.sin_port && p.sin_addr.s_addr == svc.sin_addr.s_addr);
		break;
	}
	case 5: {
		char c;
		T("recv of 0 bytes -> %s", res(recv(fd, &c, 0, MSG_DONTWAIT)));
		T("send of 0 bytes -> %s", res(send(fd, &c, 0, 0)));
		break;
	}
	case 6: { /* how many notes wait depends on the waits before: not traced */
		char ctl[128];
		struct msghdr mh = {.msg_control = ctl, .msg_controllen = sizeof(ctl)};
		long r = recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT);
		T("error queue read -> %s", r >= 0 || errno == EAGAIN ? "as expected" : res(r));
		drain_errqueue();
		break;
	}
	case 7: {
		int err = -1, avail = -1;
		socklen_t l = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
		ioctl(fd, FIONREAD, &avail);
		T("SO_ERROR %d, FIONREAD %d", err, avail);
		break;
	}
	case 8: {
		pid_t p = fork();
		if (p == 0)
			_exit(0);
		int st = -1;
		waitpid(p, &st, 0);
		T("fork child -> exit %d", WEXITSTATUS(st));
		break;
	}
	case 9: {
		pid_t p = vfork();
		if (p == 0) {
			close(fd);
			_exit(0);
		}
		int st = -1;
		waitpid(p, &st, 0);
		T("vfork child closed the socket -> exit %d", WEXITSTATUS(st));
		break;
	}
	case 10: { /* an orderly end: the server closes after our FIN */
		T("shutdown SHUT_WR -> %s", res(shutdown(fd, SHUT_WR)));
		char c;
		if (!wait_for(0, 0))
			end("no EOF in 5 s");
		T("read after shutdown -> %s", res(read(fd, &c, 1)));
		T("close -> %s", res(close(fd)));
		connect_new();
		break;
	}
	case 11:
		T("close -> %s", res(close(fd)));
		connect_new();
		break;
	case 12: { /* glibc closes it where no hook sees; a pipe takes the number */
		int old = fd;
		closefrom(fd);
		int pp[2];
		unsigned kind = pick(2);
		int r = kind ? socketpair(AF_UNIX, SOCK_STREAM, 0, pp) : pipe(pp);
		char b[4] = "";
		long w = r == 0 ? write(pp[1], "abc", 3) : -1;
		long k = r == 0 ? read(pp[0], b, 3) : -1;
		T("closefrom, then %s -> number reused %d, moved %ld/%ld %s",
		  kind ? "socketpair" : "pipe", r == 0 && (pp[0] == old || pp[1] == old), w, k, b);
		if (r == 0) {
			close(pp[0]);
			close(pp[1]);
		}
		epfd = -1; /* closefrom took it too, if it was above */
		connect_new();
		break;
	}
	case 13: {
		int rt = 0;
		struct timeval tv = {3, 0}, back = {0, 0};
		socklen_t l = sizeof(back);
		rt = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &back, &l);
		T("SO_RCVTIMEO 3 s -> %s, reads back %ld", res(rt), (long)back.tv_sec);
		break;
	}
	case 14: {
		struct sockaddr_in me;
		socklen_t l = sizeof(me);
		int r = getsockname(fd, (struct sockaddr *)&me, &l);
		T("getsockname -> %s family %d", res(r), me.sin_family);
		break;
	}
	default: {
		int v = -1;
		socklen_t l = sizeof(v);
		getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l);
		T("SO_TYPE -> %d", v);
		break;
	}
	}
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: difftrace SEED HOST PORT KILLAT\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN); /* an EPIPE is traced, a death would say nothing */
	seed = strtoul(argv[1], NULL, 10);
	rng = seed * 0x9E3779B97F4A7C15ULL + 1;
	svc.sin_family = AF_INET;
	svc.sin_port = htons((uint16_t)atoi(argv[3]));
	inet_pton(AF_INET, argv[2], &svc.sin_addr);
	int killat = atoi(argv[4]);
	connect_new();
	int steps = 8 + (int)pick(25);
	for (int i = 0; i < steps; i++) {
		if (pick(3))
			request(killat);
		else
			misc();
	}
	while (abs(killat) > request_no) /* the failure comes in every run that asks for one */
		request(killat);
	T("DONE %d calls", n_calls + 1);
	return 0;
}
