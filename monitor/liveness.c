/* Liveness of the replicas on this host.
 *
 * A server under flare-run connects to our UNIX socket and registers the
 * replica addresses it listens on; we hold the connection, and its EOF is
 * the death of the process (the kernel closes it for us on SIGKILL, so the
 * news is immediate). Replicas nobody registered are probed with a TCP
 * connect every probe_interval_ms. */
#include "monitor.h"

#include "daemon.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void liveness_set(struct monitor *m, int rep, int alive, int reason, const char *why)
{
	struct mon_replica *r = &m->reps[rep];
	if (alive)
		reason = FLARE_DEATH_NONE;
	if (r->alive == alive && r->reason == reason)
		return;
	r->alive = alive;
	r->reason = reason;
	m->liveness_dirty = 1;
	log_info("replica %s: %s (%s)", m->cfg->replicas[r->cfg].name, alive ? "alive" : "dead",
		 why);
}

/* Which of this host's replicas an address names. A wildcard bind
 * (0.0.0.0 or ::) names every replica of the host on that port. */
static int match(struct monitor *m, const struct flare_addr *a, int *out, int max)
{
	int n = 0;
	int wildcard = flare_addr_is_wildcard(a);
	for (int i = 0; i < m->n_reps && n < max; i++) {
		const struct flare_addr *ra = &m->cfg->replicas[m->reps[i].cfg].addr;
		if (flare_addr_equal(ra, a) || (wildcard && ra->port == a->port &&
						(ra->family == a->family || a->family == AF_INET6)))
			out[n++] = i;
	}
	return n;
}

static void reg_unlink(struct monitor *m, struct registration *g)
{
	for (struct registration **p = &m->regs; *p; p = &(*p)->next)
		if (*p == g) {
			*p = g->next;
			return;
		}
}

static void on_reg_close(struct evconn *c, const char *why)
{
	struct monitor *m = c->owner;
	struct registration *g = c->data;
	if (!g)
		return;
	reg_unlink(m, g);
	for (int i = 0; i < g->n; i++) {
		struct mon_replica *r = &m->reps[g->reps[i]];
		if (--r->registrations == 0) {
			r->load = -1;
			r->pid = 0;
			r->found_next_ns = 0;
			liveness_set(m, g->reps[i], 0, FLARE_DEATH_EXITED,
				     "its process closed the registration");
		}
	}
	if (g->n)
		log_info("pid %u unregistered (%s)", g->pid, why);
	free(g);
	if (m->liveness_dirty)
		report_send(m);
}

static void on_reg_msg(struct evconn *c, struct fw_msg *msg)
{
	struct monitor *m = c->owner;
	if (msg->type == FW_HELLO) {
		c->role = msg->u.hello.role;
		return;
	}
	if (msg->type != FW_REGISTER || c->data) {
		log_warn("%s: unexpected %s frame on the registration socket, closing", c->peer,
			 fw_type_name(msg->type));
		evconn_close(c, "protocol error");
		return;
	}
	const char *why = NULL;
	if (verify_registration((int)bufferevent_getfd(c->bev), &msg->u.reg, &why) < 0) {
		log_warn("%s: registration of pid %u refused: %s", c->peer, msg->u.reg.pid, why);
		struct fw_msg e = {.type = FW_ERROR};
		e.u.text.text = (char *)why;
		evconn_send(c, &e);
		evconn_close(c, "registration refused");
		return;
	}
	struct registration *g = calloc(1, sizeof(*g));
	if (!g) {
		evconn_close(c, "out of memory");
		return;
	}
	g->c = c;
	g->pid = msg->u.reg.pid;
	for (int i = 0; i < msg->u.reg.n_addrs && g->n < FW_MAX_REG_ADDRS; i++) {
		int found[FW_MAX_REG_ADDRS];
		int k = match(m, &msg->u.reg.addrs[i], found, FW_MAX_REG_ADDRS - g->n);
		for (int j = 0; j < k; j++) {
			int dup = 0;
			for (int q = 0; q < g->n; q++)
				dup |= g->reps[q] == found[j];
			if (!dup)
				g->reps[g->n++] = found[j];
		}
	}
	c->data = g;
	g->next = m->regs;
	m->regs = g;
	g->prev_ns = flare_monotonic_ns();
	int64_t t = proc_cpu_ticks(g->pid);
	g->prev_ticks = t > 0 ? (uint64_t)t : 0;
	for (int i = 0; i < g->n; i++) {
		struct mon_replica *r = &m->reps[g->reps[i]];
		r->registrations++;
		r->pid = g->pid;
		liveness_set(m, g->reps[i], 1, FLARE_DEATH_NONE, "registered");
	}
	log_info("pid %u registered %d replica(s) of this host from %u address(es)", g->pid, g->n,
		 msg->u.reg.n_addrs);
	if (m->liveness_dirty)
		report_send(m);
}

