/* What every hook does first: make sure the real symbols are known, and
 * fall back to the raw system call while they are not (a hook running
 * inside dlsym, or before the constructor). */
#ifndef FLARE_HOOK_H
#define FLARE_HOOK_H

#include "shim.h"

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HOOK_ENTER(fn, raw_call)                                                                   \
	do {                                                                                       \
		if (__builtin_expect(!__atomic_load_n(&flare_ready, __ATOMIC_ACQUIRE), 0))         \
			flare_init();                                                              \
		if (__builtin_expect(!real.fn, 0))                                                 \
			return raw_call;                                                           \
	} while (0)

#endif
