/* Reactive failover's middle hop: client libraries ask the agent on their
 * host (a UNIX socket named after the table, see flare_query_socket_name)
 * where a connection should go after a replica failed; the agent forwards
 * each question on its manager link and hands the answers back in order
 * (the manager answers every query as it reads it). A client whose question
 * cannot be forwarded, or whose answer is lost with the link, is closed:
 * the library then falls back on the table's pushed ranking. */
#include "agent.h"

#include "daemon.h"
#include "log.h"

#include <string.h>

static void fail(struct evconn *c, const char *why)
{
	struct fw_msg e = {.type = FW_ERROR};
	e.u.text.text = (char *)why;
	e.u.text.len = (uint32_t)strlen(why);
	evconn_send(c, &e);
	evconn_close(c, why);
}

static void on_client_msg(struct evconn *c, struct fw_msg *m)
{
	struct agent *a = c->owner;
	if (m->type != FW_QUERY_REQ) {
		log_warn("%s: unexpected %s frame, closing", c->peer, fw_type_name(m->type));
		evconn_close(c, "protocol error");
		return;
	}
	if (!a->link.up || !a->subscribed) {
		fail(c, "no manager");
		return;
	}
	if (a->n_waiting == AGENT_MAX_QUERIES) {
		fail(c, "too many queries in flight");
		return;
	}
	if (mlink_send(&a->link, m) < 0) {
		fail(c, "cannot forward the query");
		return;
	}
	a->waiting[(a->first_waiting + a->n_waiting++) % AGENT_MAX_QUERIES] = c;
	a->queries++;
}

static void on_client_close(struct evconn *c, const char *why)
{
	struct agent *a = c->owner;
	(void)why;
	a->n_query_conns--;
	/* its answer, when it comes, is dropped */
	for (int i = 0; i < a->n_waiting; i++)
		if (a->waiting[(a->first_waiting + i) % AGENT_MAX_QUERIES] == c)
			a->waiting[(a->first_waiting + i) % AGENT_MAX_QUERIES] = NULL;
}

static const struct evconn_ops client_ops = {.on_msg = on_client_msg, .on_close = on_client_close};

void query_answer(struct agent *a, struct fw_msg *m)
{
	if (a->n_waiting == 0) {
		log_warn("an answer to no query from the manager: dropped");
		return;
	}
	struct evconn *c = a->waiting[a->first_waiting];
	a->first_waiting = (a->first_waiting + 1) % AGENT_MAX_QUERIES;
	a->n_waiting--;
	if (c)
		evconn_send(c, m);
}

void query_link_lost(struct agent *a)
{
	while (a->n_waiting > 0) {
		struct evconn *c = a->waiting[a->first_waiting];
		a->first_waiting = (a->first_waiting + 1) % AGENT_MAX_QUERIES;
		a->n_waiting--;
		if (c)
			fail(c, "manager lost");
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct agent *a = arg;
	(void)l;
	(void)sa;
	(void)len;
	/* any local user may connect: at most AGENT_MAX_QUERIES at once */
	if (a->n_query_conns >= AGENT_MAX_QUERIES) {
		evutil_closesocket(fd);
		return;
	}
	/* a library asks once and hangs up; a silent one is dropped after 2 s */
	if (!evconn_accept(a->base, fd, "query client", 2000, &client_ops, a))
		log_error("query client: cannot set up the connection");
	else
		a->n_query_conns++;
}

int query_start(struct agent *a)
{
	char name[FLARE_QUERY_SOCKET_MAX];
	flare_query_socket_name(a->writer.name, name, sizeof(name));
	a->query_listener = listen_unix(a->base, name, on_accept, a);
	if (!a->query_listener) {
		log_error("%s: the query socket's name is taken (another agent of table %s, or "
			  "someone else holding it)",
			  name, a->writer.name);
		return -1;
	}
	log_info("answering reactive-failover queries on %s", name);
	return 0;
}

void query_stop(struct agent *a)
{
	query_link_lost(a);
	if (a->query_listener)
		evconnlistener_free(a->query_listener);
	a->query_listener = NULL;
}