static const struct evconn_ops reg_ops = {.on_msg = on_reg_msg, .on_close = on_reg_close};

static void on_reg_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			  int len, void *arg)
{
	struct monitor *m = arg;
	(void)l;
	(void)sa;
	(void)len;
	/* no idle timeout: a registered server is silent until it dies */
	if (!evconn_accept(m->base, fd, "registration", 0, &reg_ops, m))
		log_error("cannot set up a registration connection");
}

/* ---- probes ---- */

/* A probe's verdict, with hysteresis (HAProxy's fall and rise): a refused
 * connect is the kernel's proof that nobody listens, and kills at once; a
 * timeout or another failure counts toward probe_fall, and a dead
 * replica needs probe_rise good probes in a row. The first verdict on a
 * replica never decided (the monitor just started) is taken at once. */
static void probe_close(struct mon_replica *r)
{
	if (r->probe_ev) {
		event_free(r->probe_ev);
		r->probe_ev = NULL;
	}
	if (r->probe_fd >= 0) {
		close(r->probe_fd);
		r->probe_fd = -1;
	}
}

static void probe_done(struct monitor *m, int rep, int ok, int reason, const char *why)
{
	struct mon_replica *r = &m->reps[rep];
	probe_close(r);
	if (r->registrations > 0)
		return; /* its process's registration speaks for it */
	/* a registered process that exited, then a refused probe: still the
	 * exit (the more telling reason, of the same kind) */
	if (reason == FLARE_DEATH_REFUSED && !r->alive && r->reason == FLARE_DEATH_EXITED)
		reason = FLARE_DEATH_EXITED;
	int undecided = !r->alive && r->reason == FLARE_DEATH_NONE;
	if (ok && r->found_stopped)
		return; /* the kernel accepts for a stopped process: it serves nobody */
	if (ok) {
		r->probe_fails = 0;
		r->probe_oks++;
		if (!r->alive && !undecided && r->probe_oks < m->cfg->probe_rise) {
			log_debug("replica %s: probe %d of %d to come back",
				  m->cfg->replicas[r->cfg].name, r->probe_oks, m->cfg->probe_rise);
			return;
		}
	} else {
		r->probe_oks = 0;
		r->probe_fails++;
		int proof = reason == FLARE_DEATH_REFUSED || reason == FLARE_DEATH_EXITED;
		if (r->alive && !proof && r->probe_fails < m->cfg->probe_fall) {
			log_info("replica %s: %s (%d of %d before it is dead)",
				 m->cfg->replicas[r->cfg].name, why, r->probe_fails,
				 m->cfg->probe_fall);
			return;
		}
	}
	liveness_set(m, rep, ok, reason, why);
	if (m->liveness_dirty)
		report_send(m);
}

struct probe_arg {
	struct monitor *m;
	int rep;
};

/* A probe's timer that fired late (this daemon was not scheduled) says
 * nothing about the replica: the connect may have completed long ago, and
 * a probe the loop could not look at in time neither fails nor passes. */
static int probe_connected(evutil_socket_t fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int err = 0;
	socklen_t elen = sizeof(err);
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0 &&
	       getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
}

