/* HTTP/1.1: requests (request line, headers, a body by Content-Length or
 * chunked) and replies (status line, headers, a body by Content-Length,
 * chunked, or none for HEAD, 1xx, 204 and 304), pipelined. A reply whose
 * body ends only at the close, a 101 (WebSocket, h2c) and CONNECT end
 * framing; Connection: close and HTTP/1.0 replies say the server will
 * close. GET, HEAD, OPTIONS, TRACE, PUT and DELETE may run twice (RFC 9110
 * idempotent methods); POST, PATCH and any other method only with an
 * Idempotency-Key header. */
#include "frame/frame.h"
#include "frame/frame_int.h"

/* FR_SCALAR: the portable path, for the fuzz target that holds it to the others */
#if defined(__SSE2__) && !defined(FR_SCALAR)
#define FR_SSE2 1
#include <emmintrin.h>
#endif

enum {
	H_START,   /* before a request or status line */
	H_FIRST,   /* in it */
	H_HDR,     /* at the start of a header line */
	H_NAME,    /* in a header name */
	H_VALUE,   /* in a header value */
	H_HDR_END, /* the empty line's '\n' */
	H_BODY,    /* Content-Length bytes */
	H_CHUNK,   /* a chunk-size line */
	H_CHUNK_DATA,
	H_CHUNK_CRLF,
	H_TRAILER, /* header lines after the last chunk */
};

/* the state both directions share, so one set of line rules serves both */
struct hline {
	unsigned want; /* the HD_* bits this direction reads */
	uint8_t *st, *wlen, *vlen, *chunked, *crlf, *keep;
	uint32_t *line;
	int64_t *cl, *need, *num;
	uint8_t *neg, *digits;
	char *word, *val;
};

/* The line state of a request or a reply parser (fr_req and fr_rep name
 * these fields alike); value: where a header value's first bytes go. */
#define HLINE_OF(f, value, wanted)                                                                 \
	((struct hline){.want = (wanted),                                                          \
			.st = &(f)->st,                                                            \
			.wlen = &(f)->wlen,                                                        \
			.vlen = &(f)->vlen,                                                        \
			.chunked = &(f)->chunked,                                                  \
			.crlf = &(f)->crlf,                                                        \
			.keep = &(f)->keep,                                                        \
			.line = &(f)->line,                                                        \
			.cl = &(f)->cl,                                                            \
			.need = &(f)->need,                                                        \
			.num = &(f)->num,                                                          \
			.neg = &(f)->neg,                                                          \
			.digits = &(f)->digits,                                                    \
			.word = (f)->word,                                                         \
			.val = (f)->value})

static int hex_val(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (uint8_t)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The headers framing reads (hline.keep while one is read); a direction
 * reads only some of them. */
enum { HD_OTHER, HD_CONTENT_LENGTH, HD_TRANSFER_ENCODING, HD_CONNECTION, HD_IDEMPOTENCY_KEY };
#define HD_BIT(id) (1u << (id))
#define HD_REQUEST                                                                                 \
	(HD_BIT(HD_CONTENT_LENGTH) | HD_BIT(HD_TRANSFER_ENCODING) | HD_BIT(HD_IDEMPOTENCY_KEY))
#define HD_REPLY (HD_BIT(HD_CONTENT_LENGTH) | HD_BIT(HD_TRANSFER_ENCODING) | HD_BIT(HD_CONNECTION))
/* their names' lengths (header_id's cases) */
#define HD_LENGTHS (1u << 14 | 1u << 17 | 1u << 10 | 1u << 15)

static int header_id(const char *name, size_t n, unsigned want)
{
	int id;
	switch (n) { /* by length first: most names are rejected there */
	case 14: id = fr_is(name, n, "CONTENT-LENGTH") ? HD_CONTENT_LENGTH : 0; break;
	case 17: id = fr_is(name, n, "TRANSFER-ENCODING") ? HD_TRANSFER_ENCODING : 0; break;
	case 10: id = fr_is(name, n, "CONNECTION") ? HD_CONNECTION : 0; break;
	case 15: id = fr_is(name, n, "IDEMPOTENCY-KEY") ? HD_IDEMPOTENCY_KEY : 0; break;
	default: return 0;
	}
	return want & HD_BIT(id) ? id : 0;
}

/* A Connection value's tokens (separated by blanks and commas): close,
 * keep-alive. */
static void conn_tokens(const char *v, size_t n, uint8_t *close, uint8_t *keep_alive)
{
	if (fr_is(v, n, "KEEP-ALIVE")) { /* the usual value, whole */
		*keep_alive = 1;
		return;
	}
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && v[j] != ' ' && v[j] != ',')
			j++;
		if (fr_is(v + i, j - i, "CLOSE"))
			*close = 1;
		else if (fr_is(v + i, j - i, "KEEP-ALIVE"))
			*keep_alive = 1;
		i = j + 1;
	}
}

