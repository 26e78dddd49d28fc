/* The one clock flare measures time with: CLOCK_MONOTONIC, immune to
 * wall-clock steps. Shared by the library and the daemons (libc only). */
#ifndef FLARE_CLOCK_H
#define FLARE_CLOCK_H

#include <stdint.h>

uint64_t flare_monotonic_ns(void);

/* The wall clock, for what is compared across machines and restarts (an
 * operator's command's time), never for a duration. */
uint64_t flare_realtime_ns(void);

static inline uint64_t flare_monotonic_ms(void) { return flare_monotonic_ns() / 1000000u; }

/* CLOCK_MONOTONIC_COARSE: the same clock as of the last tick, behind by
 * at most one (FLARE_COARSE_SLACK_NS covers it). For the hot path's checks
 * whose bounds are tens of milliseconds or more (a table's freshness, the
 * rebind interval, deferred timeouts): it reads one word of the vDSO's
 * data, where the fine clock also reads the hypervisor's clock page and
 * the TSC; cold, after another process ran, that was ~1 % of a TLS
 * request. A quantity stamped with one clock is compared with that one. */
uint64_t flare_coarse_ns(void);
#define FLARE_COARSE_SLACK_NS 50000000ull
static inline uint64_t flare_coarse_ms(void) { return flare_coarse_ns() / 1000000u; }

#endif
