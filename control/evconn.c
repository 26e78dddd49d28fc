#include "evconn.h"

#include "clock.h"
#include "log.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_OUTPUT (64u << 20) /* a peer that stops reading is dropped */

static void free_conn(struct evconn *c)
{
	if (c->ops->on_close)
		c->ops->on_close(c, c->close_why ? c->close_why : "closed");
	bufferevent_free(c->bev);
	if (c->auth) {
		auth_session_wipe(c->auth);
		free(c->auth);
	}
	if (c->opened)
		evbuffer_free(c->opened);
	if (c->unsent)
		evbuffer_free(c->unsent);
	if (c->guard_timer)
		event_free(c->guard_timer);
	free(c);
}

void evconn_close(struct evconn *c, const char *why)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->close_why = why;
	if (!c->in_callback)
		free_conn(c);
}

/* A frame a guarded connection may not send here, from its header: before
 * the keys, only the auth frame of its possible sizes; sealed frames no
 * larger than one record; before HELLO, small frames. */
static const char *frame_refused(const struct evconn *c, struct evbuffer *in,
				 const struct fw_hdr *h)
{
	if (!c->guard_timer)
		return NULL;
	int raw = !c->auth || in != c->opened; /* the socket's bytes, not opened ones */
	if (c->auth && raw) {
		if (!c->auth->keyed)
			return h->type != FW_AUTH ? "no auth frame first (is auth_key_file set on "
						    "both sides?)"
			       : h->len < AUTH_HELLO_MIN || h->len > AUTH_HELLO_MAX
				   ? "an auth frame of an impossible size"
				   : NULL;
		if (h->type != FW_SEALED)
			return NULL; /* auth_receive refuses it */
		size_t max = c->pre_hello ? EVCONN_PRE_HELLO_MAX + FW_HDR_LEN : AUTH_RECORD_MAX;
		return h->len > max + AUTH_TAG_BYTES ? "a sealed frame larger than allowed here"
						     : NULL;
	}
	return c->pre_hello && (h->type != FW_HELLO || h->len > EVCONN_PRE_HELLO_MAX)
		   ? "a first frame that is not a HELLO of its size"
		   : NULL;
}

/* The next whole frame at the head of in: its length, 0 while incomplete,
 * -1 for a bad header (the connection is closed). */
static long next_frame(struct evconn *c, struct evbuffer *in, struct fw_hdr *h, uint8_t **frame)
{
	size_t avail = evbuffer_get_length(in);
	size_t head_len = avail < FW_HDR_LEN ? avail : FW_HDR_LEN;
	const char *why = NULL;
	if (avail == 0)
		return 0;
	if (fw_frame_check(evbuffer_pullup(in, (ssize_t)head_len), head_len, h, &why) < 0) {
		log_warn("%s: bad frame header (%s), closing", c->peer, why);
		evconn_close(c, "bad frame");
		return -1;
	}
	if (avail >= FW_HDR_LEN && (why = frame_refused(c, in, h)) != NULL) {
		/* judged on the header alone: nothing of it is buffered */
		log_warn("%s: %s, closing", c->peer, why);
		c->auth_rejected = c->auth && !c->auth->proven;
		evconn_close(c, "frame refused");
		return -1;
	}
	if (avail < FW_HDR_LEN || avail < FW_HDR_LEN + (size_t)h->len)
		return 0;
	*frame = evbuffer_pullup(in, (ssize_t)(FW_HDR_LEN + h->len));
	return (long)(FW_HDR_LEN + h->len);
}

/* A daemon's timer is late when its loop was not scheduled in time */
#define LATE_NS 50000000ull

/* Bytes the peer sent that this side has not decoded yet */
static int unread_bytes(struct evconn *c)
{
	int n = 0;
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	return evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
	       (fd >= 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0);
}

/* A timer that fired late_ns late means this daemon was not scheduled:
 * the peer, likely starved by the same load, gets the time this side
 * lost, once per silence (a frame ends it). 1 when granted. */
static int late_grace(struct evconn *c, uint64_t late_ns)
{
	if (late_ns <= LATE_NS || c->late_grace)
		return 0;
	c->late_grace = 1;
	log_info("%s: timer %.0f ms late (this host is busy): the peer gets that long again",
		 c->peer, (double)late_ns / 1e6);
	return 1;
}