/* What the headers framing reads said, for either direction. */
struct hd {
	int64_t cl; /* Content-Length, -1 none */
	uint8_t chunked, idem, close, keep_alive;
};

/* One header framing reads, its value's first FR_WORD bytes in v (vl is
 * FR_WORD when it was longer): -1 when it cannot be read (framing is
 * over). */
static int hd_take(struct hd *r, int id, const char *v, size_t vl)
{
	switch (id) {
	case HD_CONTENT_LENGTH: {
		int64_t x = 0;
		if (vl == 0 || vl >= FR_WORD)
			return -1;
		for (size_t i = 0; i < vl; i++) {
			if ((unsigned)(v[i] - '0') > 9 || i >= FR_NUM_DIGITS)
				return -1;
			x = x * 10 + (v[i] - '0');
		}
		if (r->cl >= 0 && r->cl != x)
			return -1; /* two lengths that differ: request smuggling territory */
		r->cl = x;
		return 0;
	}
	case HD_TRANSFER_ENCODING:
		if (vl >= FR_WORD)
			return -1;
		/* chunked must be the last coding */
		r->chunked = vl >= 7 && fr_is(v + vl - 7, 7, "CHUNKED");
		return r->chunked ? 0 : -1;
	case HD_CONNECTION: conn_tokens(v, vl, &r->close, &r->keep_alive); return 0;
	case HD_IDEMPOTENCY_KEY: r->idem = 1; return 0;
	default: return 0;
	}
}

/* One byte of the chunked body; 1 when the body (and its trailers) ended. */
static int chunk_byte(struct hline *h, uint8_t c)
{
	switch (*h->st) {
	case H_CHUNK:
		if (++*h->line > FR_LINE_MAX)
			return -1;
		if (c == '\n') {
			if (!*h->digits)
				return -1;
			*h->need = *h->num;
			*h->st = *h->num ? H_CHUNK_DATA : H_TRAILER;
			*h->line = 0;
			return 0;
		}
		if (*h->neg) /* in a chunk extension: skipped */
			return 0;
		if (c == ';' || c == ' ' || c == '\t' || c == '\r') {
			*h->neg = 1;
			return 0;
		}
		if (hex_val(c) < 0 || ++*h->digits > 15)
			return -1;
		*h->num = *h->num * 16 + hex_val(c);
		return 0;
	case H_CHUNK_CRLF:
		if (c != (*h->crlf ? '\n' : '\r'))
			return -1;
		if ((*h->crlf)++) {
			*h->st = H_CHUNK;
			*h->num = 0;
			*h->neg = *h->digits = 0;
		}
		return 0;
	default: /* H_TRAILER: lines up to an empty one */
		if (++*h->line > FR_LINE_MAX)
			return -1;
		if (c == '\n') {
			int empty = *h->line <= 2;
			*h->line = 0;
			return empty ? 1 : 0;
		}
		return 0;
	}
}

/* After the headers: where the body is. 0 when there is none. */
static inline __attribute__((always_inline)) int body_start(struct hline *h)
{
	if (*h->chunked) {
		*h->st = H_CHUNK;
		*h->line = 0;
		fr_num_reset(h->num, h->neg, h->digits);
		return 1;
	}
	if (*h->cl <= 0)
		return 0;
	*h->need = *h->cl;
	*h->st = H_BODY;
	return 1;
}

