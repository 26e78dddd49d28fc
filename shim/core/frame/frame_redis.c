/* Redis RESP2 and RESP3: requests (arrays of bulk strings, or inline
 * command lines) and replies (every RESP3 type but the streamed ones),
 * pipelined. The command name classifies a request: session commands
 * (SELECT, AUTH, HELLO, CLIENT SETNAME, READONLY...), transactions
 * (MULTI/WATCH ... EXEC/DISCARD/UNWATCH), and the commands after which the
 * connection is no longer request/reply (SUBSCRIBE, MONITOR, QUIT...). */
#include "frame/frame.h"
#include "frame/frame_int.h"

enum { R_START, R_ARRAY_NUM, R_BULK_TYPE, R_BULK_NUM, R_BULK_DATA, R_BULK_CRLF, R_INLINE };

/* By length first: a name is compared whole, as the server does (a NUL
 * is a byte). Out of line: only names of 4 to 10 bytes come here
 * (classify). */
static __attribute__((noinline)) uint16_t classify_named(const char *c, size_t cl, const char *w,
							 size_t wl)
{
	switch (cl) {
	case 4:
		if (fr_is(c, cl, "AUTH"))
			return RQ_SESSION;
		if (fr_is(c, cl, "EXEC"))
			return RQ_TXN_END;
		return fr_is(c, cl, "SYNC") || fr_is(c, cl, "QUIT") ? RQ_ENDS : 0;
	case 5:
		if (fr_is(c, cl, "HELLO"))
			return RQ_SESSION;
		if (fr_is(c, cl, "MULTI") || fr_is(c, cl, "WATCH"))
			return RQ_TXN_BEGIN;
		if (fr_is(c, cl, "RESET"))
			return RQ_TXN_END | RQ_RESET;
		return fr_is(c, cl, "PSYNC") ? RQ_ENDS : 0;
	case 6:
		if (fr_is(c, cl, "SELECT"))
			return RQ_SESSION;
		if (!fr_is(c, cl, "CLIENT"))
			return 0;
		if (fr_is(w, wl, "SETNAME") || fr_is(w, wl, "SETINFO") ||
		    fr_is(w, wl, "NO-EVICT") || fr_is(w, wl, "NO-TOUCH"))
			return RQ_SESSION;
		if (fr_is(w, wl, "REPLY") || fr_is(w, wl, "TRACKING"))
			return RQ_ENDS; /* replies stop coming one for one */
		return 0;
	case 7:
		if (fr_is(c, cl, "DISCARD") || fr_is(c, cl, "UNWATCH"))
			return RQ_TXN_END;
		return fr_is(c, cl, "MONITOR") ? RQ_ENDS : 0;
	case 8:
		if (fr_is(c, cl, "READONLY"))
			return RQ_SESSION;
		return fr_is(c, cl, "SHUTDOWN") ? RQ_ENDS : 0;
	case 9:
		if (fr_is(c, cl, "READWRITE"))
			return RQ_SESSION;
		return fr_is(c, cl, "SUBSCRIBE") ? RQ_ENDS : 0;
	case 10: return fr_is(c, cl, "PSUBSCRIBE") || fr_is(c, cl, "SSUBSCRIBE") ? RQ_ENDS : 0;
	default: return 0;
	}
}

/* A command's RQ_* flags; GET, SET and every name not of 4 to 10 bytes
 * are none of the session, transaction or ending commands. */
static inline uint16_t classify(const char *c, size_t cl, const char *w, size_t wl)
{
	return cl - 4 <= 6 ? classify_named(c, cl, w, wl) : 0;
}

/* Back at a request boundary: only what the next request reads before
 * writing is reset (every request is framed, so this is the hot path). */
static void req_reset(struct fr_req *f)
{
	f->st = R_START;
	f->arg = 0;
	f->keep = 0;
	f->wlen = 0;
	f->clen = 0;
	f->line = 0;
}

/* The request is over: its flags, and the parser back at a boundary. */
static long req_end(struct fr_req *f, long used, int *ended, uint16_t *flags)
{
	*flags = classify(f->cmd, f->clen, f->word, f->wlen);
	*ended = 1;
	req_reset(f);
	return used;
}

/* "digits\r\n" at p[*i]: the value, *i past it; -1 when it is not. One
 * and two digits (every length of a command's arguments, nearly) first. */
