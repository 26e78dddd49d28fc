/* fdcheck ADDR PORT: a client whose descriptor must come through a failover
 * unchanged. It sets options and flags, keeps a dup'd alias, does one
 * request, waits for a line on stdin (the test kills the server then), does
 * a request on the alias and one on the original, and prints what it sees:
 *
 *   before: cloexec=1 alias_cloexec=0 nonblock=1 nodelay=1 keepalive=1 sndbuf=N peer=P tag=T
 *   after:  ... (same fields)
 *
 * Non-blocking I/O with poll(), as event-driven programs do. Exit 1 on any
 * failed or wrong reply. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SZ 64

static int io_all(int fd, uint8_t *buf, int writing)
{
	size_t done = 0;
	for (int spins = 0; done < SZ && spins < 100000; spins++) {
		ssize_t n =
		    writing ? write(fd, buf + done, SZ - done) : read(fd, buf + done, SZ - done);
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n == 0)
			return -1;
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		struct pollfd p = {.fd = fd, .events = writing ? POLLOUT : POLLIN};
		poll(&p, 1, 1000);
	}
	return done == SZ ? 0 : -1;
}

static int request(int fd, int id, char *tag)
{
	uint8_t req[SZ], rep[SZ];
	memset(req, 'x', SZ);
	memcpy(req, &id, sizeof(id));
	memset(req + 12, 0, 16);
	if (io_all(fd, req, 1) < 0 || io_all(fd, rep, 0) < 0) {
		fprintf(stderr, "fdcheck: request %d: %s\n", id, strerror(errno));
		return -1;
	}
	/* the echo keeps everything but the 16-byte tag at offset 12 */
	if (memcmp(rep, req, 12) != 0 || memcmp(rep + 28, req + 28, SZ - 28) != 0) {
		fprintf(stderr, "fdcheck: request %d: wrong reply\n", id);
		return -1;
	}
	snprintf(tag, 17, "%.16s", (char *)rep + 12);
	return 0;
}

static void report(const char *when, int fd, int alias, const char *tag)
{
	int v, nd = 0, ka = 0, sb = 0;
	socklen_t l = sizeof(v);
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);
	getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nd, &l);
	l = sizeof(v);
	getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &ka, &l);
	l = sizeof(v);
	getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sb, &l);
	getpeername(fd, (struct sockaddr *)&peer, &pl);
	printf("%s: cloexec=%d alias_cloexec=%d nonblock=%d alias_nonblock=%d nodelay=%d "
	       "keepalive=%d sndbuf=%d peer=%s:%d tag=%s\n",
	       when, !!(fcntl(fd, F_GETFD) & FD_CLOEXEC), !!(fcntl(alias, F_GETFD) & FD_CLOEXEC),
	       !!(fcntl(fd, F_GETFL) & O_NONBLOCK), !!(fcntl(alias, F_GETFL) & O_NONBLOCK), nd, ka,
	       sb, inet_ntoa(peer.sin_addr), ntohs(peer.sin_port), tag);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, sndbuf = 65536;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("fdcheck: connect");
		return 1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	int alias = dup(fd);
	char tag[17];
	if (request(fd, 1, tag) < 0)
		return 1;
	report("before", fd, alias, tag);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	if (request(alias, 2, tag) < 0)
		return 1;
	if (request(fd, 3, tag) < 0)
		return 1;
	report("after", fd, alias, tag);
	return 0;
}
