/* Whether a TCP connection's peer has gone silent, from the kernel's
 * tcp_info: the library asks it of its own sockets (heal/verdict.c), the
 * agent of the sockets sock_diag shows it (agent/wake.c). libc only. */
#ifndef FLARE_TCPSILENT_H
#define FLARE_TCPSILENT_H

#include <netinet/tcp.h>
#include <stddef.h>

#define FLARE_SILENT_MS 100     /* no acknowledgement this long: a silent peer */
#define FLARE_DEAD_GRACE_MS 300 /* a reply still overdue this long after the death */

/* The peer closed its side, or has acknowledged nothing for a while
 * though bytes wait for it, or keepalive probes are out: the process or
 * its host is gone or cut off. (The program's own half-close, FIN_WAIT,
 * says nothing of the peer.) len: the bytes of ti the kernel filled. */
int flare_tcp_peer_silent(const struct tcp_info *ti, size_t len);

#endif
