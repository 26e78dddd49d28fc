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

/* What every OpenSSL hook does first: find the function its caller would
 * have called without flare (tls_sym.c), as `next`. When that is not the
 * OpenSSL the library heals with (a private copy loaded RTLD_LOCAL under
 * another soname, as Python wheels vendor), or the library is disabled,
 * the statement after the macro runs: the plain call, through `next`.
 * fail is returned only when no function of that name exists for it. */
#define SSL_HOOK_START(fn, fail)                                                                   \
	__typeof__(ossl.fn) next = (__typeof__(ossl.fn))tls_next(                                  \
	    #fn, (void *const *)&ossl.fn, __builtin_return_address(0), fn##_callers);              \
	if (!next)                                                                                 \
		return fail;                                                                       \
	if (next != ossl.fn || flare_disabled)
/* each hook's cache of its call sites' functions (tls_sym.c) */
#define SSL_HOOK_CALLERS(fn) static struct tls_caller fn##_callers[TLS_CALLER_CACHE]

#endif