/* The body's bytes at p[*i] (Content-Length, or chunked with its
 * trailers): 1 when the body ended there, 0 to go on, -1 when it cannot
 * be read. */
static int body_step(struct hline *h, const uint8_t *p, size_t n, size_t *i)
{
	if (*h->st == H_BODY || *h->st == H_CHUNK_DATA) {
		size_t k = n - *i < (size_t)*h->need ? n - *i : (size_t)*h->need;
		*i += k;
		*h->need -= (int64_t)k;
		if (*h->need > 0)
			return 0;
		if (*h->st == H_BODY)
			return 1;
		*h->st = H_CHUNK_CRLF;
		*h->crlf = 0;
		return 0;
	}
	return chunk_byte(h, p[(*i)++]);
}

/* One byte of a header section (after the first line). 1 at its end. */
/* What a header said that only one direction keeps (idempotency, close) */
typedef void take_fn(void *owner, const struct hd *r);

/* A header framing reads, whole: its length or coding into the line
 * state, the rest to take. -1 when it cannot be read. */
static int header_done(struct hline *h, take_fn *take, void *owner)
{
	struct hd r = {.cl = *h->cl, .chunked = *h->chunked};
	if (hd_take(&r, *h->keep, h->val, *h->vlen) < 0)
		return -1;
	*h->cl = r.cl;
	*h->chunked = r.chunked;
	take(owner, &r);
	return 0;
}

static int header_byte(struct hline *h, uint8_t c, take_fn *take, void *owner)
{
	switch (*h->st) {
	case H_HDR:
		if (c == '\r') {
			*h->st = H_HDR_END;
			return 0;
		}
		if (c == '\n')
			return 1;
		*h->wlen = *h->vlen = 0;
		*h->line = 1;
		fr_keep(h->word, h->wlen, c);
		*h->st = H_NAME;
		return 0;
	case H_HDR_END: return c == '\n' ? 1 : -1;
	case H_NAME:
		if (++*h->line > FR_LINE_MAX || c == '\n')
			return -1;
		if (c == ':') {
			*h->st = H_VALUE;
			*h->keep = (uint8_t)header_id(h->word, *h->wlen, h->want);
		} else {
			fr_keep(h->word, h->wlen, c);
		}
		return 0;
	default: /* H_VALUE */
		if (++*h->line > FR_LINE_MAX)
			return -1;
		if (c == '\n') {
			/* trailing blanks go; a value too long keeps its length */
			while (*h->vlen && *h->vlen < FR_WORD &&
			       (h->val[*h->vlen - 1] == ' ' || h->val[*h->vlen - 1] == '\t'))
				(*h->vlen)--;
			*h->st = H_HDR;
			return *h->keep && header_done(h, take, owner) < 0 ? -1 : 0;
		}
		if (!*h->keep || c == '\r' || ((c == ' ' || c == '\t') && *h->vlen == 0))
			return 0;
		if (*h->vlen < FR_WORD)
			h->val[(*h->vlen)++] = (char)c;
		else
			*h->vlen = FR_WORD; /* too long to be one we read */
		return 0;
	}
}

/* Bytes of p[0, n) before the next '\n' (all of them when none). */
static size_t to_eol(const uint8_t *p, size_t n)
{
	const uint8_t *nl = memchr(p, '\n', n);
	return nl ? (size_t)(nl - p) : n;
}

/* The fast path through lines: a header name up to its ':', a header
 * value up to its end of line (the first FR_WORD bytes kept for the
 * headers framing reads, leading blanks and CRs not), and the rest of a
 * first line once what is needed of it is kept; taken as header_byte
 * would one at a time. Returns the bytes passed; 0 when the next byte
 * must go the slow way. */
