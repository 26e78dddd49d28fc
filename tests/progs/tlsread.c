/* tlsread CA_FILE SNI PORT SIZE...: one blocking TLS session to 127.0.0.1:PORT
 * (OpenSSL, read-ahead off: a record's header and its body are two reads).
 * For each SIZE it writes "GET SIZE\n" and reads the reply, a line of SIZE
 * bytes, with SSL_read; it prints the reply's length, whether it was right
 * and whether it took at least 140 ms:
 *
 *   101 True True
 *
 * A blocking socket never gives SSL_ERROR_WANT_READ: any SSL_read that
 * returns without bytes ends the program with exit 1 and the error, as a
 * program written for blocking sockets would (Python's ssl retries it). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, int ssl_error)
{
	int e = errno;
	fprintf(stderr, "tlsread: %s: SSL error %d, errno %d (%s)\n", what, ssl_error, e,
		strerror(e));
	ERR_print_errors_fp(stderr);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: tlsread CA_FILE SNI PORT SIZE...\n");
		return 2;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_load_verify_locations(ctx, argv[1], NULL) != 1)
		die("SSL_CTX", 0);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect", 0);
	SSL *s = SSL_new(ctx);
	if (!s || !SSL_set_fd(s, fd) || !SSL_set_tlsext_host_name(s, argv[2]) ||
	    !SSL_set1_host(s, argv[2]))
		die("SSL_new", 0);
	int r = SSL_connect(s);
	if (r != 1)
		die("SSL_connect", SSL_get_error(s, r));
	for (int i = 4; i < argc; i++) {
		size_t size = (size_t)atol(argv[i]);
		char req[64];
		int len = snprintf(req, sizeof(req), "GET %zu\n", size);
		double t0 = now_s();
		if ((r = SSL_write(s, req, len)) != len)
			die("SSL_write", SSL_get_error(s, r));
		char *got = malloc(size + 1);
		size_t have = 0;
		while (have < size + 1) {
			errno = 0;
			r = SSL_read(s, got + have, (int)(size + 1 - have));
			if (r <= 0)
				die("SSL_read", SSL_get_error(s, r));
			have += (size_t)r;
		}
		int right = got[size] == '\n';
		for (size_t k = 0; k < size && right; k++)
			right = got[k] == 'x';
		printf("%zu %s %s\n", have, right ? "True" : "False",
		       now_s() - t0 >= 0.14 ? "True" : "False");
		fflush(stdout);
		free(got);
	}
	SSL_free(s);
	SSL_CTX_free(ctx);
	close(fd);
	return 0;
}
