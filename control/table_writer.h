/* The writing side of the shared table (flare-agent, and tests). Input is
 * what the manager sends (struct fw_rank); every entry is checked before it
 * reaches the segment, so a bad frame cannot corrupt what clients read. */
#ifndef FLARE_TABLE_WRITER_H
#define FLARE_TABLE_WRITER_H

#include "table.h"
#include "wire.h"

struct flare_tbl_writer {
	char name[64];
	uint32_t stale_ms;
	uint8_t *img; /* private image, the truth */
	size_t size;
	uint8_t *seg; /* the shared segment, a copy of img */
	uint32_t flags; /* FLARE_TBL_FLAG_WAKE: kept in every header written */
};

int flare_tbl_writer_init(struct flare_tbl_writer *w, const char *name, uint32_t stale_ms);
/* Replaces the whole table. Returns 0, or -1 with a reason in *why (the
 * published table is then unchanged). */
int flare_tbl_write_full(struct flare_tbl_writer *w, const struct fw_rank *m, const char **why);
/* Replaces the entries a delta names; the layout must not change. */
int flare_tbl_write_delta(struct flare_tbl_writer *w, const struct fw_rank *m, const char **why);
/* Sets or clears header flag bits, in the table in use and every later one. */
void flare_tbl_writer_flags(struct flare_tbl_writer *w, uint32_t bits, int on);
/* Records news from the manager (a heartbeat): keeps the table fresh. */
void flare_tbl_touch(struct flare_tbl_writer *w);
/* Unmaps; unlink_segment also removes the name (clients then pass through). */
void flare_tbl_writer_close(struct flare_tbl_writer *w, int unlink_segment);

#endif
