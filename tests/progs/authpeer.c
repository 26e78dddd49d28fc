/* authpeer HOST PORT KEYFILE ROLE NAME VERB [ARG]: not a program to run by
 * hand; test_perimeter.py drives it. It plays a control-plane peer with a
 * real key through the real authentication (control/authcall.c): HELLO as
 * ROLE (monitor, agent, operator) and NAME, then VERB: `report HOST` (that
 * host at 99% utilization), `drain REPLICA`, or `status`. The key file is
 * used as it is: a role key authenticates as its own role and host, a
 * secret is derived for ROLE and NAME. Prints "answer: TEXT" (exit 0),
 * "refused: TEXT" (exit 3, the manager answered with an error) or
 * "closed: WHY" (exit 4). */
#include "auth.h"
#include "authcall.h"
#include "fwcall.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const struct fw_io io = {connect, send, recv, poll, getsockopt};

int main(int argc, char **argv)
{
	if (argc < 7)
		return 2;
	struct auth_key held, key;
	char err[512];
	int role = auth_role_parse(argv[4]);
	if (role < 0 || auth_key_load(argv[3], &held, err, sizeof(err)) < 0) {
		fprintf(stderr, "authpeer: %s\n", role < 0 ? "bad role" : err);
		return 2;
	}
	if (held.role == 0)
		auth_key_for(&held, role, argv[5], &key, err, sizeof(err));
	else
		key = held;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
	inet_pton(AF_INET, argv[1], &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	const char *why = "connect";
	if (fw_call_connect(&io, fd, (struct sockaddr *)&sa, sizeof(sa), 2000, &why) < 0) {
		printf("closed: %s\n", why);
		return 4;
	}
	struct fw_buf req = {0};
	struct fw_msg hello = {.type = FW_HELLO}, m = {.type = FW_STATUS_REQ};
	struct fw_report_replica none[1];
	hello.u.hello.role = (uint8_t)role;
	hello.u.hello.pid = (uint32_t)getpid();
	snprintf(hello.u.hello.name, sizeof(hello.u.hello.name), "%s", argv[5]);
	fw_encode(&req, &hello);
	if (strcmp(argv[6], "report") == 0 && argc > 7) {
		m.type = FW_REPORT;
		snprintf(m.u.report.host, sizeof(m.u.report.host), "%s", argv[7]);
		m.u.report.seq = 1;
		m.u.report.util_ppm = 990000;
		m.u.report.replicas = none;
		fw_encode(&req, &m);
		/* a report has no answer: a status request after it shows the
		 * connection was kept (only an operator gets one) */
		m = (struct fw_msg){.type = FW_STATUS_REQ};
	} else if (strcmp(argv[6], "drain") == 0 && argc > 7) {
		static char text[1024];
		snprintf(text, sizeof(text), "drain %s", argv[7]);
		m.type = FW_COMMAND;
		m.u.text.text = text;
	}
	fw_encode(&req, &m);
	struct fw_msg ans;
	int rc = auth_call(&io, fd, &key, &req, FW_STATUS_RESP, 2000, &ans, &why);
	fw_buf_free(&req);
	close(fd);
	if (rc < 0) {
		printf("closed: %s\n", why);
		return 4;
	}
	int refused = ans.type == FW_ERROR;
	printf("%s: %.200s\n", refused ? "refused" : "answer",
	       ans.u.text.text ? ans.u.text.text : "");
	fw_msg_free(&ans);
	return refused ? 3 : 0;
}
