/* Socket addresses as flare compares them: (family, ip, port), with
 * IPv4-mapped IPv6 folded to IPv4 so a v6 socket dialing ::ffff:1.2.3.4
 * matches a service declared as 1.2.3.4. Libc only: the library uses it. */
#ifndef FLARE_ADDR_H
#define FLARE_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Fixed 20-byte layout: it is stored as-is in the shared table. */
struct flare_addr {
	uint16_t family; /* AF_INET or AF_INET6; 0 = none */
	uint16_t port;   /* host byte order */
	uint8_t ip[16];  /* IPv4 in ip[0..3], rest zero */
};

/* "[v6]:port" or "v4:port" */
#define FLARE_ADDR_STRLEN 56

/* Parses "1.2.3.4:80" or "[::1]:80". Returns 0, or -1 with *why set to a
 * static reason. */
int flare_addr_parse(const char *s, struct flare_addr *out, const char **why);
/* An IP address alone (port 0), v4-mapped IPv6 taken as IPv4; 0 or -1 */
int flare_addr_parse_ip(const char *host, struct flare_addr *out);
/* From a sockaddr a program passed; -1 for families flare does not manage. */
int flare_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct flare_addr *out);
/* To a sockaddr of the same family; returns its length. */
socklen_t flare_addr_to_sockaddr(const struct flare_addr *a, struct sockaddr_storage *ss);
/* To a sockaddr of the given family (AF_INET6 maps an IPv4 address);
 * returns 0 when the address cannot be expressed in that family. */
socklen_t flare_addr_to_sockaddr_family(const struct flare_addr *a, int family,
					struct sockaddr_storage *ss);
char *flare_addr_format(const struct flare_addr *a, char *buf, size_t n);
int flare_addr_equal(const struct flare_addr *a, const struct flare_addr *b);
uint32_t flare_addr_hash(const struct flare_addr *a);
/* 0.0.0.0 or :: (any port) */
int flare_addr_is_wildcard(const struct flare_addr *a);

#endif
