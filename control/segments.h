/* The shared-memory segments of one deployment (table NAME): what is in
 * /dev/shm under that name, whose it is and whether anything still uses
 * it. The agent reclaims stale ones when it starts; flarectl segments
 * lists them and removes the stale ones. Segments are only read with
 * pread(2), never mapped: another user's segment cannot fault the reader. */
#ifndef FLARE_SEGMENTS_H
#define FLARE_SEGMENTS_H

#include "usershm.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum flare_seg_kind {
	SEG_TABLE,  /* NAME: the ranking table */
	SEG_NEW,    /* NAME.new.PID.RANDOM: a table being made */
	SEG_USER,   /* NAME.user.UID: a user's counters and turns */
	SEG_LEGACY, /* NAME.rr, NAME.stats: what agents before this one made */
	SEG_OTHER,  /* NAME.something else: listed, never removed */
};

struct flare_seg {
	char name[264]; /* as shm_open takes it: "/NAME..." */
	int kind;
	uid_t owner;
	off_t size;
	uint64_t ino;
	int valid;          /* USER: well formed, owned by the uid in its name */
	pid_t pid;          /* the table's writer or a NEW's maker; 0 otherwise */
	int live_processes; /* USER: slots held by live processes */
	int stale;          /* nothing uses it any more */
	char why[96];       /* what makes it stale or live */
};

/* Fills up to max entries for table `name`; returns how many there are
 * (more than max when some did not fit), or -1 when /dev/shm cannot be read. */
int flare_segs_list(const char *name, struct flare_seg *out, int max);
const char *flare_seg_kind_name(int kind);
/* Adds a valid USER segment's slots into sum (per service, per counter)
 * with pread(2); 0, or -1 when it changed under the reader. */
int flare_seg_user_sum(const struct flare_seg *g, uint64_t (*sum)[SS_N]);
/* The socket cookies a valid USER segment's live processes registered for
 * the kernel wake (up to max); how many, or -1 */
int flare_seg_user_waits(const struct flare_seg *g, uint64_t *out, int max);
/* shm_unlink; 0, or -1 with errno */
int flare_seg_remove(const struct flare_seg *s);

#endif