static inline size_t line_run(uint8_t st, int skip_first, struct hline *h, const uint8_t *p,
			      size_t n)
{
	size_t k = 0;
	if (st == H_NAME) {
		while (k < n && p[k] != ':' && p[k] != '\n') {
			if (*h->wlen < FR_WORD)
				h->word[(*h->wlen)++] = (char)p[k];
			k++;
		}
	} else if (st == H_VALUE || (st == H_FIRST && skip_first)) {
		k = to_eol(p, n);
		for (size_t j = 0; st == H_VALUE && *h->keep && j < k && *h->vlen < FR_WORD; j++) {
			uint8_t c = p[j];
			if (c != '\r' && !((c == ' ' || c == '\t') && *h->vlen == 0))
				h->val[(*h->vlen)++] = (char)c;
		}
	}
	*h->line += (uint32_t)k;
	return k;
}

/* A header value's first FR_WORD bytes as header_byte keeps them
 * (leading blanks and every CR dropped, trailing blanks too unless it is
 * too long): where they lie when no CR is among them, else copied to tmp.
 * v..e: from after the ':' to the '\n'. */
static const char *value_of(const uint8_t *v, const uint8_t *e, char *tmp, size_t *vl)
{
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	const uint8_t *end = e > v && e[-1] == '\r' ? e - 1 : e;
	size_t k = (size_t)(end - v) < FR_WORD ? (size_t)(end - v) : FR_WORD;
	const char *val = (const char *)v;
	if (memchr(v, '\r', k)) {
		/* a CR inside: the byte rules, one at a time */
		k = 0;
		for (; v < e && k < FR_WORD; v++)
			if (*v != '\r' && !((*v == ' ' || *v == '\t') && k == 0))
				tmp[k++] = (char)*v;
		val = tmp;
	}
	while (k && k < FR_WORD && (val[k - 1] == ' ' || val[k - 1] == '\t'))
		k--;
	*vl = k;
	return val;
}

/* Bit k of *nl and *co: p[base + k] is '\n', ':' (for the 64 bytes from
 * base; none at or past n). Sixteen bytes a compare where SSE2 is (every
 * x86-64), a byte at a time elsewhere. */
#ifdef FR_SSE2
/* Bit k: q[k] == c, for the 16 bytes at q */
static inline uint64_t eq16(const uint8_t *q, __m128i c)
{
	return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)q), c));
}
#endif

static inline void masks64(const uint8_t *p, size_t n, size_t base, uint64_t *nl, uint64_t *co)
{
	uint64_t mn = 0, mc = 0;
#ifdef FR_SSE2
	const __m128i vn = _mm_set1_epi8('\n'), vc = _mm_set1_epi8(':');
	if (n - base >= 64) { /* the common case: four plain steps */
		for (int k = 0; k < 4; k++) {
			mn |= eq16(p + base + 16 * k, vn) << (16 * k);
			mc |= eq16(p + base + 16 * k, vc) << (16 * k);
		}
	} else if (n >= 16) {
		for (size_t k = 0; base + 16 * k < n; k++) {
			/* a step past n is the last 16 bytes, shifted: nothing is
			 * read outside p[0, n) */
			size_t off = base + 16 * k, at = off + 16 <= n ? off : n - 16;
			mn |= eq16(p + at, vn) >> (off - at) << (16 * k);
			mc |= eq16(p + at, vc) >> (off - at) << (16 * k);
		}
	} else
#endif
		for (size_t k = 0; k < 64 && base + k < n; k++) {
			mn |= (uint64_t)(p[base + k] == '\n') << k;
			mc |= (uint64_t)(p[base + k] == ':') << k;
		}
	*nl = mn;
	*co = mc;
}

/* The first ':' of the line that began at p[i] found among the colons of
 * the 64 bytes from base (com), after its first byte and before bit `below`
 * (64: the whole block); SIZE_MAX when none. */
static inline size_t colon_in(uint64_t com, size_t base, size_t i, unsigned below)
{
	unsigned lo = i + 1 > base ? (unsigned)(i + 1 - base) : 0;
	if (lo >= below)
		return SIZE_MAX;
	uint64_t m = com >> lo << lo;
	if (below < 64)
		m &= (1ull << below) - 1;
	return m ? base + (size_t)__builtin_ctzll(m) : SIZE_MAX;
}

