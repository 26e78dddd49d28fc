/* stalefd ADDR PORT FILE: a managed socket closed where no hook sees it
 * (a raw close system call, as glibc does inside fclose of an fdopen'd
 * socket), then the same number reused: first by a file, which must read
 * as a file, then by a new socket, which must be a socket of its own. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return perror("stalefd: connect"), 1;
	syscall(SYS_close, fd); /* unseen */
	int f = open(argv[3], O_RDONLY);
	if (f != fd)
		return fprintf(stderr, "stalefd: number not reused (%d, %d)\n", fd, f), 1;
	char buf[64] = "";
	ssize_t n = read(f, buf, sizeof(buf) - 1);
	if (n <= 0 || strncmp(buf, "stale-test", 10) != 0)
		return perror("stalefd: read of the reused number"), 1;
	syscall(SYS_close, f);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s != fd)
		return fprintf(stderr, "stalefd: socket number not reused\n"), 1;
	struct sockaddr_in peer;
	socklen_t pl = sizeof(peer);
	if (getpeername(s, (struct sockaddr *)&peer, &pl) == 0)
		return fprintf(stderr, "stalefd: a new socket claims a peer\n"), 1;
	printf("ok\n");
	return 0;
}
