/* UNIX socket addresses as flare's config names them: a file path, or "@name"
 * for Linux's abstract namespace (no file, gone with its last socket).
 * Libc only: the library connects to monitors and agents with it. */
#ifndef FLARE_UNIXADDR_H
#define FLARE_UNIXADDR_H

#include <sys/socket.h>
#include <sys/un.h>

/* Fills *un for path; returns the address length to pass to bind/connect
 * (an abstract name's ends with its last byte, not a NUL), or 0 when the
 * path is empty or too long. */
socklen_t flare_unix_addr(const char *path, struct sockaddr_un *un);

#endif
