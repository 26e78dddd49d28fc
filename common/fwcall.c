#include "fwcall.h"

#include "clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Waits for ev on fd until the deadline; 0, or -1 when it passed. */
static int wait_for(const struct fw_io *io, int fd, short ev, uint64_t end)
{
	for (;;) {
		uint64_t now = flare_monotonic_ms();
		if (now >= end)
			return -1;
		struct pollfd p = {.fd = fd, .events = ev};
		int n = io->poll(&p, 1, (int)(end - now));
		if (n > 0)
			return 0;
		if (n == 0 || errno != EINTR)
			return -1;
	}
}

int fw_call_connect(const struct fw_io *io, int fd, const struct sockaddr *sa, socklen_t len,
		    int timeout_ms, const char **why)
{
	int err = 0;
	socklen_t el = sizeof(err);
	if (io->connect(fd, sa, len) == 0)
		return 0;
	if (errno != EINPROGRESS) {
		*why = strerror(errno);
		return -1;
	}
	if (wait_for(io, fd, POLLOUT, flare_monotonic_ms() + (uint64_t)timeout_ms) < 0) {
		*why = "connect timed out";
		return -1;
	}
	if (io->getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
		*why = strerror(err ? err : errno);
		return -1;
	}
	return 0;
}

/* Room for at least one more byte in `in`; NULL when a fixed buffer is full. */
static uint8_t *room(struct fw_buf *in, size_t *n)
{
	if (in->len == in->cap && !in->fixed) {
		size_t cap = in->cap * 2 + 65536;
		uint8_t *d = realloc(in->data, cap);
		if (!d)
			return NULL;
		in->data = d;
		in->cap = cap;
	}
	*n = in->cap - in->len;
	return *n ? in->data + in->len : NULL;
}

int fw_send_all(const struct fw_io *io, int fd, const void *data, size_t len, uint64_t end_ms,
		const char **why)
{
	*why = "the request did not go out";
	for (size_t off = 0; off < len;) {
		ssize_t w = io->send(fd, (const uint8_t *)data + off, len - off, MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
			 wait_for(io, fd, POLLOUT, end_ms) < 0)
			return -1;
	}
	return 0;
}

int fw_recv_more(const struct fw_io *io, int fd, struct fw_buf *in, uint64_t end_ms,
		 const char **why)
{
	for (;;) {
		size_t n;
		uint8_t *p = room(in, &n);
		if (!p) {
			*why = "answer too long";
			return -1;
		}
		ssize_t r = io->recv(fd, p, n, 0);
		if (r > 0) {
			in->len += (size_t)r;
			return 0;
		}
		if (r == 0) {
			*why = "closed by the peer";
			return -1;
		}
		if ((errno != EAGAIN && errno != EINTR) || wait_for(io, fd, POLLIN, end_ms) < 0) {
			*why = errno == EAGAIN || errno == EINTR ? "no answer in time"
								 : strerror(errno);
			return -1;
		}
	}
}

int fw_call(const struct fw_io *io, int fd, const struct fw_buf *req, int want, struct fw_buf *in,
	    int timeout_ms, struct fw_msg *ans, const char **why)
{
	uint64_t end = flare_monotonic_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	memset(ans, 0, sizeof(*ans));
	if (fw_send_all(io, fd, req->data, req->len, end, why) < 0)
		return -1;
	for (;;) {
		struct fw_hdr h;
		long whole = fw_frame_check(in->data, in->len, &h, why);
		if (whole < 0)
			return -1;
		if (whole == 0) {
			if (fw_recv_more(io, fd, in, end, why) < 0)
				return -1;
			continue;
		}
		if (h.type == FW_AUTH) {
			*why = "the peer requires authentication (auth_key_file)";
			return -1;
		}
		if (fw_decode(h.type, in->data + FW_HDR_LEN, h.len, ans, why) < 0) {
			fw_msg_free(ans);
			return -1;
		}
		fw_buf_consume(in, (size_t)whole);
		if (ans->type == want || ans->type == FW_ERROR)
			return 0;
		fw_msg_free(ans); /* a heartbeat, or news not asked for */
	}
}
