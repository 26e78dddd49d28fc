/* Reactive failover: when a connection's replica fails, the library asks
 * the agent on its host, which asks the manager, where to go now (FLARe's
 * "reactive" strategy, for comparison with the proactive ranking already in
 * the table). One short-lived UNIX connection per question, bounded in
 * time; any failure falls back on the table's ranking. */
#include "shim.h"

#include "flare.h"
#include "wire.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define QUERY_BUF 1024

/* Waits for ev on fd within the question's time (see wait_deadline). */
static int wait_for(int fd, short ev, int timeout_ms, int64_t end)
{
	for (;;) {
		int left = wait_left(timeout_ms, end);
		if (left == 0)
			return -1;
		struct pollfd p = {.fd = fd, .events = ev};
		int n = real.poll(&p, 1, left);
		if (n > 0)
			return 0;
		if (n == 0 || errno != EINTR)
			return -1;
	}
}

/* One question and its answer; 0 with *ans filled, or -1 with *why. */
static int ask(const struct fw_msg *q, struct fw_msg *ans, int timeout_ms, const char **why)
{
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	char name[FLARE_QUERY_SOCKET_MAX];
	flare_query_socket_name(route_shm_name(), name, sizeof(name));
	size_t n = strlen(name);
	if (n >= sizeof(un.sun_path)) {
		*why = "socket name too long";
		return -1;
	}
	memcpy(un.sun_path, name, n);
	un.sun_path[0] = '\0'; /* abstract */
	int fd = real.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*why = strerror(errno);
		return -1;
	}
	int64_t end = wait_deadline(timeout_ms);
	uint8_t out[QUERY_BUF], in[QUERY_BUF];
	struct fw_buf b;
	fw_buf_init_fixed(&b, out, sizeof(out));
	int rc = -1;
	*why = "no agent answering";
	if (real.connect(fd, (struct sockaddr *)&un,
			 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0 ||
	    fw_encode(&b, q) < 0)
		goto out;
	*why = "agent did not take the question";
	for (size_t off = 0; off < b.len;) {
		ssize_t w = real.send(fd, out + off, b.len - off, MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
			 wait_for(fd, POLLOUT, timeout_ms, end) < 0)
			goto out;
	}
	*why = "no answer in time";
	size_t got = 0;
	for (;;) {
		struct fw_hdr h;
		const char *bad = NULL;
		long whole = fw_frame_check(in, got, &h, &bad);
		if (whole < 0) {
			*why = bad;
			goto out;
		}
		if (whole > 0) {
			if (fw_decode(h.type, in + FW_HDR_LEN, h.len, ans, why) == 0)
				rc = 0;
			goto out;
		}
		if (got == sizeof(in)) {
			*why = "answer too long";
			goto out;
		}
		ssize_t r = real.recv(fd, in + got, sizeof(in) - got, 0);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0) {
			*why = "agent hung up";
			goto out;
		} else if ((errno != EAGAIN && errno != EINTR) ||
			   wait_for(fd, POLLIN, timeout_ms, end) < 0)
			goto out;
	}
out:
	real.close(fd);
	return rc;
}

int query_targets(const struct fconn *fc, const struct flare_route *rt, uint8_t *out)
{
	struct fw_msg q = {.type = FW_QUERY_REQ}, a;
	q.u.query.service = rt->svc.addr;
	q.u.query.failed = rt->reps[fc->cur].addr;
	const char *why = NULL;
	int timeout = fc->connect_timeout_ms < FLARE_QUERY_TIMEOUT_MAX_MS
			  ? (int)fc->connect_timeout_ms
			  : FLARE_QUERY_TIMEOUT_MAX_MS;
	memset(&a, 0, sizeof(a));
	if (ask(&q, &a, timeout, &why) < 0) {
		log_warn("service %s: reactive failover query failed (%s): using the table's "
			 "ranking",
			 rt->svc.name, why);
		return -1;
	}
	int n = -1;
	if (a.type == FW_ERROR)
		log_warn("service %s: reactive failover query refused (%s): using the table's "
			 "ranking",
			 rt->svc.name, a.u.text.text ? a.u.text.text : "?");
	else if (a.type != FW_QUERY_RESP)
		log_warn("service %s: reactive failover query answered with a %s frame: using "
			 "the table's ranking",
			 rt->svc.name, fw_type_name(a.type));
	else {
		/* only replicas this table knows, each once */
		uint8_t seen[FLARE_MAX_REPLICAS] = {0};
		n = 0;
		for (int i = 0; i < a.u.query.n_addrs; i++)
			for (uint32_t r = 0; r < rt->svc.n_replicas; r++)
				if (!seen[r] &&
				    flare_addr_equal(&a.u.query.addrs[i], &rt->reps[r].addr)) {
					seen[r] = 1;
					out[n++] = (uint8_t)r;
				}
		log_debug("service %s: the manager says %s%s after %s", rt->svc.name,
			  n ? rt->reps[out[0]].name : "nothing", n > 1 ? " first" : "",
			  rt->reps[fc->cur].name);
	}
	fw_msg_free(&a);
	return n;
}
