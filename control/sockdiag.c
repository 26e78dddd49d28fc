#include "sockdiag.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct diag_req {
	struct nlmsghdr nlh;
	struct inet_diag_req_v2 r;
};

static int diag_socket(void)
{
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -1;
	struct timeval tv = {1, 0}; /* never hang a daemon's loop on it */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

size_t sockdiag_ports_filter(const uint16_t *ports, int n, int peer, void *out, size_t cap)
{
	/* "sport = :a or sport = :b ..." as ss(8) compiles it (dport with
	 * peer: D_EQ): each test (S_EQ and its port, 8 bytes) goes on to a jump to the end when it
	 * matches (accept: the program ends exactly at its end) and skips
	 * that jump when not; the last test's miss jumps past the end (reject).
	 * Every test is on the chain of `yes' steps, as the kernel's audit
	 * (inet_diag_bc_audit) requires of each jump's target. */
	size_t need = n > 0 ? (size_t)n * 12 - 4 : 0;
	if (n <= 0 || n > SOCKDIAG_MAX_PORTS || need > cap)
		return 0;
	struct inet_diag_bc_op *op = out;
	for (int i = 0; i < n; i++) {
		size_t rest = need - (size_t)i * 12; /* from this test to the end */
		*op++ =
		    (struct inet_diag_bc_op){peer ? INET_DIAG_BC_D_EQ : INET_DIAG_BC_S_EQ, 8, 12};
		*op++ = (struct inet_diag_bc_op){0, 0, ports[i]};
		if (i + 1 < n) /* a jump taken always: its `no' */
			*op++ = (struct inet_diag_bc_op){INET_DIAG_BC_JMP, 4, (uint16_t)(rest - 8)};
	}
	return need;
}

/* the kernel refused the filter once (a kernel before 4.16 has no S_EQ):
 * whole dumps from then on */
static int filter_refused;

/* A dump of family's sockets in states; with n ports, of those whose local
 * (peer's) port is one of them, unless the kernel refused the filter
 * before. -2 when it refuses it now (nothing was passed to fn). */
static int dump(int family, uint32_t states, const uint16_t *ports, int n, int peer, sockdiag_fn fn,
		void *arg)
{
	int fd = diag_socket(), rc = -1;
	if (fd < 0)
		return -1;
	struct {
		struct diag_req q;
		struct rtattr attr;
		uint8_t bc[SOCKDIAG_MAX_PORTS * 12];
	} m;
	memset(&m, 0, sizeof(m.q) + sizeof(m.attr));
	m.q = (struct diag_req){
	    .nlh = {.nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
	    .r = {.sdiag_family = (uint8_t)family,
		  .sdiag_protocol = IPPROTO_TCP,
		  .idiag_ext = 1 << (INET_DIAG_INFO - 1),
		  .idiag_states = states}};
	size_t len = sizeof(m.q), bc_len = 0;
	if (n > 0 && !__atomic_load_n(&filter_refused, __ATOMIC_RELAXED))
		bc_len = sockdiag_ports_filter(ports, n, peer, m.bc, sizeof(m.bc));
	if (bc_len) {
		m.attr.rta_type = INET_DIAG_REQ_BYTECODE;
		m.attr.rta_len = (unsigned short)RTA_LENGTH(bc_len);
		len += RTA_SPACE(bc_len);
	}
	m.q.nlh.nlmsg_len = (uint32_t)len;
	if (send(fd, &m, len, 0) < 0)
		goto out;
	for (int rounds = 0; rounds < 100000; rounds++) {
		long buf[8192];
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		if (got <= 0)
			goto out;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got);
		     h = NLMSG_NEXT(h, got)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				rc = 0;
				goto out;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				errno = e->error < 0 ? -e->error : EPROTO;
				rc = bc_len && errno == EINVAL ? -2 : -1;
				goto out;
			}
			const struct inet_diag_msg *d = NLMSG_DATA(h);
			const struct tcp_info *ti = NULL;
			size_t ti_len = 0;
			int alen = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*d));
			for (struct rtattr *a = (struct rtattr *)(d + 1); RTA_OK(a, alen);
			     a = RTA_NEXT(a, alen))
				if (a->rta_type == INET_DIAG_INFO) {
					ti = RTA_DATA(a);
					ti_len = RTA_PAYLOAD(a);
				}
			fn(arg, d, ti, ti_len);
		}
	}
