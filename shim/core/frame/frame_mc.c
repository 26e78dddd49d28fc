/* The memcached text protocol: storage commands with their data blocks,
 * get/gets/gat/gats with any number of keys (VALUE blocks up to END),
 * stats, the one-line commands, noreply, and the meta commands (mg, ms,
 * md, ma, mn, me) without the quiet flag. Streams (watch, lru_crawler
 * metadump) end framing; a quiet meta command is not framed at all. */
#include "frame/frame.h"
#include "frame/frame_int.h"

enum { M_START, M_LINE, M_DATA, M_DATA_CRLF };

static int storage(const char *c, size_t n)
{
	return fr_is(c, n, "SET") || fr_is(c, n, "ADD") || fr_is(c, n, "REPLACE") ||
	       fr_is(c, n, "APPEND") || fr_is(c, n, "PREPEND") || fr_is(c, n, "CAS");
}

static int meta(const char *c, size_t n) { return n == 2 && (c[0] == 'm' || c[0] == 'M'); }

/* Which token of a request line holds its data block's length, or -1. */
static int bytes_token(const char *cmd, size_t n)
{
	if (storage(cmd, n))
		return 4;
	return fr_is(cmd, n, "MS") ? 2 : -1;
}

static long req_done(struct fr_req *f, long used, int *ended, uint16_t *flags)
{
	*flags = f->flags;
	*ended = 1;
	fr_req_init(f, PROTO_MEMCACHED);
	return used;
}

/* The request line ended: its flags, and whether a data block follows. */
static int line_done(struct fr_req *f)
{
	size_t cl = strnlen(f->cmd, FR_WORD);
	const char *c = f->cmd;
	if (f->arg > 0 && fr_is(f->word, f->wlen, "NOREPLY"))
		f->flags |= RQ_NOREPLY;
	if (fr_is(c, cl, "GET") || fr_is(c, cl, "GETS") || fr_is(c, cl, "GAT") ||
	    fr_is(c, cl, "GATS") || fr_is(c, cl, "STATS"))
		f->flags |= RQ_MC_MULTI;
	else if (fr_is(c, cl, "QUIT") || fr_is(c, cl, "WATCH") || fr_is(c, cl, "LRU_CRAWLER") ||
		 fr_is(c, cl, "SHUTDOWN"))
		f->flags |= RQ_ENDS;
	if (bytes_token(c, cl) < 0)
		return 0;
	if (f->cl < 0)
		return -1; /* a storage command without its length */
	f->need = f->cl + 2;
	return 1;
}

long fr_mc_req(struct fr_req *f, const uint8_t *p, size_t n, int *ended, uint16_t *flags)
{
	size_t i = 0;
	*ended = 0;
	while (i < n) {
		uint8_t c = p[i];
		switch (f->st) {
		case M_START:
		case M_LINE:
			i++;
			if (++f->line > FR_LINE_MAX)
				return -1;
			if (c == '\n') {
				if (f->arg == 0 && f->wlen < FR_WORD)
					f->cmd[f->wlen] = '\0';
				size_t cl = strnlen(f->cmd, FR_WORD);
				if (f->wlen && f->arg == bytes_token(f->cmd, cl))
					f->cl = f->num;
				if (f->arg > 0 && meta(f->cmd, cl) && fr_is(f->word, f->wlen, "Q"))
					return -1; /* quiet */
				int data = line_done(f);
				if (data < 0)
					return -1;
				if (!data)
					return req_done(f, (long)i, ended, flags);
				f->st = M_DATA;
				break;
			}
			if (c == '\r')
				break;
			f->st = M_LINE;
			if (c == ' ') {
				if (f->wlen == 0)
					break; /* runs of spaces */
				if (f->arg == 0 && f->wlen < FR_WORD)
					f->cmd[f->wlen] = '\0';
				size_t cl = strnlen(f->cmd, FR_WORD);
				if (f->arg > 0 && meta(f->cmd, cl) && fr_is(f->word, f->wlen, "Q"))
					return -1; /* quiet: replies do not come one for one */
				if (f->arg == bytes_token(f->cmd, cl))
					f->cl = f->num;
				f->arg++;
				f->wlen = 0;
				f->num = 0;
				f->digits = 0;
				break;
			}
			fr_keep(f->arg ? f->word : f->cmd, &f->wlen, c);
			if (c >= '0' && c <= '9' && f->digits < FR_NUM_DIGITS) {
				f->num = f->num * 10 + (c - '0');
				f->digits++;
			}
			break;
		case M_DATA: {
			size_t k = n - i < (size_t)f->need ? n - i : (size_t)f->need;
			i += k;
			f->need -= (int64_t)k;
			if (f->need == 0)
				return req_done(f, (long)i, ended, flags);
			break;
		}
		default: return -1;
		}
	}
	return (long)i;
}

