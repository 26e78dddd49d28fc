#include "rr-proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint32_t hash(uint64_t id, const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u ^ (uint32_t)id ^ (uint32_t)(id >> 32);
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

void rr_fill(uint8_t *msg, size_t size, uint64_t id)
{
	struct rr_hdr h = {.id = id};
	for (size_t i = sizeof(h); i < size; i++)
		msg[i] = (uint8_t)(id * 31 + i);
	h.check = hash(id, msg + sizeof(h), size - sizeof(h));
	memcpy(msg, &h, sizeof(h));
}

int rr_verify(const uint8_t *msg, size_t size, uint64_t id)
{
	struct rr_hdr h;
	memcpy(&h, msg, sizeof(h));
	return h.id == id && h.check == hash(id, msg + sizeof(h), size - sizeof(h)) ? 0 : -1;
}

void rr_set_tag(uint8_t *msg, const char *tag)
{
	struct rr_hdr *h = (struct rr_hdr *)msg;
	memset(h->tag, 0, RR_TAG_LEN);
	strncpy(h->tag, tag, RR_TAG_LEN - 1);
}

int rr_read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r == 0)
			return 1;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int rr_write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

uint64_t rr_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void rr_burn_cpu_us(long us)
{
	struct timespec a, b;
	if (us <= 0)
		return;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	for (;;) {
		for (volatile int i = 0; i < 1000; i++)
			;
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
		if ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 >= us)
			return;
	}
}

int rr_parse_addr(const char *s, struct sockaddr_storage *ss, unsigned *len)
{
	char host[128];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *h = host;
	if (h[0] == '[' && strlen(h) >= 2) {
		h++;
		h[strlen(h) - 1] = '\0';
	}
	int port = atoi(colon + 1);
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	memset(ss, 0, sizeof(*ss));
	if (port <= 0 || port > 65535)
		return -1;
	if (inet_pton(AF_INET, h, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	return -1;
}
