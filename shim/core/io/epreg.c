/* The program's epoll registrations of a connection, as the kernel holds
 * them. epoll registers (open file description, descriptor number) pairs:
 * when a connection moves to a new socket, each registration of the old
 * one is taken off its instance before the dup3 and added again for the
 * new socket after it, with the same events and data. They are read from
 * /proc/self/fdinfo of every epoll instance, so they are exactly what the
 * kernel has: registrations made before connect(), any number of them, an
 * EPOLLONESHOT one that fired and was not re-armed (the kernel keeps only
 * its flag bits: added back so, it stays disarmed), EPOLLEXCLUSIVE, and
 * none of an epoll descriptor the program closed.
 *
 * The program's epoll_ctl calls are only counted (epoll.c): a per-request
 * connection, which moves at every request, reads /proc again only when
 * the program made an epoll_ctl call since, or holds a one-shot
 * registration.
 * Where /proc cannot be read, a process that ever registered anything
 * does not move its connections (the failure surfaces), and neither does
 * a connection that existed at a fork while it is registered: parent and
 * child share the registration. */
#include "real.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

unsigned long flare_epoll_ctls;

#define MAX_EPFDS 64

static int sys_open(const char *path, int flags)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags | O_CLOEXEC);
}

/* The process's epoll descriptors (at most max); -1 when /proc is absent. */
static int epoll_fds(int *out, int max)
{
	int dfd = sys_open("/proc/self/fd", O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		return -1;
	char buf[4096];
	int n = 0;
	for (;;) {
		long got = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
		if (got <= 0)
			break;
		for (long off = 0; off < got;) {
			/* struct linux_dirent64: ino, off, reclen, type, name */
			unsigned short reclen;
			memcpy(&reclen, buf + off + 16, sizeof(reclen));
			const char *name = buf + off + 19;
			off += reclen;
			if (name[0] < '0' || name[0] > '9')
				continue;
			char link[32];
			long l = syscall(SYS_readlinkat, dfd, name, link, sizeof(link) - 1);
			if (l <= 0)
				continue;
			link[l] = 0;
			if (strcmp(link, "anon_inode:[eventpoll]") == 0 && n < max)
				out[n++] = atoi(name);
		}
	}
	real.close(dfd);
	return n;
}

/* Calls each(arg, tfd, events, data, ino) for every registration in epoll
 * instance epfd; -1 when its fdinfo cannot be read. */
static int each_reg(int epfd, void (*each)(void *, int, uint32_t, uint64_t, unsigned long),
		    void *arg)
{
	char path[48];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", epfd);
	int fd = sys_open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	char buf[4096];
	size_t have = 0;
	for (;;) {
		ssize_t r = real.read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r <= 0)
			break;
		have += (size_t)r;
		buf[have] = 0;
		char *line = buf, *nl;
		while ((nl = strchr(line, '\n')) != NULL) {
			*nl = 0;
			/* "tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x" */
			char *t = strstr(line, "tfd:"), *e = strstr(line, "events:"),
			     *d = strstr(line, "data:"), *i = strstr(line, "ino:");
			if (t && e && d && i)
				each(arg, (int)strtol(t + 4, NULL, 10),
				     (uint32_t)strtoul(e + 7, NULL, 16), strtoull(d + 5, NULL, 16),
				     strtoul(i + 4, NULL, 16));
			line = nl + 1;
		}
		have = (size_t)(buf + have - line);
		memmove(buf, line, have);
		if (have >= sizeof(buf) - 1)
			have = 0; /* a line longer than any the kernel writes */
	}
	real.close(fd);
	return 0;
}

static unsigned long ino_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

struct collect {
	struct fconn *fc;
	int epfd;
	unsigned long ino;
	struct ep_regs *out;
};

