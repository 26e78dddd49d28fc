#include "rr-proto.h"

#include <errno.h>
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
