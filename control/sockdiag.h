/* sock_diag for the daemons: a dump of the host's TCP sockets with their
 * tcp_info (monitor/hung.c, agent/wake.c), the peer of one, and its end
 * through the kernel (SOCK_DESTROY, agent/wake.c). */
#ifndef FLARE_SOCKDIAG_H
#define FLARE_SOCKDIAG_H

#include "addr.h"

#include <linux/inet_diag.h>
#include <stddef.h>
#include <stdint.h>

/* from <linux/tcp.h> or <netinet/tcp.h>, whichever the caller needs (the
 * two clash) */
struct tcp_info;

/* Called for each socket; ti is NULL when the kernel gave none, else
 * ti_len bytes of it. */
typedef void (*sockdiag_fn)(void *arg, const struct inet_diag_msg *d, const struct tcp_info *ti,
			    size_t ti_len);
/* Every TCP socket of family in one of states (bits by TCP state); 0, or
 * -1 with errno set (the kernel answers at once: at most a second). */
int sockdiag_dump(int family, uint32_t states, sockdiag_fn fn, void *arg);
/* The same, of the sockets whose local port (the peer's with peer) is one
 * of ports only: the kernel filters them (an inet_diag bytecode), so a
 * pass costs what those connections cost to copy out, not what the
 * host's do. None with n == 0. A kernel that refuses the filter gets
 * whole dumps (fn still sees every socket: callers check the port
 * themselves). */
#define SOCKDIAG_MAX_PORTS 1024
int sockdiag_dump_ports(int family, uint32_t states, const uint16_t *ports, int n, int peer,
			sockdiag_fn fn, void *arg);
/* The filter itself, into out (cap bytes): its length, 0 when n is 0 or
 * more than SOCKDIAG_MAX_PORTS (exposed for its test) */
size_t sockdiag_ports_filter(const uint16_t *ports, int n, int peer, void *out, size_t cap);
/* The socket's peer address, and its own */
struct flare_addr sockdiag_peer(const struct inet_diag_msg *d);
struct flare_addr sockdiag_local(const struct inet_diag_msg *d);
/* The inode of the socket that would take a connection to a (its
 * listener, or a wildcard one), found by one exact request; 0 when none
 * does, -1 when sock_diag cannot be asked */
long sockdiag_listener_inode(const struct flare_addr *a);
/* Ends the socket id names (family's); 0, or an errno value (EPERM
 * without CAP_NET_ADMIN). */
int sockdiag_destroy(int family, const struct inet_diag_sockid *id);

#endif