static void on_probe(evutil_socket_t fd, short what, void *arg)
{
	struct probe_arg *pa = arg;
	struct monitor *m = pa->m;
	int rep = pa->rep, err = ETIMEDOUT;
	free(pa);
	struct mon_replica *r = &m->reps[rep];
	if (what & EV_TIMEOUT) {
		uint64_t late_ns = flare_monotonic_ns() - r->probe_start_ns;
		uint64_t due_ns = (uint64_t)m->cfg->probe_timeout_ms * 1000000ull;
		if (probe_connected(fd)) {
			err = 0;
		} else if (late_ns > 2 * due_ns) {
			log_info("replica %s: probe looked at %.0f ms late (this host is busy): "
				 "not counted",
				 m->cfg->replicas[r->cfg].name, (double)(late_ns - due_ns) / 1e6);
			probe_close(r);
			return;
		}
	} else {
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
	}
	/* probe_done frees this one-shot event: libevent allows that here */
	probe_done(m, rep, err == 0, err == ECONNREFUSED ? FLARE_DEATH_REFUSED : FLARE_DEATH_PROBE,
		   err == 0           ? "probe connected"
		   : err == ETIMEDOUT ? "probe timed out"
				      : "probe refused");
}

static void probe_start(struct monitor *m, int rep)
{
	struct mon_replica *r = &m->reps[rep];
	struct sockaddr_storage ss;
	if (r->probe_ev || r->registrations > 0)
		return;
	socklen_t len = flare_addr_to_sockaddr(&m->cfg->replicas[r->cfg].addr, &ss);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("probe: socket: %s", strerror(errno));
		return;
	}
	r->probe_fd = fd;
	r->probe_start_ns = flare_monotonic_ns();
	if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
		probe_done(m, rep, 1, FLARE_DEATH_NONE, "probe connected");
		return;
	}
	if (errno != EINPROGRESS) {
		probe_done(m, rep, 0,
			   errno == ECONNREFUSED ? FLARE_DEATH_REFUSED : FLARE_DEATH_PROBE,
			   "probe refused");
		return;
	}
	struct probe_arg *pa = malloc(sizeof(*pa));
	if (!pa) {
		probe_close(r);
		return;
	}
	pa->m = m;
	pa->rep = rep;
	r->probe_ev = event_new(m->base, fd, EV_WRITE, on_probe, pa);
	int ms = m->cfg->probe_timeout_ms;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	event_add(r->probe_ev, &tv);
}

/* A registered process that is stopped (SIGSTOP, a debugger) is alive but
 * serves nobody: its replicas are dead until it runs again. A replica
 * several processes registered lives while any of them runs. */
static void check_stopped(struct monitor *m)
{
	for (int i = 0; i < m->n_reps; i++)
		m->reps[i].running = 0;
	for (struct registration *g = m->regs; g; g = g->next) {
		int st = proc_state(g->pid);
		int stopped = st == 'T' || st == 't';
		if (stopped != g->stopped)
			log_info("pid %u %s", g->pid,
				 stopped ? "is stopped: its replicas are dead until it runs"
					 : "runs again");
		g->stopped = stopped;
		for (int k = 0; k < g->n && !stopped; k++)
			m->reps[g->reps[k]].running++;
	}
	for (int i = 0; i < m->n_reps; i++)
		if (m->reps[i].registrations > 0)
			liveness_set(m, i, m->reps[i].running > 0 && !m->reps[i].hung,
				     !m->reps[i].running ? FLARE_DEATH_STOPPED : FLARE_DEATH_HUNG,
				     !m->reps[i].running ? "its process is stopped"
				     : m->reps[i].hung   ? "its process does not read"
							 : "its process runs");
}

void liveness_probe_all(struct monitor *m)
{
	hung_check(m);
	check_stopped(m);
	discover_check(m);
	for (int i = 0; i < m->n_reps; i++)
		probe_start(m, i);
}

/* CPU share of every registered process since the last call, split among
 * the replicas it serves. */
void liveness_measure_loads(struct monitor *m, uint64_t now)
{
	double hz = (double)sysconf(_SC_CLK_TCK);
	for (struct registration *g = m->regs; g; g = g->next) {
		/* CPU time comes in clock ticks (10 ms): a share over less than a
		 * second would be mostly quantization */
		if (g->n == 0 || now < g->prev_ns + 1000000000ull)
			continue;
		int64_t t = proc_cpu_ticks(g->pid);
		if (t < 0)
			continue;
		double secs = (double)((uint64_t)t - g->prev_ticks) / hz;
		double share = secs / ((double)(now - g->prev_ns) / 1e9) / m->util.cpus;
		if (share > 1)
			share = 1;
		g->prev_ticks = (uint64_t)t;
		g->prev_ns = now;
		for (int i = 0; i < g->n; i++)
			m->reps[g->reps[i]].load = share / g->n;
	}
}