/* The common case in one pass: a whole header section in the buffer at a
 * message boundary. Where every '\n' and ':' is comes 64 bytes at a time
 * as bit masks (masks64), and the lines are walked by their '\n' bits; only
 * the headers the direction reads (want) are looked at, taken exactly as
 * header_byte takes them one byte at a time, into r. Returns the section's
 * length (its first line the caller's to read); 0 for anything else (the
 * state machine reads it, and refuses what it must). The fuzz targets hold
 * the two paths to the same answers. */
static size_t whole_headers(const uint8_t *restrict p, size_t n, const uint8_t *fl, unsigned want,
			    struct hd *restrict r)
{
	/* fl: the first line's '\n', which the caller found */
	if (p[0] == '\r' || p[0] == '\n')
		return 0;
	size_t i = (size_t)(fl - p) + 1; /* where the current line begins */
	size_t colon = SIZE_MAX;         /* its first ':', once seen */
	if (i > FR_LINE_MAX)
		return 0;
	for (size_t base = i; base < n; base += 64) {
		uint64_t nlm, com;
		masks64(p, n, base, &nlm, &com);
		for (; nlm; nlm &= nlm - 1) {
			size_t e = base + (size_t)__builtin_ctzll(nlm);
			if (colon == SIZE_MAX)
				colon = colon_in(com, base, i, (unsigned)(e - base));
			size_t len = e - i;
			if (len == 0 || (len == 1 && p[i] == '\r'))
				return e + 1; /* the empty line */
			if (colon == SIZE_MAX || len + 1 > FR_LINE_MAX || p[i] == '\r')
				return 0;
			size_t nlen = colon - i;
			/* only four lengths can name a header framing reads */
			if (nlen < 32 && (HD_LENGTHS >> nlen & 1u)) {
				int id = header_id((const char *)p + i, nlen, want);
				if (id) {
					char tmp[FR_WORD];
					size_t vl;
					const char *v = value_of(p + colon + 1, p + e, tmp, &vl);
					if (hd_take(r, id, v, vl) < 0)
						return 0;
				}
			}
			i = e + 1;
			colon = SIZE_MAX;
		}
		/* the line goes on past these 64 bytes: a ':' of it here */
		if (colon == SIZE_MAX)
			colon = colon_in(com, base, i, 64);
	}
	return 0; /* the section goes on past the buffer */
}

/* ---- requests ---- */

static void req_take(void *owner, const struct hd *r)
{
	struct fr_req *f = owner;
	if (r->idem)
		f->unsafe = 0;
}

static long req_done(struct fr_req *f, long used, int *ended, uint16_t *flags)
{
	*flags = (uint16_t)(f->flags | (f->unsafe ? RQ_UNSAFE : 0));
	*ended = 1;
	fr_req_init(f, PROTO_HTTP);
	return used;
}

/* A method's flags, and whether it may not run twice. */
static uint16_t method_flags(const char *w, size_t n, uint8_t *unsafe)
{
	*unsafe = !(fr_is(w, n, "GET") || fr_is(w, n, "HEAD") || fr_is(w, n, "OPTIONS") ||
		    fr_is(w, n, "TRACE") || fr_is(w, n, "PUT") || fr_is(w, n, "DELETE"));
	if (fr_is(w, n, "HEAD"))
		return RQ_HEAD;
	return fr_is(w, n, "CONNECT") ? RQ_ENDS : 0;
}

/* The request line's method, kept in word: its flags. */
static void method(struct fr_req *f) { f->flags |= method_flags(f->word, f->wlen, &f->unsafe); }

/* After the headers: where the body is. 0 when there is none. */
static inline __attribute__((always_inline)) int req_body_start(struct fr_req *f)
{
	struct hline h = HLINE_OF(f, cmd, HD_REQUEST);
	return body_start(&h);
}

/* A whole request head in one pass (whole_headers), and its body when it
 * has a length and is all there; 0 (f untouched) when it is not. */
