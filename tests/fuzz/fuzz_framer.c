/* libFuzzer targets for the protocol framers (shim/core/frame/frame*.c), one per
 * framer (FUZZ_PROTO: PROTO_REDIS, PROTO_HTTP, PROTO_MEMCACHED). The first
 * input byte picks the direction and the request flags replies answer; the
 * second seeds the splits. The rest is framed whole, one byte at a time
 * and in random pieces, and for Redis also whole through the many-a-call
 * entries (fr_redis_*_whole) between messages: where messages end, their
 * flags and where framing fails must not depend on the way. */
#include "frame/frame.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENDS 4096

struct result {
	int n;
	long failed_at;
	long end[MAX_ENDS];
	uint16_t flags[MAX_ENDS];
};

static struct result runs[4];

static void frame(struct result *r, int proto, int reply, uint16_t rq, const uint8_t *p, size_t len,
		  int mode, uint32_t seed)
{
	struct fr_req q;
	struct fr_rep f;
	fr_req_init(&q, proto);
	fr_rep_init(&f, proto);
	f.rq = rq;
	r->n = 0;
	r->failed_at = -1;
	size_t off = 0;
	int partial = 0; /* a message is begun: the many-a-call entries wait */
	while (off < len) {
		size_t piece = len - off;
		if (mode == 1)
			piece = 1;
		else if (mode == 2) {
			seed = seed * 1103515245u + 12345u;
			piece = 1 + (seed >> 16) % 13;
			if (piece > len - off)
				piece = len - off;
		}
		size_t end = off + piece;
		while (off < end) {
			if (mode == 3 && proto == PROTO_REDIS && !partial &&
			    (reply ? fr_rep_idle(&f) : fr_req_idle(&q))) {
				size_t ends[5];
				uint16_t qf[5];
				uint8_t pf[5];
				/* at most 5 a call, so that the limit is met too */
				int m = reply ? fr_redis_rep_whole(p + off, end - off, ends, pf, 5)
					      : fr_redis_req_whole(p + off, end - off, ends, qf, 5);
				for (int j = 0; j < m && r->n < MAX_ENDS; j++) {
					r->end[r->n] = (long)(off + ends[j]);
					r->flags[r->n++] = reply ? pf[j] : qf[j];
				}
				if (m) {
					off += ends[m - 1];
					continue;
				}
			}
			int ended = 0;
			uint16_t qf = 0;
			uint8_t pf = 0;
			long used = reply ? fr_rep_step(&f, p + off, end - off, &ended, &pf)
					  : fr_req_step(&q, p + off, end - off, &ended, &qf);
			if (used < 0) {
				r->failed_at = (long)off;
				return;
			}
			if ((size_t)used > end - off || (used == 0 && !ended))
				abort(); /* no progress, or past the bytes given */
			off += (size_t)used;
			partial = !ended;
			if (ended && r->n < MAX_ENDS) {
				r->end[r->n] = (long)off;
				r->flags[r->n++] = reply ? pf : qf;
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	static const uint16_t rqs[] = {0, RQ_HEAD, RQ_MC_MULTI, RQ_HEAD | RQ_MC_MULTI};
	int proto = FUZZ_PROTO, reply = (data[0] >> 2) & 1;
	uint16_t rq = rqs[(data[0] >> 3) & 3];
	for (int mode = 0; mode < 4; mode++)
		frame(&runs[mode], proto, reply, rq, data + 2, size - 2, mode, data[1]);
	for (int mode = 1; mode < 4; mode++) {
		if (runs[mode].n != runs[0].n ||
		    (runs[mode].failed_at < 0) != (runs[0].failed_at < 0))
			abort();
		if (memcmp(runs[mode].end, runs[0].end, sizeof(long) * (size_t)runs[0].n) ||
		    memcmp(runs[mode].flags, runs[0].flags, sizeof(uint16_t) * (size_t)runs[0].n))
			abort();
	}
	return 0;
}
