/* The agent's subscription: HELLO, a full table, then deltas and
 * heartbeats, over one link that moves to the next manager address when
 * the one in use fails. A frame the table writer refuses (it would corrupt
 * what clients read) drops the subscription, and the next one starts with
 * a fresh full table. */
#include "agent.h"

#include "log.h"

#include <string.h>
#include <unistd.h>

static void on_up(struct mlink *l) { log_debug("%s: connected, subscribing", mlink_peer(l)); }

/* 0, or -1 with *why for a ranking the table writer refused */
static int apply_rank(struct agent *a, const char *peer, const struct fw_rank *r, const char **why)
{
	if (!r->full) {
		if (!a->subscribed) {
			*why = "delta before the full table";
			return -1;
		}
		if (flare_tbl_write_delta(&a->writer, r, why) < 0)
			return -1;
		a->deltas++;
		log_debug("gen %llu: %u hosts, %u services, %u replicas changed",
			  (unsigned long long)r->gen, r->n_hosts, r->n_services, r->n_replicas);
		return 0;
	}
	if (flare_tbl_write_full(&a->writer, r, why) < 0)
		return -1;
	a->fulls++;
	if (!a->subscribed)
		log_info("%s: subscribed, table %s published (gen %llu, %u services, %u replicas)",
			 peer, a->writer.name, (unsigned long long)r->gen, r->n_services,
			 r->n_replicas);
	a->subscribed = 1;
	mlink_good(&a->link);
	return 0;
}

static void on_msg(struct mlink *l, struct fw_msg *m)
{
	struct agent *a = l->owner;
	const char *why = NULL;
	switch (m->type) {
	case FW_RANK:
		if (apply_rank(a, mlink_peer(l), &m->u.rank, &why) == 0) {
			wake_rank(a, &m->u.rank);
			return;
		}
		break;
	case FW_HEARTBEAT: /* news from a manager: the table is fresh */
		if (a->subscribed)
			flare_tbl_touch(&a->writer);
		return;
	case FW_QUERY_RESP: query_answer(a, m); return;
	case FW_ERROR: log_error("%s: manager says '%s'", mlink_peer(l), m->u.text.text); return;
	default: why = "unexpected frame type"; break;
	}
	a->rejected++;
	log_error("%s: ranking rejected (%s); resubscribing for a full table", mlink_peer(l), why);
	mlink_drop(l, "bad ranking");
}

static void on_down(struct mlink *l, const char *why, int was_up)
{
	struct agent *a = l->owner;
	(void)was_up;
	query_link_lost(a);
	if (a->subscribed)
		log_warn("%s: lost (%s); keeping the last table, reconnecting", mlink_peer(l), why);
	else
		log_debug("%s: %s", mlink_peer(l), why);
	a->subscribed = 0;
}

static const struct mlink_ops ops = {.on_up = on_up, .on_msg = on_msg, .on_down = on_down};

int agent_start(struct agent *a)
{
	struct mlink *l = &a->link;
	l->base = a->base;
	l->cfg = a->cfg;
	l->addrs = a->cfg->managers;
	l->n_addrs = a->cfg->n_managers;
	l->source = &a->source;
	l->hello = (struct fw_hello){.role = FW_ROLE_AGENT, .pid = (uint32_t)getpid()};
	gethostname(l->hello.name, sizeof(l->hello.name) - 1);
	l->ops = &ops;
	l->owner = a;
	return mlink_start(l);
}

void agent_stop(struct agent *a) { mlink_stop(&a->link); }