static int arm_guard(struct evconn *c, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	c->guard_due_ns = flare_monotonic_ns() + ms * 1000000ull;
	return evtimer_add(c->guard_timer, &tv);
}

static void rearm_idle(struct evconn *c)
{
	if (!c->guard_timer)
		return;
	if (c->idle_ms <= 0)
		evtimer_del(c->guard_timer);
	else
		arm_guard(c, (uint64_t)c->idle_ms);
}

/* Decodes the whole frames in `in` and hands them to the owner. */
static void deliver(struct evconn *c, struct evbuffer *in)
{
	while (!c->closing) {
		struct fw_hdr h;
		uint8_t *frame;
		const char *why = NULL;
		long n = next_frame(c, in, &h, &frame);
		if (n <= 0)
			break;
		if (h.type == FW_AUTH && !c->auth) {
			log_warn("%s: the peer authenticates but this side has no auth_key_file, "
				 "closing",
				 c->peer);
			evconn_close(c, "unexpected authentication");
			break;
		}
		struct fw_msg m;
		if (fw_decode(h.type, frame + FW_HDR_LEN, h.len, &m, &why) < 0) {
			log_warn("%s: bad %s frame (%s), closing", c->peer, fw_type_name(h.type),
				 why);
			fw_msg_free(&m);
			evconn_close(c, "bad frame");
			break;
		}
		c->last_frame_ns = flare_monotonic_ns();
		c->late_grace = 0;
		if (m.type == FW_HELLO && c->pre_hello) {
			/* the owner closes on a HELLO it refuses; from now on the
			 * idle deadline, not the handshake's, is the one that runs */
			c->pre_hello = 0;
			rearm_idle(c);
		}
		c->ops->on_msg(c, &m);
		fw_msg_free(&m);
		evbuffer_drain(in, (size_t)n);
	}
}

static void reject(struct evconn *c, const char *why)
{
	log_warn("%s: rejected: %s", c->peer, why);
	c->auth_rejected = 1;
	evconn_close(c, "failed to authenticate");
}

static int seal_out(struct evconn *c, const uint8_t *data, size_t len);

/* Authenticated connections: the peer's nonce first, then sealed frames
 * only, opened into c->opened and delivered from there. */
static void unseal(struct evconn *c, struct evbuffer *in)
{
	while (!c->closing) {
		struct fw_hdr h;
		uint8_t *frame;
		const char *why = NULL;
		long n = next_frame(c, in, &h, &frame);
		if (n <= 0)
			break;
		struct evbuffer_iovec v = {0};
		int hello;
		if (h.type == FW_SEALED &&
		    evbuffer_reserve_space(c->opened, (ev_ssize_t)h.len + 1, &v, 1) < 1) {
			evconn_close(c, "out of memory");
			break;
		}
		long got = auth_receive(c->auth, &h, frame, v.iov_base, &hello, &why);
		if (got < 0) {
			reject(c, why);
			break;
		}
		if (hello) {
			/* what the owner sent before the keys existed */
			size_t held = evbuffer_get_length(c->unsent);
			const uint8_t *p = held ? evbuffer_pullup(c->unsent, (ssize_t)held) : NULL;
			/* the first frame (HELLO) in a record of its own: a guarded
			 * peer takes only a small record before HELLO */
			size_t first = auth_first_record_len(p, held);
			if (held && (seal_out(c, p, first) < 0 ||
				     (first < held && seal_out(c, p + first, held - first) < 0)))
				break;
			evbuffer_drain(c->unsent, held);
		} else {
			v.iov_len = (size_t)got;
			evbuffer_commit_space(c->opened, &v, 1);
		}
		evbuffer_drain(in, (size_t)n);
		/* record by record: the next record's bound depends on whether
		 * this one held the HELLO */
		deliver(c, c->opened);
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct evconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	c->in_callback = 1;
	c->last_rx_ns = flare_monotonic_ns();
	if (c->auth)
		unseal(c, in);
	else
		deliver(c, in);
	c->in_callback = 0;
	if (c->closing)
		free_conn(c);
}

/* Frames are small and latency is the point (a death must reach every
 * agent in microseconds): no Nagle delay on any control connection. */
static void no_delay(struct evconn *c)
{
	int one = 1;
	setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct evconn *c = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		c->connected = 1;
		c->last_rx_ns = flare_monotonic_ns();
		no_delay(c);
		c->in_callback = 1;
		if (c->ops->on_connect)
			c->ops->on_connect(c);
		c->in_callback = 0;
		if (c->closing)
			free_conn(c);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && c->connected) {
		uint64_t silent = flare_monotonic_ns() - c->last_rx_ns;
		uint64_t late = silent > (uint64_t)c->idle_ms * 1000000ull
				    ? silent - (uint64_t)c->idle_ms * 1000000ull
				    : 0;
		if (unread_bytes(c)) {
			/* the peer spoke; this loop was too busy to read it in time */
			bufferevent_enable(c->bev, EV_READ);
			return;
		}
		if (late_grace(c, late)) {
			bufferevent_enable(c->bev, EV_READ);
			return;
		}
	}
	if (what & BEV_EVENT_TIMEOUT)
		evconn_close(c, c->connected ? "silent past its timeout" : "connect timed out");
	else if (what & BEV_EVENT_EOF)
		evconn_close(c, "closed by peer");
	else
		evconn_close(c, c->connected ? "connection error" : "connect failed");
}

