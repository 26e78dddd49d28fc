/* libFuzzer target for the authenticated frame path: a real evconn with a
 * key (as the manager accepts a connection), fed over a socketpair by one
 * of two peers, picked by the input's first byte:
 *   even: a stranger. The bytes go in as they are. Without the key nothing
 *         may reach the owner: a single delivered message is a finding.
 *   odd:  a key holder. The rest of the input is the plaintext, sealed in
 *         records whose sizes the input's second byte seeds, so the inner
 *         frames reach the decoders. The owner must get exactly the frames
 *         a plain decode of the plaintext accepts, up to the first bad one:
 *         sealing and record boundaries must be invisible.
 * With the first byte's bit 1 the connection is guarded as the manager's
 * are (evconn_guard): the pre-authentication bounds run too, and a key
 * holder's frames are delivered only when the first is a small HELLO. */
#include "auth.h"
#include "evconn.h"
#include "log.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct event_base *base;
static int delivered, closed;
static const struct auth_key key = {{7, 1, 2, 3}, 0, ""};

static void on_msg(struct evconn *c, struct fw_msg *m)
{
	(void)c;
	(void)m;
	delivered++;
}

static void on_close(struct evconn *c, const char *why)
{
	(void)c;
	(void)why;
	closed = 1;
}

static const struct evconn_ops ops = {.on_msg = on_msg, .on_close = on_close};

/* Frames a plain decode accepts at the head of the plaintext. */
static int plain_frames(const uint8_t *p, size_t len)
{
	int n = 0;
	for (size_t off = 0; off < len;) {
		struct fw_hdr h;
		struct fw_msg m;
		const char *why;
		long whole = fw_frame_check(p + off, len - off, &h, &why);
		if (whole <= 0)
			break;
		int ok = fw_decode(h.type, p + off + FW_HDR_LEN, h.len, &m, &why) == 0;
		fw_msg_free(&m);
		if (!ok)
			break;
		n++;
		off += (size_t)whole;
	}
	return n;
}

/* Does the plaintext start with a HELLO a guarded connection accepts? */
static int small_hello_first(const uint8_t *p, size_t len)
{
	struct fw_hdr h;
	const char *why;
	return fw_frame_check(p, len, &h, &why) > 0 && h.type == FW_HELLO &&
	       h.len <= EVCONN_PRE_HELLO_MAX;
}

static void write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w <= 0) {
			event_base_loop(base, EVLOOP_NONBLOCK); /* let the reader drain */
			continue;
		}
		p += w;
		len -= (size_t)w;
	}
}

/* The key holder's side: take the server's nonce, send ours and the
 * plaintext sealed in records of input-seeded sizes. */
static void speak_sealed(int fd, const uint8_t *plain, size_t len, uint8_t seed)
{
	struct auth_session s;
	struct auth_key agent;
	char err[128];
	uint8_t hello[FW_HDR_LEN + AUTH_HELLO_MIN]; /* the manager names no role */
	struct fw_buf b = {0};
	size_t got = 0;
	for (int i = 0; i < 100 && got < sizeof(hello); i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		ssize_t r = read(fd, hello + got, sizeof(hello) - got);
		if (r > 0)
			got += (size_t)r;
	}
	const char *why;
	if (got != sizeof(hello) ||
	    auth_key_for(&key, FW_ROLE_AGENT, "", &agent, err, sizeof(err)) ||
	    auth_session_init(&s, &agent, 1) < 0 ||
	    auth_take_hello(&s, hello + FW_HDR_LEN, AUTH_HELLO_MIN, &why) < 0)
		abort();
	auth_hello(&s, &b);
	uint32_t rng = seed * 2654435761u + 1;
	for (size_t off = 0; off < len;) {
		rng = rng * 1103515245u + 12345u;
		size_t n = 1 + (rng >> 16) % 300;
		if (n > len - off)
			n = len - off;
		auth_seal(&s, plain + off, n, &b);
		off += n;
	}
	if (b.err)
		abort();
	write_all(fd, b.data, b.len);
	fw_buf_free(&b);
	auth_session_wipe(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (size < 2)
		return 0;
	if (!base) {
		base = event_base_new();
		flare_log_init("fuzz_auth", FLARE_LOG_ERROR, 0);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	delivered = closed = 0;
	struct evconn *c = evconn_accept(base, sv[0], "fuzz peer", 0, &ops, NULL);
	if (!c || evconn_auth(c, &key, 0) < 0)
		abort();
	int holder = data[0] & 1, guarded = data[0] & 2;
	if (guarded && evconn_guard(c, 60000, 0) < 0)
		abort();
	if (holder)
		speak_sealed(sv[1], data + 2, size - 2, data[1]);
	else
		write_all(sv[1], data + 1, size - 1);
	shutdown(sv[1], SHUT_WR);
	for (int i = 0; i < 1000 && !closed; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	if (!closed)
		evconn_close(c, "done");
	close(sv[1]);
	if (!holder && delivered)
		abort(); /* a stranger reached the owner */
	if (holder && delivered != (guarded && !small_hello_first(data + 2, size - 2)
					? 0
					: plain_frames(data + 2, size - 2)))
		abort(); /* sealing (or the guard) changed what was delivered */
	return 0;
}