out:
	close(fd);
	return rc;
}

int sockdiag_dump(int family, uint32_t states, sockdiag_fn fn, void *arg)
{
	return dump(family, states, NULL, 0, 0, fn, arg);
}

int sockdiag_dump_ports(int family, uint32_t states, const uint16_t *ports, int n, int peer,
			sockdiag_fn fn, void *arg)
{
	if (n <= 0)
		return 0; /* no port: no socket */
	int rc = dump(family, states, ports, n, peer, fn, arg);
	if (rc == -2) {
		__atomic_store_n(&filter_refused, 1, __ATOMIC_RELAXED);
		rc = dump(family, states, NULL, 0, 0, fn, arg);
	}
	return rc;
}

static struct flare_addr end_of(int family, const __be32 *ip, __be16 port)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = port;
		memcpy(&s4->sin_addr, ip, 4);
		len = sizeof(*s4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = port;
		memcpy(&s6->sin6_addr, ip, 16);
		len = sizeof(*s6);
	}
	struct flare_addr a = {0};
	flare_addr_from_sockaddr((struct sockaddr *)&ss, len, &a);
	return a;
}

struct flare_addr sockdiag_peer(const struct inet_diag_msg *d)
{
	return end_of(d->idiag_family, d->id.idiag_dst, d->id.idiag_dport);
}

struct flare_addr sockdiag_local(const struct inet_diag_msg *d)
{
	return end_of(d->idiag_family, d->id.idiag_src, d->id.idiag_sport);
}

long sockdiag_listener_inode(const struct flare_addr *a)
{
	int fd = diag_socket();
	if (fd < 0)
		return -1;
	/* an exact request, not a dump: the kernel looks the address up as it
	 * would for an incoming SYN (local = a, remote = any), O(1), where a
	 * dump walks its whole connection hash */
	struct diag_req q = {
	    .nlh = {.nlmsg_len = sizeof(q),
		    .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		    .nlmsg_flags = NLM_F_REQUEST},
	    .r = {.sdiag_family = (uint8_t)a->family,
		  .sdiag_protocol = IPPROTO_TCP,
		  .idiag_states = 1u << 10, /* TCP_LISTEN */
		  .id = {.idiag_sport = htons(a->port),
			 .idiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE}}}};
	memcpy(q.r.id.idiag_src, a->ip, a->family == AF_INET ? 4 : 16);
	long ino = -1;
	long buf[512];
	ssize_t n = -1;
	if (send(fd, &q, sizeof(q), 0) == (ssize_t)sizeof(q) &&
	    (n = recv(fd, buf, sizeof(buf), 0)) >=
		(ssize_t)NLMSG_LENGTH(sizeof(struct inet_diag_msg))) {
		struct nlmsghdr *h = (struct nlmsghdr *)buf;
		const struct inet_diag_msg *d = NLMSG_DATA(h);
		if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && d->idiag_state == 10)
			ino = (long)d->idiag_inode;
		else
			ino = 0; /* nothing listens there (ENOENT), or not a listener */
	} else if (n >= 0) {
		ino = 0;
	}
	close(fd);
	return ino;
}

int sockdiag_destroy(int family, const struct inet_diag_sockid *id)
{
	int fd = diag_socket();
	if (fd < 0)
		return errno;
	struct diag_req q = {.nlh = {.nlmsg_len = sizeof(q),
				     .nlmsg_type = SOCK_DESTROY,
				     .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK},
			     .r = {.sdiag_family = (uint8_t)family,
				   .sdiag_protocol = IPPROTO_TCP,
				   .idiag_states = ~0u,
				   .id = *id}};
	int err = EIO;
	if (send(fd, &q, sizeof(q), 0) == (ssize_t)sizeof(q)) {
		char buf[1024];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;
		if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) &&
		    h->nlmsg_type == NLMSG_ERROR)
			err = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
		else if (n < 0)
			err = errno;
	}
	close(fd);
	return err;
}
