/* libflare.so internals. The library lives inside other people's programs:
 * libc only, no threads, no signal handlers, no timers, no heap growth per
 * call; every real symbol is resolved once in the constructor (real.h).
 *
 * shim/lib holds one file per interposed call; they decide in one load
 * whether a descriptor is managed (fdtab_get) and call into this core,
 * which calls only the real functions, never the library's own hooks.
 * The core has a folder per concern, each with its internal header:
 *
 *   conn/    a managed connection (conn.h: its state machines and which
 *            lock guards which field), the descriptor table (fdtab.h),
 *            the trust, the exchange, and the kernel's proof (proof.h)
 *   dial/    connects: the program's, the library's own dials, moving
 *            down the candidates without blocking, TCP timeouts
 *   heal/    the heal decision (verdict.h, the only place it is made),
 *            heals, asynchronous replays, the swap, the watch
 *   io/      the read and write bodies, readiness waits, epoll
 *            registrations, signal rules (io.h)
 *   frame/   protocol framers (frame.h, pure), framed exchanges and the
 *            session log
 *   route/   the shared table: routes, orders, balance, rebinding,
 *            reactive queries, the user's shared counters
 *   tls/     TLS sessions inside the program's OpenSSL
 *   server/  a server's registration with its monitor
 *
 * Core files include what they use; this header gathers every concern for
 * the hooks in shim/lib. */
#ifndef FLARE_SHIM_H
#define FLARE_SHIM_H

#include "addr.h"
#include "clock.h"
#include "core.h"
#include "lock.h"
#include "log.h"
#include "real.h"
#include "table.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "conn/proof.h"
#include "dial/dial.h"
#include "frame/framed.h"
#include "frame/session.h"
#include "heal/heal.h"
#include "io/io.h"
#include "route/route.h"
#include "server/register.h"
#include "tls/tls_call.h"

#endif