static inline __attribute__((always_inline)) int whole_num(const uint8_t *p, size_t n, size_t *i,
							   int64_t *v)
{
	size_t j = *i;
	if (n - j >= 4) {
		unsigned d0 = (unsigned)p[j] - '0', d1 = (unsigned)p[j + 1] - '0';
		if (d0 <= 9 && p[j + 1] == '\r' && p[j + 2] == '\n') {
			*i = j + 3;
			*v = d0;
			return 0;
		}
		if (d0 <= 9 && d1 <= 9 && p[j + 2] == '\r' && p[j + 3] == '\n') {
			*i = j + 4;
			*v = d0 * 10 + d1;
			return 0;
		}
	}
	size_t end = n - j > FR_NUM_DIGITS ? j + FR_NUM_DIGITS : n;
	int64_t x = 0;
	while (j < end && (unsigned)(p[j] - '0') <= 9)
		x = x * 10 + (p[j++] - '0');
	if (j == *i || j + 1 >= n || p[j] != '\r' || p[j + 1] != '\n')
		return -1;
	*i = j + 2;
	*v = x;
	return 0;
}

/* The common case, a whole request array in the buffer at a boundary, in
 * one straight pass instead of a state switch per byte: its length, or 0
 * (nothing changed) for anything else, which the state machine then reads
 * (and rejects, if it must). The command's name and CLIENT's subcommand
 * are classified where they lie. The fuzz target holds the two to the same
 * answers: whole buffers take this path, single bytes the other. */
static inline __attribute__((always_inline)) long whole_request(const uint8_t *p, size_t n,
								int *ended, uint16_t *flags)
{
	size_t i = 1, cl = 0, wl = 0;
	int64_t count, len;
	const char *cmd = NULL, *word = NULL;
	if (whole_num(p, n, &i, &count) < 0 || count <= 0)
		return 0;
	for (int64_t a = 0; a < count; a++) {
		if (i >= n || p[i] != '$')
			return 0;
		i++;
		if (whole_num(p, n, &i, &len) < 0 || (uint64_t)len + 2 > n - i ||
		    p[i + (size_t)len] != '\r' || p[i + (size_t)len + 1] != '\n')
			return 0;
		size_t keep = (size_t)len < FR_WORD ? (size_t)len : FR_WORD;
		if (a == 0) {
			cmd = (const char *)p + i;
			cl = keep;
		} else if (a == 1) {
			word = (const char *)p + i;
			wl = keep;
		}
		i += (size_t)len + 2;
	}
	*flags = classify(cmd, cl, word, wl);
	*ended = 1;
	return (long)i;
}

