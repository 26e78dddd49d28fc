/* libFuzzer target for the table reader: arbitrary bytes as a segment. The
 * first 20 bytes pick the address to look up. Lookups must only ever read
 * inside the segment (ASan checks) and terminate. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct flare_addr a;
	if (size < sizeof(a) + sizeof(struct flare_tbl_hdr))
		return 0;
	memcpy(&a, data, sizeof(a));
	a.family = a.family & 1 ? 10 : 2;
	size -= sizeof(a);
	/* 8-aligned private copy, as a mapping would be */
	uint64_t *mem = malloc((size + 7) & ~(size_t)7);
	if (!mem)
		return 0;
	memcpy(mem, data + sizeof(a), size);
	struct flare_tbl_hdr *h = (struct flare_tbl_hdr *)mem;
	h->size = size; /* let the fuzzer get past the size check */
	h->magic = FLARE_TBL_MAGIC;
	h->version = FLARE_TBL_VERSION;
	h->seq &= ~1ull;
	h->updated_ns = flare_monotonic_ns();
	h->stale_ms = 1000000;
	h->flags = 0;
	struct flare_tbl_reader r = {.base = (const uint8_t *)mem, .size = size};
	if (flare_tbl_check_layout(r.base, r.size, NULL) == FLARE_TBL_OK) {
		struct flare_route route;
		struct flare_replica_info info;
		flare_tbl_lookup_service(&r, &a, &route);
		flare_tbl_lookup_replica(&r, &a, &info);
		flare_tbl_read_route(&r, a.port, &route);
		uint32_t to;
		flare_tbl_find_move(&r, &a, a.port, &to);
	}
	free(mem);
	return 0;
}
