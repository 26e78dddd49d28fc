/* Protocol framers: where requests and replies begin and end, for the
 * protocols whose connections flare can heal at exact boundaries (Redis
 * RESP2/RESP3, HTTP/1.1, the memcached text protocol), and what each
 * request means for a heal (it sets session state, it must not run twice,
 * it opens a transaction, it ends framing).
 *
 * Incremental: bytes arrive in any split, one call at a time; the state is
 * a fixed-size struct, nothing is allocated and nothing is copied but a
 * few bytes of a command name or header. A framer that meets something it
 * does not understand fails (-1) and the connection is opaque from then on.
 * Pure code, no system calls: unit tests and fuzz targets drive it. */
#ifndef FLARE_FRAME_H
#define FLARE_FRAME_H

#include "flare.h"

#include <stddef.h>
#include <stdint.h>

/* the service's protocol (flare.h), as the framers name it */
enum {
	PROTO_AUTO = FLARE_PROTO_AUTO,
	PROTO_OPAQUE = FLARE_PROTO_OPAQUE,
	PROTO_REDIS = FLARE_PROTO_REDIS,
	PROTO_HTTP = FLARE_PROTO_HTTP,
	PROTO_MEMCACHED = FLARE_PROTO_MEMCACHED,
};

/* What a request is (fr_req_step's *flags). */
#define RQ_UNSAFE 0x01    /* must not run twice (HTTP POST/PATCH without Idempotency-Key) */
#define RQ_SESSION 0x02   /* sets connection state: replayed first on a new connection */
#define RQ_TXN_BEGIN 0x04 /* MULTI, WATCH: no heal until its end is answered */
#define RQ_TXN_END 0x08   /* EXEC, DISCARD, UNWATCH, RESET */
#define RQ_HEAD 0x10      /* HTTP HEAD: its reply has no body */
#define RQ_ENDS 0x20      /* framing ends after it (upgrade, CONNECT, SUBSCRIBE, MONITOR, QUIT) */
#define RQ_NOREPLY 0x40   /* no reply comes (memcached noreply) */
#define RQ_MC_MULTI 0x80  /* memcached: its reply is lines up to END (get, stats) */
#define RQ_RESET 0x100    /* Redis RESET: the connection's state is back to a new one's */

/* What a reply said (fr_rep_step's *flags). */
#define RP_CLOSE 0x01 /* the server closes after it (Connection: close, HTTP/1.0) */
#define RP_ENDS 0x02  /* framing ends (101 Switching Protocols, a body delimited by EOF) */
#define RP_PUSH 0x04  /* RESP3 push: not the reply to any request */
#define RP_ERROR 0x08 /* an error reply (RESP -, memcached ERROR) */

#define FR_WORD 24        /* bytes of a command name, method or header kept */
#define FR_DEPTH 16       /* RESP aggregate nesting kept */
#define FR_LINE_MAX 65536 /* a protocol line (header, command) longer than this is not framed */

struct fr_req {
	uint8_t proto;   /* enum flare_proto, never AUTO */
	uint8_t st;      /* where in the request */
	uint16_t flags;  /* RQ_* of the request being read */
	uint8_t wlen;    /* bytes in word */
	uint8_t arg;     /* which argument (RESP, memcached) */
	uint8_t unsafe;  /* HTTP: the method is unsafe; idem_key cleared it */
	uint8_t chunked; /* HTTP */
	uint8_t crlf;    /* a CR was seen */
	int64_t need;    /* payload bytes to pass (bulk string, body, chunk, data block) */
	int64_t n;       /* RESP: bulk strings left in the array */
	int64_t cl;      /* HTTP: Content-Length, -1 none */
	uint32_t line;   /* bytes of the current line seen */
	int64_t num;     /* a number being read */
	uint8_t neg, digits, vlen, keep;
	uint8_t clen; /* RESP: bytes of the command name in cmd */
	char word[FR_WORD];
	char cmd[FR_WORD]; /* RESP: the command name; HTTP: a header value's first bytes */
};

struct fr_rep {
	uint8_t proto;
	uint8_t st;
	uint8_t flags; /* RP_* of the reply being read */
	uint8_t depth; /* RESP: aggregates open */
	uint8_t wlen;
	uint8_t chunked, crlf;
	uint16_t rq;        /* RQ_* of the request this reply answers (set by the caller) */
	uint16_t attr_mask; /* RESP3: which open levels are attributes */
	uint8_t http10;     /* HTTP/1.0: closes unless keep-alive */
	int64_t need;
	int64_t cl;
	uint32_t line;
	int64_t num;
	uint8_t neg, digits, vlen, keep_alive, keep;
	uint16_t status;
	char val[FR_WORD]; /* HTTP: a header value's first bytes */
	char word[FR_WORD];
	int64_t left[FR_DEPTH]; /* RESP: elements left at each level */
};

/* The protocol the first bytes a connection writes start, or OPAQUE
 * (n may be short: the first write of a request is rarely split). */
int fr_detect(const uint8_t *p, size_t n);

void fr_req_init(struct fr_req *f, int proto);
void fr_rep_init(struct fr_rep *f, int proto);
/* Consumes bytes up to and including the end of one message, or all of
 * them: returns how many, with *ended 1 when a message ended there (and
 * its RQ_/RP_ flags in *flags). -1: not this protocol, framing is over. */
long fr_req_step(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags);
/* Before the first byte of a reply, set f->rq to its request's flags. */
long fr_rep_step(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags);

/* Redis, many messages a call: at a boundary (fr_req_idle, fr_rep_idle),
 * the whole common requests (replies) at the start of p, up to max of
 * them, each one's end in p and its flags, exactly as fr_req_step
 * (fr_rep_step) would frame them one call each; returns how many. What
 * is left goes to the step functions. */
int fr_redis_req_whole(const uint8_t *p, size_t n, size_t *ends, uint16_t *flags, int max);
int fr_redis_rep_whole(const uint8_t *p, size_t n, size_t *ends, uint8_t *flags, int max);

/* Between messages (every framer's first state is 0) */
static inline int fr_req_idle(const struct fr_req *f) { return f->st == 0; }
static inline int fr_rep_idle(const struct fr_rep *f) { return f->st == 0 && f->depth == 0; }

#endif
