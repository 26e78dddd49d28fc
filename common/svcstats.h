/* What the library did, per service, for the host's agent to export
 * (agent.metrics): a shared segment NAME.stats made by the agent (mode
 * 0666, like NAME.rr), one slot per client process, claimed by the library
 * with a compare-and-swap of its pid on its first managed connection and
 * counted into with relaxed atomic adds: no thread, no system call on the
 * library's paths. The agent adds up the slots when scraped and folds the
 * slots of processes that exited into its own totals, then frees them. */
#ifndef FLARE_SVCSTATS_H
#define FLARE_SVCSTATS_H

#include <stdint.h>

#define FLARE_SVCSTATS_MAGIC 0x53544c46u /* "FLTS" little endian */
#define FLARE_SVCSTATS_SUFFIX ".stats"
#define FLARE_SVCSTATS_SLOTS 256   /* client processes at once */
#define FLARE_SVCSTATS_SERVICES 64 /* services counted apart; others share slot index % 64 */

enum flare_svcstat {
	SS_MANAGED,           /* connections managed */
	SS_CONNECT_FAILOVERS, /* connects that moved down the ranking */
	SS_HEALS,             /* failed connections moved to another replica */
	SS_REPLAYS,           /* requests replayed by heals */
	SS_REPLAY_BYTES,      /* their bytes */
	SS_PASSED_ERRORS,     /* failures passed to the program */
	SS_REBINDS,           /* on-demand moves at request boundaries */
	SS_SWITCHES,          /* per-request switches */
	SS_N
};

struct flare_svcstats_slot {
	uint32_t pid; /* 0: free */
	uint32_t pad;
	uint64_t v[FLARE_SVCSTATS_SERVICES][SS_N];
};

struct flare_svcstats {
	uint32_t magic, n_slots, n_services, n_fields;
	struct flare_svcstats_slot slots[FLARE_SVCSTATS_SLOTS];
};

#endif
