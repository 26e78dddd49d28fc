/* OpenSSL, found at run time. libflare.so links nothing but libc: a
 * program with no libssl never calls a hooked SSL_* function, and one that
 * does has libssl loaded by then (at start, or by a dlopen such as
 * Python's _ssl), so the look-up is made at the first call. Only OpenSSL 3
 * is healed: every function the library calls must be there, and the
 * version must say 3 (LibreSSL and BoringSSL export the same names with
 * other structures and say otherwise); anything else passes through. */
#include "lock.h"
#include "log.h"
#include "real.h"

#include "conn/fdtab.h"
#include "heal/heal.h"
#include "tls/tls.h"

#include <dlfcn.h>
#include <stdint.h>
#include <link.h>

struct tls_fns ossl;
int flare_tls_resolved;
static int usable;
static pthread_mutex_t resolve_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;

/* libssl as loaded: a library loaded with RTLD_LOCAL (Python's _ssl
 * pulls libssl in so) is in no global scope that RTLD_NEXT searches, yet
 * its calls still find our hooks first */
static void *libssl;

/* Is p in libflare.so itself (one of our hooks)? */
static int ours(void *p)
{
	Dl_info a, b;
	return p && dladdr(p, &a) && dladdr((void *)tls_resolve, &b) && a.dli_fbase == b.dli_fbase;
}

/* a hooked name must not resolve to our own hook */
static void *next_of(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if ((!p || ours(p)) && libssl)
		p = dlsym(libssl, name);
	return ours(p) ? NULL : p;
}

static void *called(const char *name)
{
	void *p = libssl ? dlsym(libssl, name) : NULL;
	return p ? p : dlsym(RTLD_DEFAULT, name);
}

void tls_resolve(void)
{
	if (__atomic_load_n(&flare_tls_resolved, __ATOMIC_ACQUIRE))
		return;
	if (flare_lock(&resolve_lock) == EDEADLK)
		return; /* a handler inside the resolution (lock.h): the next call does it */
	if (!flare_tls_resolved) {
		libssl = dlopen("libssl.so.3", RTLD_LAZY | RTLD_NOLOAD);
#define HOOKED(name) ossl.name = (__typeof__(ossl.name))next_of(#name);
#define CALLED(name) ossl.name = (__typeof__(ossl.name))called(#name);
		FLARE_TLS_HOOKED(HOOKED)
		FLARE_TLS_CALLED(CALLED)
#undef HOOKED
#undef CALLED
		int all = 1;
#define PRESENT(name) all &= ossl.name != NULL;
		FLARE_TLS_HOOKED(PRESENT)
		FLARE_TLS_CALLED(PRESENT)
#undef PRESENT
		unsigned long v = all ? ossl.OpenSSL_version_num() : 0;
		usable = all && (v >> 28) == 3;
		if (!usable && ossl.SSL_read)
			log_info(
			    "TLS: %s: TLS sessions are not healed (connect-time failover only)",
			    !all ? "not the OpenSSL 3 library's functions"
				 : "the TLS library is not OpenSSL 3");
		__atomic_store_n(&flare_tls_resolved, 1, __ATOMIC_RELEASE);
	}
	flare_unlock(&resolve_lock);
}

int tls_usable(void)
{
	tls_resolve();
	return usable && !flare_disabled;
}

void tls_sym_atfork_child(void) { flare_mutex_init(&resolve_lock); }

/* The caller's own binding of name: what the dynamic linker gives an
 * object without flare is the global scope's first definition (ours
 * aside), else the object's own dependencies' (a library loaded with
 * RTLD_LOCAL, its libssl with it: no global look-up finds that copy). */
static void *binding_of(const char *name, const void *site)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (p && !ours(p))
		return p;
	Dl_info info;
	struct link_map *lm = NULL;
	if (!dladdr1(site, &info, (void **)&lm, RTLD_DL_LINKMAP) || !lm)
		return NULL;
	void *h = dlopen(lm->l_name && lm->l_name[0] ? lm->l_name : NULL, RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		return NULL;
	p = dlsym(h, name);
	dlclose(h);
	return ours(p) ? NULL : p;
}

static int said_private; /* [atom] logged once a process */

void *tls_next_for(const char *name, void *resolved, const void *site, struct tls_caller *cache)
{
	tls_resolve();
	/* a call site binds one function for the life of the process: one
	 * look-up each, cached lock-free in open addressing (slots are filled
	 * once, never moved or emptied: an empty one ends a probe) */
	unsigned start = tls_site_slot(site);
	int k = 0;
	for (; k < TLS_CALLER_CACHE; k++) {
		struct tls_caller *c = &cache[(start + (unsigned)k) % TLS_CALLER_CACHE];
		const void *s = __atomic_load_n(&c->site, __ATOMIC_ACQUIRE);
		if (s == site)
			return c->fn;
		if (!s)
			break;
	}
	if (k == TLS_CALLER_CACHE && resolved)
		return resolved; /* a program with this many call sites: the common case */
	void *fn = binding_of(name, site);
	if (!fn)
		fn = resolved; /* the library's own look-up (libssl.so.3 by name) */
	else if (fn != resolved && !__atomic_exchange_n(&said_private, 1, __ATOMIC_RELAXED))
		log_info("TLS: %s called from an OpenSSL the library does not heal with (a private "
			 "copy): its calls pass through, its sessions are not healed",
			 name);
	if (flare_lock(&resolve_lock) == EDEADLK)
		return fn; /* not cached this time (lock.h) */
	for (k = 0; k < TLS_CALLER_CACHE; k++) {
		struct tls_caller *c = &cache[(start + (unsigned)k) % TLS_CALLER_CACHE];
		if (c->site == site)
			break; /* another thread cached it meanwhile */
		if (!c->site) {
			c->fn = fn;
			__atomic_store_n(&c->site, site, __ATOMIC_RELEASE);
			break;
		}
	}
	flare_unlock(&resolve_lock);
	return fn;
}