long fr_redis_req(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags)
{
	size_t i = 0;
	*ended = 0;
	if (f->st == R_START && n > 1 && p[0] == '*') {
		long whole = whole_request(p, n, ended, flags);
		if (whole)
			return whole;
	}
	while (i < n) {
		uint8_t c = p[i];
		int r;
		switch (f->st) {
		case R_START:
			if (c == '*') {
				f->st = R_ARRAY_NUM;
				fr_num_reset(&f->num, &f->neg, &f->digits);
			} else if (c == '\r' || c == '\n') {
				/* an empty inline line: the server ignores it */
			} else {
				f->st = R_INLINE;
				f->wlen = 0;
				fr_keep(f->cmd, &f->wlen, c);
				f->line = 1;
			}
			i++;
			break;
		case R_ARRAY_NUM:
			r = fr_num_byte(&f->num, &f->neg, &f->digits, c);
			i++;
			if (r < 0)
				return -1;
			if (r == 1) {
				if (f->num <=
				    0) /* an empty command: nothing runs, nothing answers */
					req_reset(f);
				else {
					f->n = f->num;
					f->arg = 0;
					f->st = R_BULK_TYPE;
				}
			}
			break;
		case R_BULK_TYPE:
			if (c != '$')
				return -1;
			fr_num_reset(&f->num, &f->neg, &f->digits);
			f->st = R_BULK_NUM;
			i++;
			break;
		case R_BULK_NUM:
			/* the digits in one go: every argument has a length */
			while (i + 1 < n && p[i] >= '0' && p[i] <= '9' &&
			       f->digits < FR_NUM_DIGITS) {
				f->num = f->num * 10 + (p[i++] - '0');
				f->digits++;
			}
			c = p[i];
			r = fr_num_byte(&f->num, &f->neg, &f->digits, c);
			i++;
			if (r < 0 || (r == 1 && f->num < 0))
				return -1;
			if (r == 1) {
				f->need = f->num;
				if (f->arg == 0)
					f->wlen = 0;
				f->st = R_BULK_DATA;
			}
			break;
		case R_BULK_DATA: {
			size_t k = n - i < (size_t)f->need ? n - i : (size_t)f->need;
			/* the command's name, and CLIENT's subcommand */
			if (f->arg == 0 || (f->arg == 1 && f->keep))
				for (size_t j = 0; j < k && f->wlen < FR_WORD; j++)
					fr_keep(f->arg ? f->word : f->cmd, &f->wlen, p[i + j]);
			i += k;
			f->need -= (int64_t)k;
			if (f->need == 0) {
				if (f->arg == 0)
					f->clen = f->wlen;
				f->st = R_BULK_CRLF;
				f->crlf = 0;
			}
			break;
		}
		case R_BULK_CRLF:
			if (c != (f->crlf ? '\n' : '\r'))
				return -1;
			i++;
			if (f->crlf++ == 0)
				break;
			f->arg = f->arg < 2 ? f->arg + 1 : 2;
			if (f->arg == 1) {
				f->keep = fr_is(f->cmd, f->clen, "CLIENT");
				f->wlen = 0; /* the subcommand goes to word */
			}
			if (--f->n == 0)
				return req_end(f, (long)i, ended, flags);
			f->st = R_BULK_TYPE;
			break;
		case R_INLINE:
			i++;
			if (++f->line > FR_LINE_MAX)
				return -1;
			if (c == '\n') {
				if (f->arg == 0) {
					f->clen = f->wlen;
					f->wlen = 0;
				}
				return req_end(f, (long)i, ended, flags);
			}
			if (c == '\r')
				break;
			if (c == ' ') {
				if (f->arg == 0) {
					f->clen = f->wlen;
					f->arg = 1;
					f->wlen = 0;
				} else if (f->arg == 1 && f->wlen) {
					f->arg = 2;
				}
			} else if (f->arg < 2) {
				fr_keep(f->arg ? f->word : f->cmd, &f->wlen, c);
			}
			break;
		}
	}
	return (long)i;
}

/* ---- replies ---- */

enum { P_TYPE, P_LINE, P_NUM, P_BULK, P_BULK_CRLF };

/* One element finished: close the aggregates it completes. 1 when the
 * whole reply is over. */
static int element_done(struct fr_rep *f)
{
	while (f->depth > 0) {
		int lvl = f->depth - 1;
		if (--f->left[lvl] > 0)
			return 0;
		f->depth--;
		if (f->attr_mask >> lvl & 1u) {
			/* an attribute ended: the value it annotates comes next */
			f->attr_mask &= (uint16_t) ~(1u << lvl);
			return 0;
		}
	}
	return 1;
}

static long rep_end(struct fr_rep *f, long used, int *ended, uint8_t *flags)
{
	*ended = 1;
	*flags = f->flags;
	/* at a boundary the levels and the attribute mask are empty again
	 * (element_done closed them); what a reply reads before writing is not
	 * reset: every reply is framed, this is the hot path */
	f->st = P_TYPE;
	f->flags = 0;
	f->depth = 0;
	f->attr_mask = 0;
	return used;
}

/* The common replies, whole in the buffer at a boundary, in one pass: a
 * bulk string or nil, or a simple string, error or integer line. Their
 * length (RP_ERROR in *rflags for an error), or 0 for anything else (the
 * state machine reads it). */
static inline __attribute__((always_inline)) size_t reply_len(const uint8_t *p, size_t n,
							      uint8_t *rflags)
{
	size_t i = 1;
	int64_t len;
	*rflags = 0;
	if (n < 2)
		return 0;
	if (p[0] == '$' && n >= 5 && memcmp(p, "$-1\r\n", 5) == 0) {
		i = 5; /* nil */
	} else if (p[0] == '$') {
		if (whole_num(p, n, &i, &len) < 0 || (uint64_t)len + 2 > n - i ||
		    p[i + (size_t)len] != '\r' || p[i + (size_t)len + 1] != '\n')
			return 0;
		i += (size_t)len + 2;
	} else if (p[0] == '+' || p[0] == '-' || p[0] == ':') {
		const uint8_t *nl = memchr(p, '\n', n);
		if (!nl)
			return 0;
		i = (size_t)(nl - p) + 1;
		if (p[0] == '-')
			*rflags = RP_ERROR;
	} else {
		return 0;
	}
	return i;
}

