/* The shared table and what is read from it: routes, the order of
 * replicas to try, the balance policies, rebinding at request boundaries,
 * reactive failover queries and the user's shared counters. */
#ifndef FLARE_ROUTE_H
#define FLARE_ROUTE_H

#include "conn/conn.h"
#include "table.h"
#include "usershm.h"

#include <stdint.h>
#include <sys/types.h>

/* ---- route.c: the shared table ---- */
int route_lookup(const struct flare_addr *a, struct flare_route *out);
const char *route_shm_name(void); /* FLARE_SHM, or /flare */
int route_read(uint32_t svc_index, struct flare_route *out);
int route_lookup_replica(const struct flare_addr *a, struct flare_replica_info *out);
/* A round-robin ticket for a service: shared by the host's clients when
 * the agent's counters are there, else this process's own. */
/* The table's moves generation (0: no table), and the move asked of the
 * connection from client to replica `from` (global indexes). */
uint64_t route_moves_gen(void);
/* The table's owner (its agent's user); 0, or -1 when no table is open */
/* The table's ranking generation (one load; 0: no table) */
uint64_t route_table_gen(void);
/* Does the table's agent end condemned connections through the kernel,
 * and was it heard lately (FLARE_TBL_FLAG_WAKE)? One clock read. */
int route_wakes(void);
int route_find_move(const struct flare_addr *client, uint32_t from, uint32_t *to);
/* Is the peer of local socket fd the deployment's (root, or the table's
 * owner)? Its uid goes in *peer_uid. */
int route_peer_trusted(int fd, uid_t *peer_uid);

/* ---- order.c: which replicas to try, in which order (pure) ---- */
/* base's replicas, live ones first then dead ones, each once, skipping and
 * marking those in seen; returns how many were written to out */
int order_live_first(const struct flare_route *rt, const uint8_t *base, int nb, uint8_t *seen,
		     uint8_t *out);
/* For a new connection: the ranking (the primary alone under static
 * failover), then every replica; live ones first. */
int order_connect(const struct flare_route *rt, uint8_t *out);
/* After replica cur failed: the manager's answer (n_asked >= 0, reactive)
 * or cur's pushed ranking (none under static), then every other replica,
 * live first, and cur itself last (it may have been restarted); replicas
 * in the exclude mask (already tried for this request) are left out. */
int order_failover(const struct flare_route *rt, int cur, int failover, const uint8_t *asked,
		   int n_asked, uint32_t exclude, uint8_t *out);

/* ---- balance.c: the replica a new binding goes to ---- */
/* Under the service's balance policy, among live replicas but exclude;
 * -1 for `primary` (the ranking's order decides) or when none is live. */
int balance_pick(const struct flare_route *rt, uint64_t rnd, uint64_t ticket, int exclude);
uint64_t balance_random(void);
/* order_connect's candidates with pick (if >= 0) first */
int order_balanced(const struct flare_route *rt, int pick, uint8_t *out);

/* ---- rebind.c: moving a live connection at a request boundary ---- */
/* Before a write on a connection whose service rebinds (on demand or per
 * request): moves it to another replica when it is at a boundary and the
 * manager or the policy says so. Never blocks, never fails the write. */
void rebind_at_write(struct fconn *fc, int fd);
/* Closes the sockets a rebinding connection keeps (it is recycled).
 * Session-bound connections keep none: they look at one field inline,
 * and a client's close never reaches rebind.c (cold code). */
void rebind_release_sockets(struct fconn *fc);
static inline void rebind_release(struct fconn *fc)
{
	if (fc->svc.binding != FLARE_BINDING_SESSION)
		rebind_release_sockets(fc);
}

/* ---- query.c: reactive failover ---- */
/* The failover targets the manager gives for fc's failed replica, as local
 * indexes, best first; -1 (logged) when no answer came, and the caller
 * uses the table's ranking. */
int query_targets(const struct fconn *fc, const struct flare_route *rt, uint8_t *out);

/* ---- usershm.c: this user's shared counters ---- */
/* Claims this process's slot on its first call (later ones: one load) */
void usershm_attach(void);
void usershm_atfork_child(void);
/* This user's round-robin turn for a service, shared by its processes */
uint64_t usershm_rr_ticket(uint32_t svc_index);

#endif
