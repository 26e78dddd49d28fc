/* The framers' common entry points: recognising a protocol from a
 * connection's first bytes, and dispatching to frame_redis.c,
 * frame_http.c and frame_mc.c. */
#include "frame/frame.h"
#include "frame/frame_int.h"

#include <stddef.h>

long fr_redis_req(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags);
long fr_redis_rep(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags);
long fr_http_req(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags);
long fr_http_rep(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags);
long fr_mc_req(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags);
long fr_mc_rep(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags);

/* The length of p's first token when a line follows it (a space or the
 * end of the line), else 0: no request word is longer than 9 letters */
static size_t first_token(const uint8_t *p, size_t n)
{
	size_t len = 0;
	while (len < n && len < 10 && p[len] != ' ' && p[len] != '\r' && p[len] != '\n')
		len++;
	return len == n || len == 10 ? 0 : len;
}

/* is p's first token, len long, one of words? */
static int is_word(const uint8_t *p, size_t len, const char *const *words)
{
	for (int i = 0; words[i]; i++)
		if (strlen(words[i]) == len && memcmp(p, words[i], len) == 0)
			return 1;
	return 0;
}

int fr_detect(const uint8_t *p, size_t n)
{
	static const char *const http[] = {"GET",     "HEAD",  "POST",  "PUT", "DELETE",
					   "OPTIONS", "PATCH", "TRACE", NULL};
	static const char *const mc[] = {
	    "get", "gets",   "gat",  "gats", "set",   "add",       "replace", "append", "prepend",
	    "cas", "delete", "incr", "decr", "touch", "flush_all", "version", "stats",  "verbosity",
	    "mg",  "ms",     "md",   "ma",   "mn",    "me",        NULL};
	if (n >= 2 && p[0] == '*' && p[1] >= '0' && p[1] <= '9')
		return PROTO_REDIS; /* a RESP array: every client library sends these */
	size_t len = first_token(p, n);
	if (!len)
		return PROTO_OPAQUE;
	if (is_word(p, len, http))
		return PROTO_HTTP;
	if (is_word(p, len, mc))
		return PROTO_MEMCACHED;
	return PROTO_OPAQUE;
}

void fr_req_init(struct fr_req *f, int proto)
{
	memset(f, 0, sizeof(*f));
	f->proto = (uint8_t)proto;
	f->cl = -1;
}

void fr_rep_init(struct fr_rep *f, int proto)
{
	/* RESP's level counts (last) are written before they are read */
	memset(f, 0, offsetof(struct fr_rep, left));
	f->proto = (uint8_t)proto;
	f->cl = -1;
}

long fr_req_step(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags)
{
	*flags = 0;
	switch (f->proto) {
	case PROTO_REDIS: return fr_redis_req(f, p, n, ended, flags);
	case PROTO_HTTP: return fr_http_req(f, p, n, ended, flags);
	case PROTO_MEMCACHED: return fr_mc_req(f, p, n, ended, flags);
	default: *ended = 0; return -1;
	}
}

long fr_rep_step(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags)
{
	*flags = 0;
	switch (f->proto) {
	case PROTO_REDIS: return fr_redis_rep(f, p, n, ended, flags);
	case PROTO_HTTP: return fr_http_rep(f, p, n, ended, flags);
	case PROTO_MEMCACHED: return fr_mc_rep(f, p, n, ended, flags);
	default: *ended = 0; return -1;
	}
}
