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

#endif