static void collect_one(void *arg, int tfd, uint32_t events, uint64_t data, unsigned long ino)
{
	struct collect *c = arg;
	if (ino != c->ino)
		return;
	for (int k = 0; k < c->fc->own.n_fds; k++) {
		if (c->fc->own.fds[k] != tfd)
			continue;
		if (c->out->n == FLARE_MAX_EPOLL) {
			c->out->n = -1; /* more than a connection can sensibly have */
			return;
		}
		if (c->out->n < 0)
			return;
		struct ep_reg *r = &c->out->r[c->out->n++];
		r->epfd = c->epfd;
		r->fd = tfd;
		r->ev.events = events;
		r->ev.data.u64 = data;
	}
}

/* The last read is still the kernel's word when the program has made no
 * epoll_ctl call since and none of it is one-shot (the kernel disarms
 * those by itself): a per-request connection moves at every request. */
static int cached(const struct fconn *fc, unsigned long ctls, struct ep_regs *out)
{
	if (!fc->own.ep_cache_ctls || fc->own.ep_cache_ctls != ctls)
		return 0;
	for (int i = 0; i < fc->own.ep_cache.n; i++)
		if (fc->own.ep_cache.r[i].ev.events & EPOLLONESHOT)
			return 0;
	*out = fc->own.ep_cache;
	return 1;
}

int ep_read(struct fconn *fc, struct ep_regs *out)
{
	out->n = 0;
	int shared = __atomic_load_n(&fc->own.forked, __ATOMIC_RELAXED);
	unsigned long ctls = __atomic_load_n(&flare_epoll_ctls, __ATOMIC_ACQUIRE);
	if (!ctls)
		return 0; /* nothing was ever registered */
	if (cached(fc, ctls, out))
		return shared && out->n > 0 ? -1 : 0;
	int epfds[MAX_EPFDS];
	int n = epoll_fds(epfds, MAX_EPFDS);
	if (n < 0 || n == MAX_EPFDS || fc->own.n_fds <= 0)
		return -1;
	struct collect c = {fc, -1, ino_of(fc->own.fds[0]), out};
	for (int i = 0; i < n && out->n >= 0; i++) {
		c.epfd = epfds[i];
		if (each_reg(epfds[i], collect_one, &c) < 0 && errno != ENOENT)
			return -1;
	}
	if (out->n >= 0) {
		fc->own.ep_cache = *out;
		fc->own.ep_cache_ctls = ctls;
	}
	/* registered where another process (a fork) has it too: moving it
	 * would take the registration from under that process */
	return out->n < 0 || (shared && out->n > 0) ? -1 : 0;
}

void ep_detach(const struct ep_regs *regs)
{
	for (int i = 0; i < regs->n; i++)
		real.epoll_ctl(regs->r[i].epfd, EPOLL_CTL_DEL, regs->r[i].fd, NULL);
}

/* (an edge-triggered registration fires if the new socket is already ready) */
void ep_attach(const struct ep_regs *regs)
{
	for (int i = 0; i < regs->n; i++) {
		struct epoll_event ev = regs->r[i].ev;
		if (real.epoll_ctl(regs->r[i].epfd, EPOLL_CTL_ADD, regs->r[i].fd, &ev) < 0 &&
		    errno == EEXIST)
			real.epoll_ctl(regs->r[i].epfd, EPOLL_CTL_MOD, regs->r[i].fd, &ev);
	}
}

struct find {
	uint64_t data;
	int connecting_only;
	int fd;
};

static void find_one(void *arg, int tfd, uint32_t events, uint64_t data, unsigned long ino)
{
	(void)events;
	struct find *f = arg;
	struct fconn *fc;
	if (f->fd >= 0 || data != f->data || !(fc = fdtab_get(tfd)) || ino != ino_of(tfd))
		return;
	if (f->connecting_only && !fconn_is_pending(fconn_state(fc)))
		return;
	f->fd = tfd;
}

static int find(int epfd, uint64_t data, int connecting_only)
{
	struct find f = {data, connecting_only, -1};
	if (!__atomic_load_n(&flare_epoll_ctls, __ATOMIC_ACQUIRE) ||
	    each_reg(epfd, find_one, &f) < 0)
		return -1;
	return f.fd;
}

int ep_find_pending(int epfd, uint64_t data) { return find(epfd, data, 1); }

int ep_find(int epfd, uint64_t data) { return find(epfd, data, 0); }
