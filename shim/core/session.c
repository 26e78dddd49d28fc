/* The session log of a framed connection (framed.c keeps it): the
 * commands that set per-connection state (Redis SELECT, AUTH, HELLO,
 * CLIENT SETNAME, READONLY...) with the replies the program got. A heal
 * replays them in order on the new connection before anything else and
 * reads their replies itself: a reply kept whole must come back the same,
 * a longer one (HELLO's map names this connection) of the same type and
 * not an error. Any difference, and the new connection is not used. */
#include "shim.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

int session_pending(struct fconn *fc)
{
	pthread_mutex_lock(&fc->lock);
	int n = fc->sess_len > 0;
	pthread_mutex_unlock(&fc->lock);
	return n;
}

static int wait_readable(int fd, int64_t end)
{
	int64_t left = end - (int64_t)flare_monotonic_ms();
	if (left <= 0)
		return -1;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return real.poll(&p, 1, (int)left) == 1 ? 0 : -1;
}

/* Reads one reply, keeping its first bytes; -1 on anything but exactly
 * one whole reply in time. */
static int read_reply(int fd, int proto, uint8_t *kept, uint32_t *kept_len, uint8_t *rflags,
		      int64_t end)
{
	struct fr_rep f;
	uint8_t tmp[512];
	fr_rep_init(&f, proto);
	*kept_len = 0;
	for (;;) {
		ssize_t r = real.recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
		if (r == 0)
			return -1;
		if (r < 0) {
			if ((errno != EAGAIN && errno != EINTR) || wait_readable(fd, end) < 0)
				return -1;
			continue;
		}
		for (size_t off = 0; off < (size_t)r;) {
			int ended;
			long used = fr_rep_step(&f, tmp + off, (size_t)r - off, &ended, rflags);
			if (used < 0)
				return -1;
			size_t c = (size_t)used < FLARE_SESSION_REPLY - *kept_len
				       ? (size_t)used
				       : FLARE_SESSION_REPLY - *kept_len;
			memcpy(kept + *kept_len, tmp + off, c);
			*kept_len += (uint32_t)c;
			off += (size_t)used;
			if (ended && !(*rflags & RP_PUSH))
				return off == (size_t)r ? 0 : -1; /* nothing may follow it */
		}
	}
}

int session_replay(struct fconn *fc, int fd, int timeout_ms, const char *replica)
{
	uint8_t log[FLARE_SESSION_LOG];
	pthread_mutex_lock(&fc->lock);
	uint32_t n = fc->sess_len;
	int proto = fc->proto;
	if (n)
		memcpy(log, fc->sess, n);
	pthread_mutex_unlock(&fc->lock);
	int64_t end = (int64_t)flare_monotonic_ms() + timeout_ms;
	for (uint32_t off = 0; off < n;) {
		uint32_t req = (uint32_t)log[off] << 8 | log[off + 1];
		const uint8_t *cmd = log + off + 2;
		int whole = log[off + 2 + req];
		uint32_t rep_len = (uint32_t)log[off + 3 + req] << 8 | log[off + 4 + req];
		const uint8_t *rep = log + off + 5 + req;
		uint8_t got[FLARE_SESSION_REPLY], rflags = 0;
		uint32_t got_len;
		off += 5 + req + rep_len;
		int left = (int)(end - (int64_t)flare_monotonic_ms());
		if (left <= 0 || send_all(fd, cmd, req, left) < 0 ||
		    read_reply(fd, proto, got, &got_len, &rflags, end) < 0) {
			log_warn("session replay to %s: no reply in time", replica);
			return -1;
		}
		int same = whole ? got_len == rep_len && memcmp(got, rep, rep_len) == 0
				 : got_len && rep_len && got[0] == rep[0] && !(rflags & RP_ERROR);
		if (!same) {
			log_warn("session replay to %s: the reply differs from the original "
				 "connection's (%.*s): not used",
				 replica, (int)(got_len < 40 ? got_len : 40), (const char *)got);
			return -1;
		}
	}
	return 0;
}