/* ---- replies ---- */

static long rep_done(struct fr_rep *f, long used, int *ended, uint8_t *flags)
{
	*flags = f->flags;
	*ended = 1;
	uint16_t rq = f->rq;
	fr_rep_init(f, PROTO_MEMCACHED);
	f->rq = rq;
	return used;
}

static int error_line(const char *w, size_t n)
{
	return fr_is(w, n, "ERROR") || fr_is(w, n, "CLIENT_ERROR") || fr_is(w, n, "SERVER_ERROR");
}

long fr_mc_rep(struct fr_rep *f, const uint8_t *p, size_t n, int *ended, uint8_t *flags)
{
	size_t i = 0;
	*ended = 0;
	while (i < n) {
		uint8_t c = p[i];
		switch (f->st) {
		case M_START:
		case M_LINE: {
			i++;
			if (++f->line > FR_LINE_MAX)
				return -1;
			/* token 0 in word; the number in token `want` in cl */
			int want = fr_is(f->word, f->wlen, "VALUE") ? 3
				   : fr_is(f->word, f->wlen, "VA")  ? 1
								    : -1;
			if (c == ' ' || c == '\n' || c == '\r') {
				if (c == ' ' && f->st == M_LINE) {
					if (f->depth == 0)
						f->vlen = 1; /* token 0 is over */
					if ((int)f->depth == want)
						f->cl = f->num;
					f->depth++;
					f->num = 0;
				}
				if (c != '\n')
					break;
				if ((int)f->depth == want)
					f->cl = f->num;
				int is_err = error_line(f->word, f->wlen);
				f->line = 0;
				if (is_err)
					f->flags |= RP_ERROR;
				if (want >= 0 && !is_err) {
					if (f->cl < 0)
						return -1;
					f->need = f->cl + 2;
					f->st = M_DATA;
					break;
				}
				if (!(f->rq & RQ_MC_MULTI) || is_err ||
				    fr_is(f->word, f->wlen, "END"))
					return rep_done(f, (long)i, ended, flags);
				/* a STAT line: the next one follows */
				f->st = M_START;
				f->wlen = f->vlen = f->depth = 0;
				f->cl = -1;
				break;
			}
			f->st = M_LINE;
			if (!f->vlen)
				fr_keep(f->word, &f->wlen, c);
			if (c >= '0' && c <= '9' && f->num < ((int64_t)1 << 40))
				f->num = f->num * 10 + (c - '0');
			break;
		}
		case M_DATA: {
			size_t k = n - i < (size_t)f->need ? n - i : (size_t)f->need;
			i += k;
			f->need -= (int64_t)k;
			if (f->need > 0)
				break;
			/* a VA block is the whole reply; VALUE blocks go on to END */
			if (!(f->rq & RQ_MC_MULTI))
				return rep_done(f, (long)i, ended, flags);
			f->st = M_START;
			f->wlen = f->vlen = f->depth = 0;
			f->cl = -1;
			f->line = 0;
			break;
		}
		default: return -1;
		}
	}
	return (long)i;
}