static long whole_reply(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags)
{
	uint8_t rflags;
	size_t i = reply_len(p, n, &rflags);
	if (!i)
		return 0;
	f->flags |= rflags;
	return rep_end(f, (long)i, ended, flags);
}

int fr_redis_req_whole(const uint8_t *p, size_t n, size_t *ends, uint16_t *flags, int max)
{
	size_t off = 0;
	int k = 0, ended;
	while (k < max && n - off > 1 && p[off] == '*') {
		long used = whole_request(p + off, n - off, &ended, &flags[k]);
		if (!used)
			break;
		off += (size_t)used;
		ends[k++] = off;
	}
	return k;
}

int fr_redis_rep_whole(const uint8_t *p, size_t n, size_t *ends, uint8_t *flags, int max)
{
	size_t off = 0;
	int k = 0;
	while (k < max && off < n) {
		size_t used = reply_len(p + off, n - off, &flags[k]);
		if (!used)
			break;
		off += used;
		ends[k++] = off;
	}
	return k;
}

long fr_redis_rep(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags)
{
	size_t i = 0;
	*ended = 0;
	if (f->st == P_TYPE && f->depth == 0 && n > 1) {
		long whole = whole_reply(f, p, n, ended, flags);
		if (whole)
			return whole;
	}
	while (i < n) {
		uint8_t c = p[i];
		int r;
		switch (f->st) {
		case P_TYPE:
			i++;
			f->wlen = c; /* the type, until its line is read */
			fr_num_reset(&f->num, &f->neg, &f->digits);
			switch (c) {
			case '-':
				if (f->depth == 0)
					f->flags |= RP_ERROR;
				/* fall through */
			case '+':
			case ':':
			case '_':
			case ',':
			case '#':
			case '(': f->st = P_LINE; break;
			case '$':
			case '!':
			case '=':
			case '*':
			case '~':
			case '%':
			case '|':
			case '>':
				if (c == '>' && f->depth == 0)
					f->flags |= RP_PUSH;
				if (c == '!' && f->depth == 0)
					f->flags |= RP_ERROR;
				f->st = P_NUM;
				break;
			default: return -1; /* streamed types, or not RESP */
			}
			break;
		case P_LINE:
			i++;
			if (c == '\n') {
				f->st = P_TYPE;
				if (element_done(f))
					return rep_end(f, (long)i, ended, flags);
			}
			break;
		case P_NUM:
			r = fr_num_byte(&f->num, &f->neg, &f->digits, c);
			i++;
			if (r < 0)
				return -1;
			if (r == 0)
				break;
			f->st = P_TYPE;
			if (f->wlen == '$' || f->wlen == '!' || f->wlen == '=') {
				if (f->num >= 0) {
					f->need = f->num;
					f->st = P_BULK;
					break;
				}
			} else if (f->num > 0) {
				if (f->depth == FR_DEPTH)
					return -1;
				int pairs = f->wlen == '%' || f->wlen == '|';
				if (f->wlen == '|')
					f->attr_mask |= (uint16_t)(1u << f->depth);
				f->left[f->depth++] = f->num * (pairs ? 2 : 1);
				break;
			}
			/* a null, or an empty aggregate: one whole element */
			if (element_done(f))
				return rep_end(f, (long)i, ended, flags);
			break;
		case P_BULK: {
			size_t k = n - i < (size_t)f->need ? n - i : (size_t)f->need;
			i += k;
			f->need -= (int64_t)k;
			if (f->need == 0) {
				f->st = P_BULK_CRLF;
				f->crlf = 0;
			}
			break;
		}
		case P_BULK_CRLF:
			if (c != (f->crlf ? '\n' : '\r'))
				return -1;
			i++;
			if (f->crlf++ == 0)
				break;
			f->st = P_TYPE;
			if (element_done(f))
				return rep_end(f, (long)i, ended, flags);
			break;
		}
	}
	return (long)i;
}
