/* The request/response protocol of rr-server and rr-client.
 *
 * A message is `size` bytes (default 64), optionally preceded by a 4-byte
 * big-endian length (--lp):
 *
 *   u64 id | u32 check | char tag[16] | filler up to size
 *
 * check is a hash of the id and the filler; the server echoes the message
 * with its own tag, so the client can verify that every reply is the one
 * to its own request and see which replica served it. */
#ifndef RR_PROTO_H
#define RR_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define RR_MIN_SIZE 28
#define RR_MAX_SIZE (1 << 20)
#define RR_TAG_LEN 16

struct rr_hdr {
	uint64_t id;
	uint32_t check;
	char tag[RR_TAG_LEN];
} __attribute__((packed));

void rr_fill(uint8_t *msg, size_t size, uint64_t id);
/* 0 when msg is a valid reply to request id */
int rr_verify(const uint8_t *msg, size_t size, uint64_t id);
void rr_set_tag(uint8_t *msg, const char *tag);
/* Reads exactly n bytes; 0 ok, -1 error (errno), 1 EOF. */
int rr_read_full(int fd, void *buf, size_t n);
int rr_write_full(int fd, const void *buf, size_t n);
uint64_t rr_now_ns(void);
struct sockaddr_storage;
/* "1.2.3.4:80" or "[::1]:80" -> sockaddr; 0 or -1 */
int rr_parse_addr(const char *s, struct sockaddr_storage *ss, unsigned *len);
/* Burns CPU (this thread's CPU time) for us microseconds. */
void rr_burn_cpu_us(long us);

#endif