static struct evconn *wrap(struct event_base *base, evutil_socket_t fd, const char *peer,
			   int idle_ms, const struct evconn_ops *ops, void *owner)
{
	struct evconn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		free(c);
		return NULL;
	}
	c->ops = ops;
	c->owner = owner;
	c->idle_ms = idle_ms;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	if (idle_ms > 0) {
		struct timeval tv = {idle_ms / 1000, (idle_ms % 1000) * 1000};
		bufferevent_set_timeouts(c->bev, &tv, NULL);
	}
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	return c;
}

struct evconn *evconn_accept(struct event_base *base, evutil_socket_t fd, const char *peer,
			     int idle_ms, const struct evconn_ops *ops, void *owner)
{
	struct evconn *c = wrap(base, fd, peer, idle_ms, ops, owner);
	if (c) {
		c->connected = 1;
		c->last_rx_ns = flare_monotonic_ns();
		no_delay(c); /* fails harmlessly on UNIX sockets */
	} else {
		evutil_closesocket(fd);
	}
	return c;
}

/* A socket bound to source (port 0: the kernel's choice), for a host that
 * must speak from one of its addresses; -1 with errno */
static evutil_socket_t bound_socket(const struct flare_addr *source)
{
	struct sockaddr_storage ss;
	socklen_t len = flare_addr_to_sockaddr(source, &ss);
	evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

struct evconn *evconn_connect(struct event_base *base, const struct sockaddr *sa, int salen,
			      const struct flare_addr *source, const char *peer, int idle_ms,
			      const struct evconn_ops *ops, void *owner)
{
	evutil_socket_t fd = -1;
	if (source && source->family) {
		fd = bound_socket(source);
		if (fd < 0) {
			char a[FLARE_ADDR_STRLEN];
			log_warn("%s: cannot connect from %s: %s", peer,
				 flare_addr_format(source, a, sizeof(a)), strerror(errno));
			return NULL;
		}
	}
	struct evconn *c = wrap(base, fd, peer, idle_ms, ops, owner);
	if (!c) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (bufferevent_socket_connect(c->bev, sa, salen) < 0) {
		/* failed at once (no route, no descriptors): the caller retries */
		bufferevent_free(c->bev);
		free(c);
		return NULL;
	}
	return c;
}

static void guard_check(evutil_socket_t fd, short what, void *arg)
{
	struct evconn *c = arg;
	(void)fd;
	(void)what;
	uint64_t now = flare_monotonic_ns(), next;
	if (c->pre_hello) {
		if (now >= c->handshake_end_ns) {
			log_warn("%s: no HELLO within the handshake deadline, closing", c->peer);
			c->auth_rejected = c->auth && !c->auth->proven;
			evconn_close(c, "handshake timed out");
			return;
		}
		next = c->handshake_end_ns;
	} else {
		if (c->idle_ms <= 0)
			return; /* nothing more to watch */
		uint64_t end = c->last_frame_ns + (uint64_t)c->idle_ms * 1000000ull;
		if (now >= end && unread_bytes(c)) {
			/* the peer spoke; this loop has not read it yet */
			arm_guard(c, 1);
			return;
		}
		uint64_t late = now > c->guard_due_ns ? now - c->guard_due_ns : 0;
		if (now >= end && late_grace(c, late))
			end = now + late;
		if (now >= end) {
			evconn_close(c, "silent past its timeout");
			return;
		}
		next = end;
	}
	arm_guard(c, (next - now) / 1000000ull + 1);
}

int evconn_guard(struct evconn *c, int handshake_ms, int idle_ms)
{
	c->guard_timer = evtimer_new(bufferevent_get_base(c->bev), guard_check, c);
	if (!c->guard_timer)
		return -1;
	c->pre_hello = 1;
	c->idle_ms = idle_ms;
	c->last_frame_ns = flare_monotonic_ns();
	c->handshake_end_ns = c->last_frame_ns + (uint64_t)handshake_ms * 1000000ull;
	/* bytes no longer keep it open: the bufferevent's own timeout goes */
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	return arm_guard(c, (uint64_t)handshake_ms);
}

int evconn_send(struct evconn *c, const struct fw_msg *m)
{
	struct fw_buf b = {0};
	if (c->closing)
		return -1;
	if (fw_encode(&b, m) < 0) {
		fw_buf_free(&b);
		return -1;
	}
	int rc = evconn_send_raw(c, b.data, b.len);
	fw_buf_free(&b);
	return rc;
}

/* Seals data into sealed frames written straight into the output buffer. */
static int seal_out(struct evconn *c, const uint8_t *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	for (size_t off = 0; off < len;) {
		size_t n = len - off < AUTH_RECORD_MAX ? len - off : AUTH_RECORD_MAX;
		size_t whole = FW_HDR_LEN + n + AUTH_TAG_BYTES;
		struct evbuffer_iovec v;
		struct fw_buf b;
		if (evbuffer_reserve_space(out, (ev_ssize_t)whole, &v, 1) < 1) {
			evconn_close(c, "out of memory");
			return -1;
		}
		fw_buf_init_fixed(&b, v.iov_base, whole);
		if (auth_seal(c->auth, data + off, n, &b) < 0) {
			evconn_close(c, "cannot seal a frame");
			return -1;
		}
		v.iov_len = whole;
		evbuffer_commit_space(out, &v, 1);
		off += n;
	}
	return 0;
}

void evconn_flush(struct evconn *c)
{
	/* straight to the socket, without waiting for the loop's write event:
	 * a push to a thousand agents goes out back to back, not interleaved
	 * with whatever else the loop has to do first */
	if (!c->closing && c->bev)
		evbuffer_write(bufferevent_get_output(c->bev), bufferevent_getfd(c->bev));
}

int evconn_send_raw(struct evconn *c, const void *data, size_t len)
{
	if (c->closing)
		return -1;
	if (evconn_pending_output(c) > MAX_OUTPUT) {
		log_warn("%s: peer does not read its frames, closing", c->peer);
		evconn_close(c, "output backlog");
		return -1;
	}
	if (!c->auth)
		return bufferevent_write(c->bev, data, len);
	if (!c->auth->keyed)
		return evbuffer_add(c->unsent, data, len);
	return seal_out(c, data, len);
}

int evconn_auth(struct evconn *c, const struct auth_key *key, int client)
{
	struct fw_buf b = {0};
	c->auth = calloc(1, sizeof(*c->auth));
	c->opened = evbuffer_new();
	c->unsent = evbuffer_new();
	if (!c->auth || !c->opened || !c->unsent || auth_session_init(c->auth, key, client) < 0 ||
	    auth_hello(c->auth, &b) < 0 || bufferevent_write(c->bev, b.data, b.len) < 0) {
		fw_buf_free(&b);
		return -1;
	}
	fw_buf_free(&b);
	return 0;
}

size_t evconn_pending_output(const struct evconn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev)) +
	       (c->unsent ? evbuffer_get_length(c->unsent) : 0);
}
