#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	unsigned long v = strtoul(s, &end, 10);
	if (*end != '\0' || v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int flare_addr_parse_ip(const char *host, struct flare_addr *out)
{
	struct in6_addr a6;
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, host, out->ip) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, host, &a6) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		out->family = AF_INET;
		memcpy(out->ip, &a6.s6_addr[12], 4);
	} else {
		out->family = AF_INET6;
		memcpy(out->ip, &a6, 16);
	}
	return 0;
}

int flare_addr_parse(const char *s, struct flare_addr *out, const char **why)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port;
	size_t hl;
	const char *dummy;

	if (!why)
		why = &dummy;
	memset(out, 0, sizeof(*out));
	if (!s || !*s) {
		*why = "empty address";
		return -1;
	}
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':') {
			*why = "IPv6 address must be written [ADDR]:PORT";
			return -1;
		}
		hl = (size_t)(close - s - 1);
		s++;
		port = close + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon) {
			*why = "missing :PORT";
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s))) {
			*why = "IPv6 address must be written [ADDR]:PORT";
			return -1;
		}
		hl = (size_t)(colon - s);
		port = colon + 1;
	}
	if (hl == 0 || hl >= sizeof(host)) {
		*why = "malformed IP address";
		return -1;
	}
	memcpy(host, s, hl);
	host[hl] = '\0';
	uint16_t p;
	if (parse_port(port, &p) < 0) {
		*why = "port must be a number 1..65535";
		return -1;
	}
	if (flare_addr_parse_ip(host, out) < 0) {
		*why = "malformed IP address";
		return -1;
	}
	out->port = p;
	return 0;
}

int flare_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct flare_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!sa || len < (socklen_t)sizeof(sa_family_t))
		return -1;
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		out->family = AF_INET;
		out->port = ntohs(in->sin_port);
		memcpy(out->ip, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		out->port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			out->family = AF_INET;
			memcpy(out->ip, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			out->family = AF_INET6;
			memcpy(out->ip, &in6->sin6_addr, 16);
		}
		return 0;
	}
	return -1;
}

socklen_t flare_addr_to_sockaddr_family(const struct flare_addr *a, int family,
					struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		if (a->family != AF_INET)
			return 0;
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		memcpy(&in->sin_addr, a->ip, 4);
		return sizeof(*in);
	}
	if (family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		if (a->family == AF_INET) {
			in6->sin6_addr.s6_addr[10] = 0xff;
			in6->sin6_addr.s6_addr[11] = 0xff;
			memcpy(&in6->sin6_addr.s6_addr[12], a->ip, 4);
		} else if (a->family == AF_INET6) {
			memcpy(&in6->sin6_addr, a->ip, 16);
		} else {
			return 0;
		}
		return sizeof(*in6);
	}
	return 0;
}

socklen_t flare_addr_to_sockaddr(const struct flare_addr *a, struct sockaddr_storage *ss)
{
	return flare_addr_to_sockaddr_family(a, a->family, ss);
}

char *flare_addr_format(const struct flare_addr *a, char *buf, size_t n)
{
	char ip[INET6_ADDRSTRLEN];
	if (a->family == AF_INET && inet_ntop(AF_INET, a->ip, ip, sizeof(ip)))
		snprintf(buf, n, "%s:%u", ip, a->port);
	else if (a->family == AF_INET6 && inet_ntop(AF_INET6, a->ip, ip, sizeof(ip)))
		snprintf(buf, n, "[%s]:%u", ip, a->port);
	else
		snprintf(buf, n, "(none)");
	return buf;
}

int flare_addr_equal(const struct flare_addr *a, const struct flare_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->ip, b->ip, a->family == AF_INET ? 4 : 16) == 0;
}

/* FNV-1a over the significant bytes: tiny, allocation-free, and good enough
 * for the few thousand keys a table holds. */
uint32_t flare_addr_hash(const struct flare_addr *a)
{
	uint32_t h = 2166136261u;
	size_t n = a->family == AF_INET ? 4 : 16;
	h = (h ^ a->family) * 16777619u;
	h = (h ^ (a->port & 0xff)) * 16777619u;
	h = (h ^ (a->port >> 8)) * 16777619u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ a->ip[i]) * 16777619u;
	return h;
}

int flare_addr_is_wildcard(const struct flare_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->ip, zero, a->family == AF_INET ? 4 : 16) == 0;
}
