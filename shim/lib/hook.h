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

/* What every OpenSSL hook does first: find OpenSSL (tls_sym.c); then,
 * with the library disabled, the statement after it runs (the plain call). */
#define SSL_HOOK_START(fn, fail)                                                                   \
	tls_resolve();                                                                             \
	if (!ossl.fn)                                                                              \
		return fail;                                                                       \
	if (flare_disabled)

#endif