/* Every probe under way given up */
static void probes_stop(struct monitor *m)
{
	for (int i = 0; i < m->n_reps; i++) {
		if (m->reps[i].probe_ev) {
			free(event_get_callback_arg(m->reps[i].probe_ev));
			event_free(m->reps[i].probe_ev);
		}
		if (m->reps[i].probe_fd >= 0)
			close(m->reps[i].probe_fd);
	}
}

/* A replica entry for config replica i: unknown, not probing */
static void rep_init(struct mon_replica *r, int i)
{
	memset(r, 0, sizeof(*r));
	r->cfg = i;
	r->load = -1;
	r->probe_fd = -1;
}

int liveness_start(struct monitor *m)
{
	const struct flare_config *c = m->cfg;
	m->reps = calloc((size_t)c->n_replicas + 1, sizeof(*m->reps));
	if (!m->reps)
		return -1;
	for (int i = 0; i < c->n_replicas; i++)
		if (c->replicas[i].host == m->host)
			rep_init(&m->reps[m->n_reps++], i);
	m->unix_listener = listen_unix(m->base, c->hosts[m->host].monitor_socket, on_reg_accept, m);
	return m->unix_listener ? 0 : -1;
}

void liveness_stop(struct monitor *m)
{
	if (m->unix_listener)
		evconnlistener_free(m->unix_listener);
	m->unix_listener = NULL;
	const char *path = m->cfg->hosts[m->host].monitor_socket;
	if (path[0] != '@')
		unlink(path);
	while (m->regs) {
		struct registration *g = m->regs;
		g->c->data = NULL;
		m->regs = g->next;
		evconn_close(g->c, "monitor stopping");
		free(g);
	}
	probes_stop(m);
	free(m->reps);
	m->reps = NULL;
}

/* SIGHUP: this host's replicas from the new config, matched by name: what
 * was known of those that stay (registrations, liveness, loads, rates) is
 * kept and the registrations point at their new entries; probes start
 * over. A replica added at an address a server already registered is
 * probed until that server registers again (the registration named
 * replicas, not addresses). */
int liveness_reload(struct monitor *m, const struct flare_config *cfg, int host)
{
	struct mon_replica *reps = calloc((size_t)cfg->n_replicas + 1, sizeof(*reps));
	int *map = calloc((size_t)m->n_reps + 1, sizeof(int));
	if (!reps || !map) {
		free(reps);
		free(map);
		return -1;
	}
	for (int o = 0; o < m->n_reps; o++)
		map[o] = -1;
	int n = 0;
	for (int i = 0; i < cfg->n_replicas; i++) {
		if (cfg->replicas[i].host != host)
			continue;
		struct mon_replica *r = &reps[n];
		rep_init(r, i);
		for (int o = 0; o < m->n_reps; o++)
			if (strcmp(m->cfg->replicas[m->reps[o].cfg].name, cfg->replicas[i].name) ==
			    0) {
				const struct mon_replica *p = &m->reps[o];
				r->alive = p->alive;
				r->reason = p->reason;
				r->registrations = p->registrations;
				r->running = p->running;
				r->pid = p->pid;
				r->load = p->load;
				r->hung_unread = p->hung_unread;
				r->hung_progress = p->hung_progress;
				r->hung = p->hung;
				r->stalled_since = p->stalled_since;
				r->segs = p->segs;
				r->rate = p->rate;
				map[o] = n;
			}
		n++;
	}
	for (struct registration *g = m->regs; g; g = g->next) {
		int k = 0;
		for (int j = 0; j < g->n; j++)
			if (map[g->reps[j]] >= 0)
				g->reps[k++] = map[g->reps[j]];
		g->n = k;
	}
	probes_stop(m);
	free(map);
	free(m->reps);
	m->reps = reps;
	m->n_reps = n;
	m->liveness_dirty = 1;
	return 0;
}
