#include "hook.h"

#include <signal.h>
#include <string.h>
#include <sys/select.h>

/* Clears the descriptors of failed connects the library moved on from;
 * returns the count left. */
static int filter(int nfds, fd_set *r, fd_set *w, fd_set *e, int n)
{
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE && n > 0; fd++) {
		int in_r = r && FD_ISSET(fd, r), in_w = w && FD_ISSET(fd, w),
		    in_e = e && FD_ISSET(fd, e);
		if (!(in_r || in_w || in_e) || !nb_check_ready(fd, in_w))
			continue;
		if (in_r)
			FD_CLR(fd, r);
		if (in_w)
			FD_CLR(fd, w);
		if (in_e)
			FD_CLR(fd, e);
		n -= in_r + in_w + in_e;
	}
	return n;
}

static void save(fd_set *dst, const fd_set *src)
{
	if (src)
		memcpy(dst, src, sizeof(*dst));
}

static void restore(fd_set *dst, const fd_set *src)
{
	if (dst)
		memcpy(dst, src, sizeof(*dst));
}

struct select_wait {
	struct sliced_wait w;
	int nfds;
	fd_set *r, *wr, *e, r0, w0, e0; /* the program's sets, and as it passed them */
};

static int select_wait(struct sliced_wait *w, int ms)
{
	struct select_wait *s = (struct select_wait *)w;
	restore(s->r, &s->r0); /* the last wait rewrote them */
	restore(s->wr, &s->w0);
	restore(s->e, &s->e0);
	struct timeval slice = {ms / 1000, (ms % 1000) * 1000};
	return real.select(s->nfds, s->r, s->wr, s->e, ms < 0 ? NULL : &slice);
}

static int select_filter(struct sliced_wait *w, int n)
{
	struct select_wait *s = (struct select_wait *)w;
	return filter(s->nfds, s->r, s->wr, s->e, n);
}

FLARE_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	HOOK_ENTER(select, (int)syscall(SYS_select, nfds, r, w, e, tv));
	if (wait_is_plain())
		return real.select(nfds, r, w, e, tv);
	struct select_wait s = {
	    .w = {select_wait, select_filter, 0}, .nfds = nfds, .r = r, .wr = w, .e = e};
	save(&s.r0, r);
	save(&s.w0, w);
	save(&s.e0, e);
	int n = wait_sliced(&s.w, tv ? (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000) : -1);
	if (n >= 0 && tv && s.w.left_ms >= 0) {
		/* Linux reports the time not slept */
		tv->tv_sec = s.w.left_ms / 1000;
		tv->tv_usec = (s.w.left_ms % 1000) * 1000;
	}
	return n;
}

FLARE_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
			 const sigset_t *mask)
{
	HOOK_ENTER(pselect, (int)syscall(SYS_pselect6, nfds, r, w, e, ts, NULL));
	if (!__atomic_load_n(&flare_n_connecting, __ATOMIC_ACQUIRE))
		return real.pselect(nfds, r, w, e, ts, mask);
	fd_set r0, w0, e0;
	save(&r0, r);
	save(&w0, w);
	save(&e0, e);
	for (;;) {
		int n = real.pselect(nfds, r, w, e, ts, mask);
		if (n <= 0)
			return n;
		int left = filter(nfds, r, w, e, n);
		if (left > 0 || (ts && ts->tv_sec == 0 && ts->tv_nsec == 0))
			return left;
		restore(r, &r0);
		restore(w, &w0);
		restore(e, &e0);
	}
}