static long whole_request(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags)
{
	struct hd r = {.cl = -1};
	const uint8_t *nl = memchr(p, '\n', n), *sp = nl ? memchr(p, ' ', (size_t)(nl - p)) : NULL;
	if (!sp || sp == p)
		return 0;
	uint8_t unsafe;
	size_t mlen = (size_t)(sp - p) < FR_WORD ? (size_t)(sp - p) : FR_WORD;
	uint16_t mflags = method_flags((const char *)p, mlen, &unsafe);
	size_t used = whole_headers(p, n, nl, HD_REQUEST, &r);
	if (!used)
		return 0;
	f->flags |= mflags;
	f->unsafe = unsafe;
	f->cl = r.cl;
	f->chunked = r.chunked;
	req_take(f, &r);
	if ((f->flags & RQ_ENDS) || !req_body_start(f))
		return req_done(f, (long)used, ended, flags);
	if (f->st == H_BODY && (uint64_t)f->need <= n - used)
		return req_done(f, (long)(used + (size_t)f->need), ended, flags);
	return (long)used; /* the body follows */
}

long fr_http_req(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags)
{
	size_t i = 0;
	*ended = 0;
	if (f->st == H_START && n > 4) {
		long whole = whole_request(f, p, n, ended, flags);
		if (whole)
			return whole;
	}
	struct hline h = HLINE_OF(f, cmd, HD_REQUEST);
	while (i < n) {
		size_t run = line_run(f->st, f->arg == 1, &h, p + i, n - i);
		if (run) {
			if (f->line > FR_LINE_MAX)
				return -1;
			i += run;
			continue;
		}
		uint8_t c = p[i];
		int r;
		switch (f->st) {
		case H_START:
			i++;
			if (c == '\r' || c == '\n')
				break; /* empty lines before a request are allowed */
			f->wlen = 0;
			f->line = 1;
			fr_keep(f->word, &f->wlen, c);
			f->st = H_FIRST;
			f->arg = 0;
			break;
		case H_FIRST:
			i++;
			if (++f->line > FR_LINE_MAX)
				return -1;
			if (c == ' ' && f->arg == 0) {
				method(f);
				f->arg = 1;
			} else if (c == '\n') {
				if (f->arg == 0)
					return -1;
				f->st = H_HDR;
			} else if (f->arg == 0) {
				fr_keep(f->word, &f->wlen, c);
			}
			break;
		case H_HDR:
		case H_HDR_END:
		case H_NAME:
		case H_VALUE:
			i++;
			r = header_byte(&h, c, req_take, f);
			if (r < 0)
				return -1;
			if (r == 0)
				break;
			if ((f->flags & RQ_ENDS) || !body_start(&h))
				return req_done(f, (long)i, ended, flags);
			break;
		default:
			r = body_step(&h, p, n, &i);
			if (r < 0)
				return -1;
			if (r == 1)
				return req_done(f, (long)i, ended, flags);
		}
	}
	return (long)i;
}

/* ---- replies ---- */

static void rep_take(void *owner, const struct hd *r)
{
	struct fr_rep *f = owner;
	if (r->close)
		f->flags |= RP_CLOSE;
	if (r->keep_alive)
		f->keep_alive = 1;
}

static long rep_done(struct fr_rep *f, long used, int *ended, uint8_t *flags)
{
	*flags = f->flags;
	*ended = 1;
	uint16_t rq = f->rq;
	fr_rep_init(f, PROTO_HTTP);
	f->rq = rq;
	return used;
}

/* "HTTP/1.x NNN" (w, wl bytes of the status line but CRs): the status,
 * with whether it is HTTP/1.0; -1 when it is not one. */
static int status_of(const char *w, size_t wl, uint8_t *http10)
{
	if (wl < 12 || memcmp(w, "HTTP/1.", 7) != 0 || w[8] != ' ')
		return -1;
	int code = 0;
	for (int i = 9; i < 12; i++) {
		if (w[i] < '0' || w[i] > '9')
			return -1;
		code = code * 10 + (w[i] - '0');
	}
	*http10 = w[7] == '0'; /* HTTP/1.0, until its headers say keep-alive */
	return code;
}

static int status_line(struct fr_rep *f)
{
	int code = status_of(f->word, f->wlen, &f->http10);
	if (code >= 0)
		f->status = (uint16_t)code;
	return code;
}

