#include "hook.h"

#include <signal.h>
#include <string.h>
#include <sys/select.h>

/* Clears the descriptors of failed connects the library moved on from
 * (select cannot tell a failed connect from a good one: both are
 * writable), and of failed connections it is healing (readable: a peek
 * tells data from an error); returns the count left. */
static int filter(int nfds, fd_set *r, fd_set *w, fd_set *e, int n)
{
	int pending = __atomic_load_n(&flare_n_pending, __ATOMIC_ACQUIRE);
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE && n > 0; fd++) {
		int in_r = r && FD_ISSET(fd, r), in_w = w && FD_ISSET(fd, w),
		    in_e = e && FD_ISSET(fd, e);
		if (!(in_r || in_w || in_e) || !fdtab_get(fd))
			continue;
		if (!(pending && nb_event(fd, in_w, 1)) && !(pending && in_r && nb_event_in(fd)) &&
		    !(in_r && heal_on_event(fd)))
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

/* select and pselect share one sliced wait; pselect's mask is kept */
struct select_wait {
	struct sliced_wait w;
	int nfds, with_mask;
	const sigset_t *mask;
	fd_set *r, *wr, *e, r0, w0, e0; /* the program's sets, and as it passed them */
};

static int select_wait(struct sliced_wait *w, int ms)
{
	struct select_wait *s = (struct select_wait *)w;
	restore(s->r, &s->r0); /* the last wait rewrote them */
	restore(s->wr, &s->w0);
	restore(s->e, &s->e0);
	struct timespec ts = wait_ts(w, ms);
	if (s->with_mask)
		return real.pselect(s->nfds, s->r, s->wr, s->e, ms < 0 ? NULL : &ts, s->mask);
	struct timeval slice = {ts.tv_sec, ts.tv_nsec / 1000};
	return real.select(s->nfds, s->r, s->wr, s->e, ms < 0 ? NULL : &slice);
}

static int select_filter(struct sliced_wait *w, int n)
{
	struct select_wait *s = (struct select_wait *)w;
	return filter(s->nfds, s->r, s->wr, s->e, n);
}

static int sliced_select(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *exact,
			 int with_mask, const sigset_t *mask, int *left_ms)
{
	int timeout_ms = wait_ms_of_ts(exact);
	struct select_wait s = {.w = {select_wait, select_filter, 0, exact, timeout_ms},
				.nfds = nfds,
				.with_mask = with_mask,
				.mask = mask,
				.r = r,
				.wr = w,
				.e = e};
	save(&s.r0, r);
	save(&s.w0, w);
	save(&s.e0, e);
	int n = wait_sliced(&s.w, timeout_ms);
	*left_ms = s.w.left_ms;
	return n;
}

FLARE_EXPORT int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
	HOOK_ENTER(select, (int)syscall(SYS_select, nfds, r, w, e, tv));
	struct timespec exact;
	if (tv) {
		exact.tv_sec = tv->tv_sec;
		exact.tv_nsec = tv->tv_usec * 1000L;
		if (tv->tv_usec < 0 || tv->tv_usec >= 1000000)
			exact.tv_nsec = -1; /* the kernel's EINVAL */
	}
	if (wait_is_plain() || wait_ms_of_ts(tv ? &exact : NULL) == -2)
		return real.select(nfds, r, w, e, tv);
	int left;
	int n = sliced_select(nfds, r, w, e, tv ? &exact : NULL, 0, NULL, &left);
	if (n >= 0 && tv && left >= 0) {
		/* Linux reports the time not slept */
		if (left < wait_ms_of_ts(&exact)) {
			tv->tv_sec = left / 1000;
			tv->tv_usec = (left % 1000) * 1000;
		} else if (n == 0) {
			tv->tv_sec = tv->tv_usec = 0;
		}
	}
	return n;
}

FLARE_EXPORT int pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *ts,
			 const sigset_t *mask)
{
	HOOK_ENTER(pselect, (int)syscall(SYS_pselect6, nfds, r, w, e, ts, NULL));
	if (wait_is_plain() || wait_ms_of_ts(ts) == -2)
		return real.pselect(nfds, r, w, e, ts, mask);
	int left;
	return sliced_select(nfds, r, w, e, ts, 1, mask, &left);
}
