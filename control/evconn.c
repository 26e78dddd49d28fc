#include "evconn.h"

#include "clock.h"
#include "log.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OUTPUT (64u << 20) /* a peer that stops reading is dropped */

static void free_conn(struct evconn *c)
{
	if (c->ops->on_close)
		c->ops->on_close(c, c->close_why ? c->close_why : "closed");
	bufferevent_free(c->bev);
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

static void on_read(struct bufferevent *bev, void *arg)
{
	struct evconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	c->in_callback = 1;
	c->last_rx_ns = flare_monotonic_ns();
	while (!c->closing) {
		size_t avail = evbuffer_get_length(in);
		struct fw_hdr h;
		const char *why = NULL;
		if (avail == 0)
			break;
		uint8_t *head =
		    evbuffer_pullup(in, avail < FW_HDR_LEN ? (ssize_t)avail : FW_HDR_LEN);
		long n = fw_frame_check(head, avail < FW_HDR_LEN ? avail : FW_HDR_LEN, &h, &why);
		if (n < 0) {
			log_warn("%s: bad frame header (%s), closing", c->peer, why);
			evconn_close(c, "bad frame");
			break;
		}
		if (avail < FW_HDR_LEN || avail < FW_HDR_LEN + (size_t)h.len)
			break;
		uint8_t *frame = evbuffer_pullup(in, (ssize_t)(FW_HDR_LEN + h.len));
		struct fw_msg m;
		if (fw_decode(h.type, frame + FW_HDR_LEN, h.len, &m, &why) < 0) {
			log_warn("%s: bad %s frame (%s), closing", c->peer, fw_type_name(h.type),
				 why);
			fw_msg_free(&m);
			evconn_close(c, "bad frame");
			break;
		}
		c->ops->on_msg(c, &m);
		fw_msg_free(&m);
		evbuffer_drain(in, FW_HDR_LEN + h.len);
	}
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

struct evconn *evconn_connect(struct event_base *base, const struct sockaddr *sa, int salen,
			      const char *peer, int idle_ms, const struct evconn_ops *ops,
			      void *owner)
{
	struct evconn *c = wrap(base, -1, peer, idle_ms, ops, owner);
	if (!c)
		return NULL;
	if (bufferevent_socket_connect(c->bev, sa, salen) < 0) {
		/* failed at once (no route, no descriptors): the caller retries */
		bufferevent_free(c->bev);
		free(c);
		return NULL;
	}
	return c;
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

int evconn_send_raw(struct evconn *c, const void *data, size_t len)
{
	if (c->closing)
		return -1;
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > MAX_OUTPUT) {
		log_warn("%s: peer does not read its frames, closing", c->peer);
		evconn_close(c, "output backlog");
		return -1;
	}
	return bufferevent_write(c->bev, data, len);
}

size_t evconn_pending_output(const struct evconn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}
