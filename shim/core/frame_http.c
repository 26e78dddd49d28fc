/* HTTP/1.1: requests (request line, headers, a body by Content-Length or
 * chunked) and replies (status line, headers, a body by Content-Length,
 * chunked, or none for HEAD, 1xx, 204 and 304), pipelined. A reply whose
 * body ends only at the close, a 101 (WebSocket, h2c) and CONNECT end
 * framing; Connection: close and HTTP/1.0 replies say the server will
 * close. GET, HEAD, OPTIONS, TRACE, PUT and DELETE may run twice (RFC 9110
 * idempotent methods); POST, PATCH and any other method only with an
 * Idempotency-Key header. */
#include "frame_int.h"

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
	uint8_t *st, *wlen, *vlen, *chunked, *crlf, *keep;
	uint32_t *line;
	int64_t *cl, *need, *num;
	uint8_t *neg, *digits;
	char *word, *val;
};

/* The line state of a request or a reply parser (fr_req and fr_rep name
 * these fields alike); value: where a header value's first bytes go. */
#define HLINE_OF(f, value)                                                                         \
	((struct hline){.st = &(f)->st,                                                            \
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

/* Content-Length and Transfer-Encoding, for either direction; -1 when
 * they cannot be read (framing is over). */
static int body_header(struct hline *h)
{
	size_t vl = *h->vlen;
	if (fr_is(h->word, *h->wlen, "CONTENT-LENGTH")) {
		int64_t v = 0;
		if (vl == 0 || vl >= FR_WORD)
			return -1;
		for (size_t i = 0; i < vl; i++) {
			if (h->val[i] < '0' || h->val[i] > '9' || i >= FR_NUM_DIGITS)
				return -1;
			v = v * 10 + (h->val[i] - '0');
		}
		if (*h->cl >= 0 && *h->cl != v)
			return -1; /* two lengths that differ: request smuggling territory */
		*h->cl = v;
	} else if (fr_is(h->word, *h->wlen, "TRANSFER-ENCODING")) {
		if (vl >= FR_WORD)
			return -1;
		/* chunked must be the last coding */
		*h->chunked = vl >= 7 && fr_is(h->val + vl - 7, 7, "CHUNKED");
		if (!*h->chunked)
			return -1;
	}
	return 0;
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
static int body_start(struct hline *h)
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

/* The headers whose values framing reads; the others are only passed. */
static int wanted(const char *name, size_t n)
{
	switch (n) { /* by length first: most names are rejected there */
	case 14: return fr_is(name, n, "CONTENT-LENGTH");
	case 10: return fr_is(name, n, "CONNECTION");
	case 17: return fr_is(name, n, "TRANSFER-ENCODING");
	case 15: return fr_is(name, n, "IDEMPOTENCY-KEY");
	default: return 0;
	}
}

/* One byte of a header section (after the first line). 1 at its end. */
static int header_byte(struct hline *h, uint8_t c, int (*take)(void *, struct hline *), void *owner)
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
			*h->keep = (uint8_t)wanted(h->word, *h->wlen);
		} else {
			fr_keep(h->word, h->wlen, c);
		}
		return 0;
	default: /* H_VALUE */
		if (++*h->line > FR_LINE_MAX)
			return -1;
		if (c == '\n') {
			while (*h->vlen &&
			       (h->val[*h->vlen - 1] == ' ' || h->val[*h->vlen - 1] == '\t'))
				(*h->vlen)--;
			*h->st = H_HDR;
			return *h->keep && take(owner, h) < 0 ? -1 : 0;
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

/* The common case in one pass: a whole header section in the buffer at a
 * message boundary. Each header line is found with memchr and only the
 * ones framing reads are looked at, taken exactly as header_byte takes
 * them one byte at a time. Returns the section's length, with first (the
 * first line's length, its '\n' included) for the caller to read; 0 for
 * anything else (the state machine reads it, and refuses what it must).
 * The fuzz targets hold the two paths to the same answers. */
static size_t whole_headers(struct hline *h, const uint8_t *p, size_t n, size_t *first,
			    int (*take)(void *, struct hline *), void *owner)
{
	const uint8_t *nl = memchr(p, '\n', n);
	if (!nl || p[0] == '\r' || p[0] == '\n')
		return 0;
	*first = (size_t)(nl - p) + 1;
	if (*first > FR_LINE_MAX)
		return 0;
	for (size_t i = *first; i < n; i = (size_t)(nl - p) + 1) {
		nl = memchr(p + i, '\n', n - i);
		if (!nl)
			return 0; /* the section goes on past the buffer */
		size_t len = (size_t)(nl - p) - i;
		if (len == 0 || (len == 1 && p[i] == '\r'))
			return (size_t)(nl - p) + 1; /* the empty line */
		/* the first byte is the name's, whatever it is (header_byte) */
		const uint8_t *colon = memchr(p + i + 1, ':', len - 1);
		if (!colon || len + 1 > FR_LINE_MAX || p[i] == '\r')
			return 0;
		size_t nlen = (size_t)(colon - p) - i;
		*h->wlen = (uint8_t)(nlen < FR_WORD ? nlen : FR_WORD);
		if (!wanted((const char *)p + i, *h->wlen))
			continue;
		memcpy(h->word, p + i, *h->wlen);
		*h->keep = 1;
		*h->vlen = 0;
		for (const uint8_t *v = colon + 1; v < nl && *h->vlen < FR_WORD; v++)
			if (*v != '\r' && !((*v == ' ' || *v == '\t') && *h->vlen == 0))
				h->val[(*h->vlen)++] = (char)*v;
		while (*h->vlen && (h->val[*h->vlen - 1] == ' ' || h->val[*h->vlen - 1] == '\t'))
			(*h->vlen)--;
		if (take(owner, h) < 0)
			return 0;
	}
	return 0;
}

/* ---- requests ---- */

static int req_header(void *owner, struct hline *h)
{
	struct fr_req *f = owner;
	if (fr_is(h->word, *h->wlen, "IDEMPOTENCY-KEY"))
		f->unsafe = 0;
	return body_header(h);
}

static long req_done(struct fr_req *f, long used, int *ended, uint16_t *flags)
{
	*flags = (uint16_t)(f->flags | (f->unsafe ? RQ_UNSAFE : 0));
	*ended = 1;
	fr_req_init(f, PROTO_HTTP);
	return used;
}

/* The request line's method, kept in word: its flags. */
static void method(struct fr_req *f)
{
	const char *w = f->word;
	size_t n = f->wlen;
	if (fr_is(w, n, "HEAD"))
		f->flags |= RQ_HEAD;
	else if (fr_is(w, n, "CONNECT"))
		f->flags |= RQ_ENDS;
	f->unsafe = !(fr_is(w, n, "GET") || fr_is(w, n, "HEAD") || fr_is(w, n, "OPTIONS") ||
		      fr_is(w, n, "TRACE") || fr_is(w, n, "PUT") || fr_is(w, n, "DELETE"));
}

/* A whole request head in one pass (whole_headers); 0 when it is not. */
static long whole_request(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags)
{
	struct hline h = HLINE_OF(f, cmd);
	size_t first;
	const uint8_t *nl = memchr(p, '\n', n), *sp = nl ? memchr(p, ' ', (size_t)(nl - p)) : NULL;
	if (!sp || sp == p)
		return 0;
	f->wlen = (uint8_t)(sp - p < FR_WORD ? sp - p : FR_WORD);
	memcpy(f->word, p, f->wlen);
	method(f);
	size_t used = whole_headers(&h, p, n, &first, req_header, f);
	if (!used)
		return 0;
	if ((f->flags & RQ_ENDS) || !body_start(&h))
		return req_done(f, (long)used, ended, flags);
	return (long)used; /* the body follows */
}

long fr_http_req(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags)
{
	struct hline h = HLINE_OF(f, cmd);
	size_t i = 0;
	*ended = 0;
	if (f->st == H_START && n > 4) {
		struct fr_req saved = *f;
		long whole = whole_request(f, p, n, ended, flags);
		if (whole)
			return whole;
		*f = saved;
	}
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
			r = header_byte(&h, c, req_header, f);
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

static int has_token(const char *v, size_t n, const char *tok)
{
	size_t t = strlen(tok);
	for (size_t i = 0; i + t <= n; i++)
		if ((i == 0 || v[i - 1] == ' ' || v[i - 1] == ',') && fr_is(v + i, t, tok) &&
		    (i + t == n || v[i + t] == ' ' || v[i + t] == ','))
			return 1;
	return 0;
}

static int rep_header(void *owner, struct hline *h)
{
	struct fr_rep *f = owner;
	if (fr_is(h->word, *h->wlen, "CONNECTION")) {
		if (has_token(h->val, *h->vlen, "CLOSE"))
			f->flags |= RP_CLOSE;
		if (has_token(h->val, *h->vlen, "KEEP-ALIVE"))
			f->keep_alive = 1;
	}
	return body_header(h);
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

/* "HTTP/1.x NNN": the status, or -1. */
static int status_line(struct fr_rep *f)
{
	const char *w = f->word;
	if (f->wlen < 12 || memcmp(w, "HTTP/1.", 7) != 0 || w[8] != ' ')
		return -1;
	int code = 0;
	for (int i = 9; i < 12; i++) {
		if (w[i] < '0' || w[i] > '9')
			return -1;
		code = code * 10 + (w[i] - '0');
	}
	f->status = (uint16_t)code;
	f->http10 = w[7] == '0'; /* HTTP/1.0, until its headers say keep-alive */
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
	struct hline h = HLINE_OF(f, val);
	return body_start(&h) ? used : rep_done(f, used, ended, flags);
}

/* A whole reply head in one pass (whole_headers); 0 when it is not. */
static long whole_reply(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags)
{
	struct hline h = HLINE_OF(f, val);
	size_t first;
	const uint8_t *nl = memchr(p, '\n', n);
	if (!nl)
		return 0;
	/* of the status line the slow path keeps the first 12 bytes but CRs */
	f->wlen = 0;
	for (const uint8_t *c = p; c < nl && f->wlen < 12; c++)
		if (*c != '\r')
			f->word[f->wlen++] = (char)*c;
	if (status_line(f) < 0)
		return 0;
	size_t used = whole_headers(&h, p, n, &first, rep_header, f);
	if (!used)
		return 0;
	return rep_headers_done(f, (long)used, ended, flags);
}

long fr_http_rep(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags)
{
	struct hline h = HLINE_OF(f, val);
	size_t i = 0;
	*ended = 0;
	if (f->st == H_START && n > 4) {
		struct fr_rep saved = *f;
		long whole = whole_reply(f, p, n, ended, flags);
		if (whole)
			return whole;
		*f = saved;
	}
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
			r = header_byte(&h, c, rep_header, f);
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
