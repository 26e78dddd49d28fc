#include "authcall.h"

#include "clock.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Takes whole frames off the front of raw: the peer's nonce, then sealed
 * frames opened into plain. 0 when it needs more bytes, -1 on an error. */
static int unseal(struct auth_session *s, struct fw_buf *raw, struct fw_buf *plain,
		  const char **why)
{
	for (;;) {
		struct fw_hdr h;
		long whole = fw_frame_check(raw->data, raw->len, &h, why);
		if (whole <= 0)
			return (int)whole;
		int hello;
		uint8_t *out = h.type == FW_SEALED ? fw_buf_reserve(plain, h.len) : NULL;
		long n = auth_receive(s, &h, raw->data, out, &hello, why);
		if (n < 0)
			return -1;
		if (!hello)
			plain->len -= h.len - (size_t)n; /* the tag, and what was reserved */
		fw_buf_consume(raw, (size_t)whole);
	}
}

static int send_sealed(const struct fw_io *io, int fd, struct auth_session *s,
		       const struct fw_buf *req, uint64_t end, const char **why)
{
	struct fw_buf out = {0};
	/* the first frame (HELLO) in a record of its own, as evconn does */
	size_t first = auth_first_record_len(req->data, req->len);
	for (size_t off = 0; off < req->len;) {
		size_t n = req->len - off < AUTH_RECORD_MAX ? req->len - off : AUTH_RECORD_MAX;
		if (off == 0)
			n = first;
		auth_seal(s, req->data + off, n, &out);
		off += n;
	}
	int rc = out.err ? -1 : fw_send_all(io, fd, out.data, out.len, end, why);
	if (out.err)
		*why = "cannot seal the request";
	fw_buf_free(&out);
	return rc;
}

int auth_call(const struct fw_io *io, int fd, const struct auth_key *key, const struct fw_buf *req,
	      int want, int timeout_ms, struct fw_msg *ans, const char **why)
{
	uint64_t end = flare_monotonic_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	struct auth_session s;
	struct fw_buf hello = {0}, raw = {0}, plain = {0};
	int rc = -1, sent = 0;
	memset(ans, 0, sizeof(*ans));
	if (auth_session_init(&s, key, 1) < 0 || auth_hello(&s, &hello) < 0) {
		*why = "cannot start authentication";
		goto out;
	}
	if (fw_send_all(io, fd, hello.data, hello.len, end, why) < 0)
		goto out;
	for (;;) {
		struct fw_hdr h;
		long whole = fw_frame_check(plain.data, plain.len, &h, why);
		if (whole < 0)
			goto out;
		if (whole > 0) {
			if (fw_decode(h.type, plain.data + FW_HDR_LEN, h.len, ans, why) < 0)
				goto out;
			fw_buf_consume(&plain, (size_t)whole);
			if (ans->type == want || ans->type == FW_ERROR) {
				rc = 0;
				goto out;
			}
			fw_msg_free(ans);
			continue;
		}
		if (fw_recv_more(io, fd, &raw, end, why) < 0) {
			/* the manager closes on a frame that does not open */
			if (strcmp(*why, "closed by the peer") == 0 && !s.keyed)
				*why = "the manager closed without authenticating (no "
				       "auth_key_file there?)";
			else if (sent && s.rx_seq == 0 && strcmp(*why, "closed by the peer") == 0)
				*why = "the manager refused our frames: the keys differ "
				       "(check auth_key_file)";
			goto out;
		}
		if (unseal(&s, &raw, &plain, why) < 0)
			goto out;
		if (s.keyed && !sent) {
			if (send_sealed(io, fd, &s, req, end, why) < 0)
				goto out;
			sent = 1;
		}
	}
out:
	if (rc < 0)
		fw_msg_free(ans);
	auth_session_wipe(&s);
	fw_buf_free(&hello);
	fw_buf_free(&raw);
	fw_buf_free(&plain);
	return rc;
}

char *authcall_ask(const struct fw_io *io, const struct flare_addr *a, const struct auth_key *key,
		   uint8_t type, int json, const char *command, int timeout_ms, const char **why,
		   int *refused)
{
	struct sockaddr_storage ss;
	socklen_t len = flare_addr_to_sockaddr(a, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*why = strerror(errno);
		return NULL;
	}
	struct fw_buf req = {0}, in = {0};
	struct fw_msg hello = {.type = FW_HELLO}, q = {.type = type}, ans;
	hello.u.hello.role = FW_ROLE_CTL;
	hello.u.hello.pid = (uint32_t)getpid();
	q.u.text.format = (uint8_t)json;
	q.u.text.text = type == FW_COMMAND ? (char *)command : NULL;
	*refused = 0;
	fw_encode(&req, &hello);
	fw_encode(&req, &q);
	char *text = NULL;
	if (req.err)
		*why = "cannot encode the request";
	else if (fw_call_connect(io, fd, (struct sockaddr *)&ss, len, timeout_ms, why) == 0 &&
		 (key ? auth_call(io, fd, key, &req, FW_STATUS_RESP, timeout_ms, &ans, why)
		      : fw_call(io, fd, &req, FW_STATUS_RESP, &in, timeout_ms, &ans, why)) == 0) {
		if (ans.type == FW_STATUS_RESP || (type == FW_COMMAND && ans.type == FW_ERROR)) {
			*refused = ans.type == FW_ERROR;
			text = ans.u.text.text;
			ans.u.text.text = NULL;
		} else {
			*why = "the manager refused the request";
		}
		fw_msg_free(&ans);
	}
	fw_buf_free(&req);
	fw_buf_free(&in);
	close(fd);
	return text;
}
