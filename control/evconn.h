/* A framed protocol connection on a libevent bufferevent: splits the byte
 * stream into frames, decodes them, hands each message to the owner, and
 * closes the connection (with one log line naming the peer and the reason)
 * on a bad frame, EOF, an error, or silence longer than the idle timeout.
 * Owners may close a connection from inside their callbacks. */
#ifndef FLARE_EVCONN_H
#define FLARE_EVCONN_H

#include "addr.h"
#include "auth.h"
#include "wire.h"

#include <event2/bufferevent.h>
#include <event2/event.h>

struct evconn;

struct evconn_ops {
	void (*on_connect)(struct evconn *c); /* outgoing connections only */
	void (*on_msg)(struct evconn *c, struct fw_msg *m);
	/* called once, before the connection is freed; why is a static string */
	void (*on_close)(struct evconn *c, const char *why);
};

struct evconn {
	struct bufferevent *bev;
	const struct evconn_ops *ops;
	void *owner;   /* the daemon's context */
	void *data;    /* per-connection state of the owner */
	void *tag;     /* more of it (the manager: its pending-connection count) */
	char peer[96]; /* for log lines */
	int role;      /* FW_ROLE_* once a HELLO arrived, 0 before */
	int connected;
	int in_callback, closing;
	const char *close_why;
	uint64_t last_rx_ns;
	/* with a key (evconn_auth): the session, the opened bytes waiting to
	 * be framed, and what was sent before the peer's nonce came */
	struct auth_session *auth;
	struct evbuffer *opened, *unsent;
	int auth_rejected; /* closed because the peer failed to authenticate */
	/* evconn_guard: until the peer's HELLO, frames are small and the
	 * handshake has a deadline; after it, only whole frames count as
	 * activity (bytes alone keep nothing open) */
	int pre_hello; /* guarded (guard_timer set) and no HELLO yet */
	int idle_ms;
	uint64_t handshake_end_ns, last_frame_ns;
	struct event *guard_timer;
	uint64_t guard_due_ns;      /* when guard_timer should fire: how late it did */
	int late_grace;             /* the silence deadline was moved once for a late loop */
	struct evconn *next, *prev; /* the owner's list, if it keeps one */
};

/* Wraps an accepted descriptor. idle_ms: close after that much silence (0:
 * never). */
struct evconn *evconn_accept(struct event_base *base, evutil_socket_t fd, const char *peer,
			     int idle_ms, const struct evconn_ops *ops, void *owner);
/* Starts a non-blocking connect (from source's address when source is
 * set: --source); on_connect or on_close follows. */
struct evconn *evconn_connect(struct event_base *base, const struct sockaddr *sa, int salen,
			      const struct flare_addr *source, const char *peer, int idle_ms,
			      const struct evconn_ops *ops, void *owner);
/* From now on the connection is authenticated (control/auth.h): sends this
 * side's nonce and seals everything sent. Call right after evconn_accept or
 * evconn_connect. -1 closes nothing: the caller closes. */
int evconn_auth(struct evconn *c, const struct auth_key *key, int client);
/* For connections a stranger may open (the manager's): the first frame
 * is the exact FW_AUTH (with a key) or a small HELLO, the HELLO must come
 * within handshake_ms, and idle_ms of silence counts whole frames only. */
int evconn_guard(struct evconn *c, int handshake_ms, int idle_ms);
#define EVCONN_PRE_HELLO_MAX 512 /* payload bytes of a frame before HELLO */
int evconn_send(struct evconn *c, const struct fw_msg *m);
/* Writes what is queued for c to its socket now (as much as it takes). */
void evconn_flush(struct evconn *c);
int evconn_send_raw(struct evconn *c, const void *data, size_t len);
void evconn_close(struct evconn *c, const char *why);
size_t evconn_pending_output(const struct evconn *c);

#endif
