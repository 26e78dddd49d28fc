/* Is a registration true? A process that registers replica addresses
 * must be the one speaking on the registration socket (its peer
 * credentials), and must listen on every address it names: its own
 * descriptors hold a listening TCP socket bound to it (or to the wildcard
 * on that port). Otherwise any local process could claim a replica alive
 * and steer clients to it. */
#include "monitor.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_INODES 256

/* The socket inodes among a process's descriptors; -1 when they cannot be
 * read (another user's process and no privilege). */
static int socket_inodes(uint32_t pid, unsigned long *out, int max)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%" PRIu32 "/fd", pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		char target[64];
		/* relative to the folder: no path to build (or truncate) */
		ssize_t k = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
		unsigned long ino;
		if (k <= 0)
			continue;
		target[k] = '\0';
		if (sscanf(target, "socket:[%lu]", &ino) == 1)
			out[n++] = ino;
	}
	closedir(d);
	return n;
}

static int has_inode(const unsigned long *inodes, int n, unsigned long ino)
{
	for (int i = 0; i < n; i++)
		if (inodes[i] == ino)
			return 1;
	return 0;
}

/* The address of a /proc/net/tcp(6) "local_address" field. */
static int parse_local(const char *s, int family, struct flare_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = (uint16_t)family;
	int nb = family == AF_INET ? 4 : 16;
	unsigned port;
	for (int w = 0; w < nb / 4; w++) {
		unsigned v;
		if (sscanf(s + 8 * w, "%8x", &v) != 1)
			return -1;
		memcpy(a->ip + 4 * w, &v, 4); /* the kernel prints each word in host order */
	}
	if (s[8 * (nb / 4)] != ':' || sscanf(s + 8 * (nb / 4) + 1, "%4x", &port) != 1)
		return -1;
	a->port = (uint16_t)port;
	return 0;
}

int proc_listeners(const char *netdir, const struct flare_addr *a, unsigned long *out, int max)
{
	static const char *const files[] = {"tcp", "tcp6"};
	int n = 0;
	for (int f = 0; f < 2 && n < max; f++) {
		char path[128], line[512];
		snprintf(path, sizeof(path), "%s/%s", netdir, files[f]);
		FILE *fp = fopen(path, "re");
		if (!fp)
			continue;
		int family = f ? AF_INET6 : AF_INET;
		while (n < max && fgets(line, sizeof(line), fp)) {
			char local[64];
			unsigned st;
			unsigned long ino;
			struct flare_addr l;
			if (sscanf(line, " %*d: %63s %*s %x %*s %*s %*s %*d %*d %lu", local, &st,
				   &ino) != 3 ||
			    st != 0x0A /* LISTEN */ || parse_local(local, family, &l) < 0 ||
			    l.port != a->port)
				continue;
			if (flare_addr_equal(&l, a) ||
			    (flare_addr_is_wildcard(&l) &&
			     (l.family == a->family || l.family == AF_INET6)))
				out[n++] = ino;
		}
		fclose(fp);
	}
	return n;
}

/* Does one of the inodes listen on a (exactly, or on the wildcard of its
 * family with a's port)? */
static int listens(uint32_t pid, const struct flare_addr *a, const unsigned long *inodes, int n)
{
	char netdir[64];
	unsigned long l[MAX_INODES];
	snprintf(netdir, sizeof(netdir), "/proc/%" PRIu32 "/net", pid);
	int k = proc_listeners(netdir, a, l, MAX_INODES);
	for (int i = 0; i < k; i++)
		if (has_inode(inodes, n, l[i]))
			return 1;
	return 0;
}

int verify_registration(int sock, const struct fw_register *r, const char **why)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		*why = "no peer credentials";
		return -1;
	}
	if ((uint32_t)cred.pid != r->pid) {
		*why = "it names another process than the one registering";
		return -1;
	}
	unsigned long inodes[MAX_INODES];
	int n = socket_inodes(r->pid, inodes, MAX_INODES);
	if (n < 0) {
		/* not ours to read (the monitor is not root): its word is taken */
		log_debug("pid %" PRIu32 ": cannot read its descriptors (%s): registration not "
			  "verified",
			  r->pid, strerror(errno));
		return 0;
	}
	for (int i = 0; i < r->n_addrs; i++)
		if (!listens(r->pid, &r->addrs[i], inodes, n)) {
			*why = "the process does not listen on an address it registers";
			return -1;
		}
	return 0;
}
