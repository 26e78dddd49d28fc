/* Reactive failover: when a connection's replica fails, the library asks
 * the agent on its host, which asks the manager, where to go now (FLARe's
 * "reactive" strategy, for comparison with the proactive ranking already in
 * the table). One short-lived UNIX connection per question, bounded in
 * time; any failure falls back on the table's ranking. */
#include "addr.h"
#include "core.h"
#include "flare.h"
#include "fwcall.h"
#include "log.h"
#include "real.h"
#include "table.h"
#include "unixaddr.h"
#include "wire.h"

#include "conn/conn.h"
#include "route/route.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define QUERY_BUF 1024

/* One question and its answer; 0 with *ans filled, or -1 with *why. */
static int ask(const struct fw_msg *q, struct fw_msg *ans, int timeout_ms, const char **why)
{
	/* the real functions: a question asked from inside a heal must not
	 * re-enter the library's own hooks */
	const struct fw_io io = {real.connect, real.send, real.recv, real.poll, real.getsockopt};
	struct sockaddr_un un;
	char name[FLARE_QUERY_SOCKET_MAX];
	flare_query_socket_name(route_shm_name(), name, sizeof(name));
	socklen_t ulen = flare_unix_addr(name, &un);
	if (!ulen || !io.poll) {
		*why = !io.poll ? "no poll in libc" : "socket name too long";
		return -1;
	}
	int fd = real.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		*why = strerror(errno);
		return -1;
	}
	uint8_t out[QUERY_BUF], inmem[QUERY_BUF];
	struct fw_buf req, in;
	fw_buf_init_fixed(&req, out, sizeof(out));
	fw_buf_init_fixed(&in, inmem, sizeof(inmem));
	int rc = -1;
	uid_t peer;
	if (fw_encode(&req, q) < 0)
		*why = "question too long";
	else if (fw_call_connect(&io, fd, (struct sockaddr *)&un, ulen, timeout_ms, why) < 0)
		*why = "no agent answering";
	else if (!route_peer_trusted(fd, &peer))
		*why = "the agent's socket is held by another user";
	else
		rc = fw_call(&io, fd, &req, FW_QUERY_RESP, &in, timeout_ms, ans, why);
	real.close(fd);
	return rc;
}

int query_targets(const struct fconn *fc, const struct flare_route *rt, uint8_t *out)
{
	struct fw_msg q = {.type = FW_QUERY_REQ}, a;
	q.u.query.service = rt->svc.addr;
	q.u.query.failed = rt->reps[fc->link.cur].addr;
	const char *why = NULL;
	int timeout = fc->svc.connect_timeout_ms < FLARE_QUERY_TIMEOUT_MAX_MS
			  ? (int)fc->svc.connect_timeout_ms
			  : FLARE_QUERY_TIMEOUT_MAX_MS;
	memset(&a, 0, sizeof(a));
	if (ask(&q, &a, timeout, &why) < 0) {
		STAT_INC(queries_failed);
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
		STAT_INC(queries_answered);
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
			  rt->reps[fc->link.cur].name);
	}
	if (n < 0)
		STAT_INC(queries_failed);
	fw_msg_free(&a);
	return n;
}