/* The headers of a reply are read: where its body is. */
static long rep_headers_done(struct fr_rep *f, long used, int *ended, uint8_t *flags)
{
	if (f->http10 && !f->keep_alive)
		f->flags |= RP_CLOSE;
	if (f->status == 101) {
		f->flags |= RP_ENDS; /* another protocol from here */
		return rep_done(f, used, ended, flags);
	}
	if (f->status >= 100 && f->status < 200) {
		/* interim: the real reply follows, for the same request */
		uint16_t rq = f->rq;
		uint8_t keep = f->flags & RP_CLOSE;
		fr_rep_init(f, PROTO_HTTP);
		f->rq = rq;
		f->flags = keep;
		*ended = 0;
		return used;
	}
	if ((f->rq & RQ_HEAD) || f->status == 204 || f->status == 304)
		return rep_done(f, used, ended, flags);
	if (f->cl < 0 && !f->chunked) {
		/* a body that ends with the connection: no boundary to heal at */
		f->flags |= RP_ENDS | RP_CLOSE;
		return rep_done(f, used, ended, flags);
	}
	struct hline h = HLINE_OF(f, val, HD_REPLY);
	return body_start(&h) ? used : rep_done(f, used, ended, flags);
}

/* A whole reply head in one pass (whole_headers), and its body when it
 * has a length and is all there; 0 (f untouched) when it is not. */
static long whole_reply(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags)
{
	struct hd r = {.cl = -1};
	const uint8_t *nl = memchr(p, '\n', n);
	if (!nl)
		return 0;
	/* of the status line the slow path keeps the first 12 bytes but CRs */
	char tmp[12];
	const char *w = (const char *)p;
	size_t wl = 12;
	if (nl - p < 12 || memchr(p, '\r', 12)) {
		wl = 0;
		for (const uint8_t *c = p; c < nl && wl < 12; c++)
			if (*c != '\r')
				tmp[wl++] = (char)*c;
		w = tmp;
	}
	uint8_t http10;
	int status = status_of(w, wl, &http10);
	if (status < 0)
		return 0;
	size_t used = whole_headers(p, n, nl, HD_REPLY, &r);
	if (!used)
		return 0;
	f->status = (uint16_t)status;
	f->http10 = http10;
	f->cl = r.cl;
	f->chunked = r.chunked;
	rep_take(f, &r);
	long head = rep_headers_done(f, (long)used, ended, flags);
	if (!*ended && f->st == H_BODY && (uint64_t)f->need <= n - used)
		return rep_done(f, head + f->need, ended, flags);
	return head;
}

long fr_http_rep(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags)
{
	size_t i = 0;
	*ended = 0;
	if (f->st == H_START && n > 4) {
		long whole = whole_reply(f, p, n, ended, flags);
		if (whole)
			return whole;
	}
	struct hline h = HLINE_OF(f, val, HD_REPLY);
	while (i < n) {
		/* of the status line, "HTTP/1.x NNN" is all that is read */
		size_t run = line_run(f->st, f->wlen >= 12, &h, p + i, n - i);
		if (run) {
			if (f->line > FR_LINE_MAX)
				return -1;
			i += run;
			continue;
		}
		uint8_t c = p[i];
		int r;
		switch (f->st) {
		case H_START:
		case H_FIRST:
			i++;
			if (++f->line > FR_LINE_MAX)
				return -1;
			if (c == '\n') {
				if (status_line(f) < 0)
					return -1;
				f->st = H_HDR;
			} else if (c != '\r') {
				f->st = H_FIRST;
				fr_keep(f->word, &f->wlen, c);
			}
			break;
		case H_HDR:
		case H_HDR_END:
		case H_NAME:
		case H_VALUE:
			i++;
			r = header_byte(&h, c, rep_take, f);
			if (r < 0)
				return -1;
			if (r == 1) {
				long used = rep_headers_done(f, (long)i, ended, flags);
				if (*ended)
					return used;
			}
			break;
		default:
			r = body_step(&h, p, n, &i);
			if (r < 0)
				return -1;
			if (r == 1)
				return rep_done(f, (long)i, ended, flags);
		}
	}
	return (long)i;
}
