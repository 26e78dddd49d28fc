/* The library core's pure parts, linked from the objects that go into
 * libflare.so: the link state machine and its pending list, the exchange
 * (what a heal may replay), the orders replicas are tried in, and the
 * descriptor table's aliases and detaches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"
#include "tls/tls.h"

/* What init.c defines in the library: the test calls no real function, so
 * it provides them (empty) instead of resolving libc behind a preload. */
struct real_fns real;
int flare_ready = 1, flare_disabled;
pid_t flare_pid;
struct flare_stats flare_stats;
int flare_in_foreign_child(void) { return 0; }

/* ---- the link state machine ---- */

/* The table of conn.h, written out again by hand: a change to either
 * without the other fails here. */
static void test_transition_table(void **state)
{
	(void)state;
	static const char *const allowed[FC_N_STATES] = {
	    [FC_FREE] = "R",
	    [FC_READY] = "FRCHP",
	    [FC_CONNECTING] = "FRCHPX",
	    [FC_HEAL_CONNECTING] = "FRCHPX",
	    [FC_REPLAYING] = "FRCHPX",
	    [FC_FAILED] = "FR",
	};
	static const char letter[FC_N_STATES] = {[FC_FREE] = 'F',       [FC_READY] = 'R',
						 [FC_CONNECTING] = 'C', [FC_HEAL_CONNECTING] = 'H',
						 [FC_REPLAYING] = 'P',  [FC_FAILED] = 'X'};
	for (int from = 0; from < FC_N_STATES; from++)
		for (int to = 0; to < FC_N_STATES; to++) {
			int want = strchr(allowed[from], letter[to]) != NULL;
			if (fconn_transition_legal(from, to) != want)
				fail_msg("%s -> %s: legal=%d, want %d", fconn_state_name(from),
					 fconn_state_name(to), !want, want);
		}
	assert_false(fconn_transition_legal(-1, FC_READY));
	assert_false(fconn_transition_legal(FC_READY, FC_N_STATES));
	assert_string_equal(fconn_state_name(FC_HEAL_CONNECTING), "heal-connecting");
}

static void test_pending_list_follows_state(void **state)
{
	(void)state;
	struct fconn *fc = fconn_new();
	assert_non_null(fc);
	assert_int_equal(fconn_state(fc), FC_READY);
	int before = flare_n_pending;
	assert_int_equal(fconn_enter(fc, FC_CONNECTING), 0);
	assert_int_equal(flare_n_pending, before + 1);
	assert_int_equal(fconn_enter(fc, FC_HEAL_CONNECTING), 0); /* still one entry */
	assert_int_equal(flare_n_pending, before + 1);
	assert_int_equal(fconn_enter(fc, FC_FAILED), 0);
	assert_int_equal(flare_n_pending, before);
	/* FAILED only leaves by the program taking its error (the refusal is
	 * logged as an internal error: silenced here) */
	flare_log_init("test_core", -1, 0);
	assert_int_equal(fconn_enter(fc, FC_CONNECTING), -1);
	flare_log_init("test_core", FLARE_LOG_WARN, 0);
	assert_int_equal(fconn_state(fc), FC_FAILED);
	__atomic_store_n(&fc->link.conn_err, 111, __ATOMIC_RELEASE);
	assert_int_equal(fconn_take_owed_error(fc), 111);
	assert_int_equal(fconn_state(fc), FC_READY);
	assert_int_equal(fconn_take_owed_error(fc), 0);
	/* recycling a pending connection takes it off the list */
	assert_int_equal(fconn_enter(fc, FC_REPLAYING), 0);
	assert_int_equal(flare_n_pending, before + 1);
	fconn_release(fc);
	assert_int_equal(flare_n_pending, before);
	assert_int_equal(fconn_state(fc), FC_FREE);
}

static void *claim_other(void *arg) { return (void *)(intptr_t)fconn_claim(arg); }

static void test_claim_is_exclusive(void **state)
{
	(void)state;
	struct fconn *fc = fconn_new();
	assert_int_equal(fconn_claim(fc), 1);
	/* the same thread again: a siglongjmp left its claim, it takes it over */
	assert_int_equal(fconn_claim(fc), 1);
	pthread_t t;
	void *got;
	pthread_create(&t, NULL, claim_other, fc);
	pthread_join(t, &got);
	assert_int_equal((intptr_t)got, 0);
	fconn_unclaim(fc);
	assert_false(fconn_claimed(fc));
	pthread_create(&t, NULL, claim_other, fc);
	pthread_join(t, &got);
	assert_int_equal((intptr_t)got, 1);
	fconn_unclaim(fc);
	fconn_release(fc);
}

/* ---- the exchange ---- */

static struct fconn *conn_with(int replay, uint32_t cap)
{
	struct fconn *fc = fconn_new();
	if (fc->cap < cap) {
		fc->buf = realloc(fc->buf, cap);
		fc->cap = cap;
	}
	fc->svc.replay = (uint8_t)replay;
	fc->fr.proto = PROTO_OPAQUE; /* the strict request/reply rules */
	return fc;
}

static void wrote(struct fconn *fc, const char *s) { exchange_wrote_buf(fc, s, strlen(s)); }

static void got(struct fconn *fc, const char *s)
{
	struct iovec v = {(void *)s, strlen(s)};
	exchange_read(fc, &v, 1, v.iov_len);
}

static struct fconn *framed_conn(int proto, uint32_t cap)
{
	struct fconn *fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, cap);
	framed_start(fc, proto);
	return fc;
}

/* Redis, pipelined: every unanswered request is replayed, from the oldest;
 * a half-read reply is never healed; idle at a boundary is. */
static void test_framed_pipeline(void **state)
{
	(void)state;
	struct fconn *fc = framed_conn(PROTO_REDIS, 256);
	const char *three = "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n"
			    "*2\r\n$3\r\nGET\r\n$1\r\nc\r\n";
	wrote(fc, three);
	assert_int_equal(fc->fr.q_n, 3);
	assert_true(exchange_outstanding(fc));
	assert_true(exchange_healable(fc));
	assert_int_equal(exchange_replay_from(fc), 0);
	assert_int_equal(exchange_replay_len(fc), strlen(three));
	got(fc, "$1\r\nA\r\n$1\r");
	/* the first reply is the program's: the replay starts at the second */
	assert_int_equal(fc->fr.q_n, 2);
	assert_int_equal(exchange_replay_from(fc), strlen(three) / 3);
	assert_false(exchange_healable(fc)); /* half of the second reply was read */
	got(fc, "\nB\r\n");
	assert_true(exchange_healable(fc));
	assert_int_equal(exchange_replay_from(fc), 2 * strlen(three) / 3);
	got(fc, "$-1\r\n");
	assert_int_equal(fc->fr.q_n, 0);
	assert_false(exchange_outstanding(fc));
	assert_int_equal(fc->ex.state, FX_ANSWERED);
	assert_true(exchange_healable(fc)); /* idle at a boundary: the next request goes on */
	assert_int_equal(exchange_replay_len(fc) - exchange_replay_from(fc), 0);
	/* a partial request is replayed too (its rest follows on the new socket) */
	wrote(fc, "*1\r\n$4\r\nPI");
	assert_true(exchange_outstanding(fc));
	assert_int_equal(exchange_replay_len(fc) - exchange_replay_from(fc), 10);
	fconn_release(fc);
}

/* Redis session state, transactions and pub/sub. */
static void test_framed_session(void **state)
{
	(void)state;
	struct fconn *fc = framed_conn(PROTO_REDIS, 256);
	wrote(fc, "*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n");
	got(fc, "+OK\r\n");
	assert_true(fc->fr.sess_len > 0);
	assert_true(session_pending(fc));
	uint32_t one = fc->fr.sess_len;
	wrote(fc, "*2\r\n$6\r\nSELECT\r\n$2\r\n99\r\n");
	got(fc, "-ERR DB index is out of range\r\n");
	assert_int_equal(fc->fr.sess_len, one); /* a failed command changed nothing */
	wrote(fc, "*1\r\n$5\r\nMULTI\r\n");
	got(fc, "+OK\r\n");
	wrote(fc, "*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n");
	assert_false(exchange_healable(fc)); /* inside MULTI ... EXEC */
	got(fc, "+QUEUED\r\n");
	wrote(fc, "*1\r\n$4\r\nEXEC\r\n");
	assert_false(exchange_healable(fc));
	got(fc, "*1\r\n:1\r\n");
	assert_true(exchange_healable(fc));
	wrote(fc, "*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n");
	assert_false(exchange_healable(fc)); /* pub/sub: never healed */
	got(fc, "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n");
	assert_false(exchange_healable(fc));
	fconn_release(fc);
}

/* HTTP: what may run twice, and the server's announced close. */
static void test_framed_http(void **state)
{
	(void)state;
	struct fconn *fc = framed_conn(PROTO_HTTP, 512);
	wrote(fc, "POST /order HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi");
	assert_false(exchange_healable(fc)); /* it may have run */
	got(fc, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
	assert_true(exchange_healable(fc));
	wrote(fc, "POST /order HTTP/1.1\r\nIdempotency-Key: k1\r\nContent-Length: 0\r\n\r\n");
	assert_true(exchange_healable(fc));
	got(fc, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
	assert_false(exchange_healable(fc)); /* the EOF that follows is the server's close */
	exchange_healed(fc);
	assert_true(exchange_healable(fc));
	fc->svc.unsafe_ok = 1; /* replay_unsafe = true */
	wrote(fc, "PATCH / HTTP/1.1\r\n\r\n");
	assert_true(exchange_healable(fc));
	got(fc, "HTTP/1.1 204 No Content\r\n\r\n");
	assert_true(exchange_healable(fc));
	fc->ex.shut_wr = 1; /* the program half-closed: the EOF that follows is the answer */
	assert_false(exchange_healable(fc));
	fconn_release(fc);
}

static void test_exchange_heal_rules(void **state)
{
	(void)state;
	struct fconn *fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 16);
	assert_int_equal(fc->ex.state, FX_FRESH);
	assert_true(exchange_healable(fc)); /* nothing exchanged: reconnect */
	assert_false(exchange_outstanding(fc));
	exchange_wrote_buf(fc, "GET a", 5);
	exchange_wrote_buf(fc, "\r\n", 2);
	assert_int_equal(fc->ex.state, FX_REQUEST);
	assert_true(exchange_outstanding(fc));
	assert_true(exchange_healable(fc));
	assert_int_equal(exchange_replay_len(fc), 7);
	assert_memory_equal(fc->buf, "GET a\r\n", 7);
	exchange_read(fc, NULL, 0, 1);
	assert_int_equal(fc->ex.state, FX_ANSWERED);
	assert_false(exchange_healable(fc)); /* part of a reply was delivered */
	assert_int_equal(exchange_replay_len(fc), 0);
	/* a write that sent nothing ends nothing and starts nothing */
	exchange_wrote_buf(fc, NULL, 0);
	assert_false(exchange_healable(fc));
	/* the next request restarts the buffer */
	struct iovec iov[2] = {{"GET", 3}, {" bb", 3}};
	exchange_wrote(fc, iov, 2, 5); /* the kernel took 5 of 6 bytes */
	assert_int_equal(exchange_replay_len(fc), 5);
	assert_memory_equal(fc->buf, "GET b", 5);
	/* too big to keep: a failure surfaces, until a reply ends it */
	exchange_wrote_buf(fc, "0123456789abcdef", 16);
	assert_int_equal(fc->ex.state, FX_OVERSIZE);
	assert_true(exchange_outstanding(fc));
	assert_false(exchange_healable(fc));
	exchange_wrote_buf(fc, "x", 1);
	assert_int_equal(fc->ex.state, FX_OVERSIZE);
	exchange_read(fc, NULL, 0, 1);
	exchange_wrote_buf(fc, "y", 1);
	assert_int_equal(fc->ex.state, FX_REQUEST);
	assert_int_equal(exchange_replay_len(fc), 1);
	fconn_release(fc);
}

static void test_exchange_replay_none(void **state)
{
	(void)state;
	struct fconn *fc = conn_with(FLARE_REPLAY_NONE, 16);
	assert_true(exchange_healable(fc)); /* a fresh connection fails over at connect */
	exchange_wrote_buf(fc, "INCR k\r\n", 8);
	assert_true(exchange_outstanding(fc));
	assert_false(exchange_healable(fc)); /* never run twice */
	exchange_write_failed(fc);           /* a request went out: nothing changes */
	assert_false(exchange_healable(fc));
	exchange_read(fc, NULL, 0, 1);
	assert_false(exchange_healable(fc)); /* idle: an EOF may be a legitimate close */
	/* the next write found the connection closed and sent nothing: an
	 * opaque protocol not declared stateless may hold a session the new
	 * connection would lack, so the failure surfaces */
	exchange_write_failed(fc);
	assert_int_equal(fconn_trust(fc), TR_SESSION);
	assert_false(exchange_healable(fc));
	fconn_release(fc);
	/* declared stateless, the same close is reconnected */
	fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 16);
	exchange_wrote_buf(fc, "GET k\r\n", 7);
	exchange_read(fc, NULL, 0, 1);
	exchange_write_failed(fc);
	assert_int_equal(fc->ex.state, FX_FRESH);
	assert_true(exchange_healable(fc));
	fconn_release(fc);
}

/* ---- the trust table (conn.h) ---- */

static int terminal(int t) { return t == TR_SESSION || t == TR_TAINTED || t == TR_BROKEN; }

/* Every pair: the result is a state; nothing leaves the unhealable ones
 * for a healable one; a refusal always breaks; a taint always taints. */
static void test_trust_table_closed(void **state)
{
	(void)state;
	for (int from = 0; from < TR_N; from++)
		for (int ev = 0; ev < TE_N; ev++)
			for (int stl = 0; stl < 2; stl++) {
				int to = trust_next(from, ev, stl);
				assert_true(to >= 0 && to < TR_N);
				if (terminal(from))
					assert_true(terminal(to));
				if (ev == TE_REFUSED)
					assert_int_equal(to, TR_BROKEN);
				if (ev == TE_TAINT)
					assert_int_equal(to, from == TR_BROKEN ? TR_BROKEN
									       : TR_TAINTED);
				if (to == TR_STATELESS)
					assert_true(stl || from == TR_STATELESS);
			}
	assert_int_equal(trust_next(TR_FIRST, TE_READ, 0), TR_SESSION);
	assert_int_equal(trust_next(TR_FIRST, TE_READ, 1), TR_STATELESS);
	assert_int_equal(trust_next(TR_FIRST, TE_SERVER_FIRST, 1), TR_SESSION);
	assert_int_equal(trust_next(TR_FIRST_SESSION, TE_READ, 1), TR_SESSION);
	assert_int_equal(trust_next(TR_FIRST, TE_FRAMED, 0), TR_FRAMED);
	assert_int_equal(trust_next(TR_FRAMED, TE_FRAMING_LOST, 1), TR_STATELESS);
	assert_int_equal(trust_next(TR_FRAMED, TE_FRAMING_LOST, 0), TR_SESSION);
	assert_int_equal(trust_next(TR_SESSION, TE_FRAMED, 1), TR_SESSION);
	assert_int_equal(trust_next(-1, TE_READ, 0), -1); /* out of range: unchanged */
	assert_int_equal(trust_next(TR_FIRST, TE_N, 0), TR_FIRST);
}

/* The rules as the connection lives them. */
static void test_trust_opaque_default(void **state)
{
	(void)state;
	/* replay auto: the first request is the whole history */
	struct fconn *fc = conn_with(FLARE_REPLAY_AUTO, 64);
	wrote(fc, "HELLO\n");
	assert_true(exchange_healable(fc));
	got(fc, "hi\n");
	wrote(fc, "WORK\n");
	assert_false(exchange_healable(fc)); /* its history is more than the replay */
	assert_false(exchange_boundary(fc, 0));
	fconn_release(fc);
	/* the server spoke first: a greeting a new replica would repeat */
	fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
	got(fc, "220 ready\r\n");
	assert_int_equal(fconn_trust(fc), TR_SESSION);
	wrote(fc, "HELO x\r\n");
	assert_false(exchange_healable(fc));
	fconn_release(fc);
	/* declared stateless: every request replays */
	fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
	wrote(fc, "a");
	got(fc, "A");
	wrote(fc, "b");
	assert_int_equal(fconn_trust(fc), TR_STATELESS);
	assert_true(exchange_healable(fc));
	assert_int_equal(exchange_replay_len(fc), 1);
	fconn_release(fc);
}

static void test_trust_session_protocols(void **state)
{
	(void)state;
	static const uint8_t tls[6] = {0x16, 3, 1, 0, 0x80, 1};
	const char *starts[] = {"SSH-2.0-OpenSSH_9.2\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
				"AMQP\0\0\x09\x01"};
	assert_int_equal(exchange_session_proto(tls, sizeof(tls)), SESSION_TLS);
	assert_int_equal(exchange_session_proto((const uint8_t *)starts[0], 8), SESSION_SSH);
	assert_int_equal(exchange_session_proto((const uint8_t *)starts[1], 16), SESSION_HTTP2);
	assert_int_equal(exchange_session_proto((const uint8_t *)starts[2], 8), SESSION_AMQP);
	assert_int_equal(exchange_session_proto(tls, 2), SESSION_NONE);
	for (size_t i = 0; i < 4; i++) {
		/* even declared stateless, with protocol auto */
		struct fconn *fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
		fc->fr.proto = PROTO_AUTO;
		if (i < 3)
			wrote(fc, starts[i]);
		else
			exchange_wrote_buf(fc, tls, sizeof(tls));
		assert_int_equal(fconn_trust(fc), TR_FIRST_SESSION);
		assert_false(fconn_framed(fc));     /* "PRI *" is no HTTP/1.1 request */
		assert_true(exchange_healable(fc)); /* before the server's first byte */
		got(fc, "x");
		wrote(fc, "y");
		assert_false(exchange_healable(fc));
		fconn_release(fc);
	}
	/* a configured framer does not take a TLS ClientHello for its
	 * protocol's bytes, declared stateless or not */
	for (int stl = 0; stl < 2; stl++) {
		struct fconn *fc =
		    conn_with(stl ? FLARE_REPLAY_REQUEST_REPLY : FLARE_REPLAY_AUTO, 64);
		framed_start(fc, PROTO_HTTP);
		exchange_wrote_buf(fc, tls, sizeof(tls));
		assert_int_equal(fconn_trust(fc), TR_FIRST_SESSION);
		assert_false(fconn_framed(fc));
		assert_int_equal(fc->ex.sess_proto, SESSION_TLS);
		got(fc, "x");
		assert_int_equal(fconn_trust(fc), TR_SESSION);
		fconn_release(fc);
	}
}

/* ---- the TLS session table (tls_table.c): keys are never dereferenced ---- */

static void test_tls_table(void **state)
{
	(void)state;
	enum { N = 1000 };
	static char objs[N][64]; /* stand-ins for SSL objects: only their addresses count */
	assert_null(tls_known((SSL *)objs[0]));
	for (int i = 0; i < N; i++) {
		struct tls_sess *t = tls_get((SSL *)objs[i]);
		assert_non_null(t);
		assert_ptr_equal(t->prog, objs[i]);
		assert_ptr_equal(t->cur, objs[i]);
		assert_ptr_equal(tls_get((SSL *)objs[i]), t); /* found, not made again */
	}
	assert_int_equal(flare_tls_sessions, N);
	for (int i = 0; i < N; i += 2)
		tls_forget((SSL *)objs[i]);
	for (int i = 0; i < N; i++)
		assert_true((tls_known((SSL *)objs[i]) != NULL) == (i % 2 == 1));
	/* the forgotten ones' tombstones are taken again */
	for (int i = 0; i < N; i += 2)
		assert_non_null(tls_get((SSL *)objs[i]));
	for (int i = 0; i < N; i++)
		assert_ptr_equal(tls_known((SSL *)objs[i])->prog, objs[i]);
	for (int i = 0; i < N; i++)
		tls_forget((SSL *)objs[i]);
	assert_int_equal(flare_tls_sessions, 0);
	assert_null(tls_known((SSL *)objs[1]));
	/* a full table takes no more: the new session is left alone */
	static char many[4096][16];
	int made = 0;
	for (int i = 0; i < 4096; i++)
		made += tls_get((SSL *)many[i]) != NULL;
	assert_true(made >= 2048 && made < 4096);
	for (int i = 0; i < 4096; i++)
		if (tls_find((SSL *)many[i]))
			tls_forget((SSL *)many[i]);
	assert_int_equal(flare_tls_sessions, 0);
}

static void test_trust_taint(void **state)
{
	(void)state;
	struct fconn *fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
	wrote(fc, "a");
	trust_event(fc, TE_TAINT);
	assert_false(exchange_healable(fc));
	got(fc, "A");
	wrote(fc, "b");
	assert_false(exchange_healable(fc));
	assert_false(exchange_boundary(fc, 0));
	fconn_release(fc);
	fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
	assert_int_equal(fconn_trust(fc), TR_FIRST); /* recycled clean */
	fconn_release(fc);
}

/* ---- orders ---- */

static void route(struct flare_route *rt, int n, const char *alive, int failover)
{
	memset(rt, 0, sizeof(*rt));
	rt->svc.n_replicas = (uint32_t)n;
	rt->svc.failover = (uint8_t)failover;
	rt->svc.primary = 0;
	for (int i = 0; i < n; i++)
		rt->reps[i].alive = alive[i] == '1';
}

static void assert_order(const uint8_t *got, int n, const char *want)
{
	char s[FLARE_MAX_REPLICAS * 2 + 1];
	for (int i = 0; i < n; i++)
		s[i] = (char)('0' + got[i]);
	s[n] = '\0';
	assert_string_equal(s, want);
}

static void test_order_connect(void **state)
{
	(void)state;
	struct flare_route rt;
	uint8_t out[FLARE_MAX_REPLICAS];
	/* the ranking 2,0,1 with 2 dead: live ones first, each once */
	route(&rt, 4, "1101", FLARE_FAILOVER_PROACTIVE);
	rt.svc.n_order = 3;
	memcpy(rt.svc.order, (uint8_t[]){2, 0, 1}, 3);
	int n = order_connect(&rt, out);
	assert_order(out, n, "0132");
	/* static failover: the primary, then the configured order */
	route(&rt, 3, "011", FLARE_FAILOVER_STATIC);
	rt.svc.primary = 2;
	rt.svc.n_order = 3;
	memcpy(rt.svc.order, (uint8_t[]){0, 1, 2}, 3);
	n = order_connect(&rt, out);
	assert_order(out, n, "210");
	/* a drained replica comes after every live one, before the dead */
	route(&rt, 4, "1110", FLARE_FAILOVER_PROACTIVE);
	rt.svc.n_order = 4;
	memcpy(rt.svc.order, (uint8_t[]){0, 1, 2, 3}, 4);
	rt.reps[0].flags = FLARE_REP_DRAINED;
	n = order_connect(&rt, out);
	assert_order(out, n, "1203");
	/* and balancing never picks it */
	rt.svc.balance = FLARE_BALANCE_RANDOM;
	for (int k = 0; k < 200; k++)
		assert_int_not_equal(balance_pick(&rt, balance_random(), (uint64_t)k, -1), 0);
	rt.svc.balance = FLARE_BALANCE_PRIMARY;
	/* out-of-range indexes in a table are skipped, not followed */
	route(&rt, 2, "11", FLARE_FAILOVER_PROACTIVE);
	rt.svc.n_order = 2;
	memcpy(rt.svc.order, (uint8_t[]){9, 1}, 2);
	n = order_connect(&rt, out);
	assert_order(out, n, "10");
}

/* ---- balance.c: the replica a new binding goes to ---- */

static void balanced(struct flare_route *rt, int policy, const char *alive)
{
	route(rt, (int)strlen(alive), alive, FLARE_FAILOVER_PROACTIVE);
	rt->svc.balance = (uint8_t)policy;
	rt->svc.band_ppm = 100000;
	for (uint32_t i = 0; i < rt->svc.n_replicas; i++)
		rt->reps[i].ramp_ppm = rt->reps[i].weight_ppm = FLARE_PPM;
}

static void picks(const struct flare_route *rt, int draws, int *count)
{
	memset(count, 0, FLARE_MAX_REPLICAS * sizeof(int));
	for (int k = 0; k < draws; k++) {
		int i = balance_pick(rt, balance_random(), (uint64_t)k, -1);
		assert_in_range(i, 0, (int)rt->svc.n_replicas - 1);
		count[i]++;
	}
}

static void test_balance_policies(void **state)
{
	(void)state;
	struct flare_route rt;
	int count[FLARE_MAX_REPLICAS];
	/* primary: the ranking decides */
	balanced(&rt, FLARE_BALANCE_PRIMARY, "111");
	assert_int_equal(balance_pick(&rt, 1, 0, -1), -1);
	/* round-robin: turns over the live replicas, in order */
	balanced(&rt, FLARE_BALANCE_ROUND_ROBIN, "1011");
	static const int turns[3] = {0, 2, 3};
	for (uint64_t t = 0; t < 6; t++)
		assert_int_equal(balance_pick(&rt, 0, t, -1), turns[t % 3]);
	/* nothing live: no pick (the ranking's order and its errors) */
	balanced(&rt, FLARE_BALANCE_RANDOM, "000");
	assert_int_equal(balance_pick(&rt, 7, 0, -1), -1);
	/* random: every live replica, about evenly */
	balanced(&rt, FLARE_BALANCE_RANDOM, "1101");
	picks(&rt, 3000, count);
	assert_int_equal(count[2], 0);
	for (int i = 0; i < 4; i++)
		if (i != 2)
			assert_in_range(count[i], 800, 1200);
	/* least-loaded: the lowest rate, jittered among those within the band */
	balanced(&rt, FLARE_BALANCE_LEAST_LOADED, "1111");
	rt.reps[0].rate_milli = 300000;
	rt.reps[1].rate_milli = 100000;
	rt.reps[2].rate_milli = 104000; /* within 10% of the mean of the lowest */
	rt.reps[3].rate_milli = 200000;
	picks(&rt, 2000, count);
	assert_int_equal(count[0] + count[3], 0);
	assert_in_range(count[1], 800, 1200);
	/* headroom: drawn by spare capacity */
	balanced(&rt, FLARE_BALANCE_HEADROOM, "111");
	rt.reps[0].weight_ppm = 600000;
	rt.reps[1].weight_ppm = 300000;
	rt.reps[2].weight_ppm = 100000;
	picks(&rt, 5000, count);
	assert_in_range(count[0], 2700, 3300);
	assert_in_range(count[1], 1300, 1700);
	assert_in_range(count[2], 350, 650);
	/* slow start: a replica at a fifth of its ramp gets about a fifth of
	 * its turns, but replicas ramping together hold nobody back */
	balanced(&rt, FLARE_BALANCE_RANDOM, "11");
	rt.reps[1].ramp_ppm = 200000;
	picks(&rt, 3000, count);
	assert_in_range(count[1], 350, 650);
	rt.reps[0].ramp_ppm = 200000;
	picks(&rt, 3000, count);
	assert_in_range(count[1], 1300, 1700);
	/* the pick comes first, then the ranking's order without it */
	balanced(&rt, FLARE_BALANCE_RANDOM, "111");
	rt.svc.n_order = 3;
	memcpy(rt.svc.order, (uint8_t[]){0, 1, 2}, 3);
	uint8_t out[FLARE_MAX_REPLICAS];
	int n = order_balanced(&rt, 2, out);
	assert_order(out, n, "201");
}

static void test_order_failover(void **state)
{
	(void)state;
	struct flare_route rt;
	uint8_t out[FLARE_MAX_REPLICAS + 1];
	route(&rt, 4, "1011", FLARE_FAILOVER_PROACTIVE);
	rt.reps[0].n_failover = 3;
	memcpy(rt.reps[0].failover, (uint8_t[]){1, 3, 2}, 3);
	/* pushed ranking, dead 1 after the live ones, the failed one last */
	int n = order_failover(&rt, 0, FLARE_FAILOVER_PROACTIVE, NULL, -1, 0, out);
	assert_order(out, n, "3210");
	/* reactive: the manager's answer replaces the pushed ranking */
	n = order_failover(&rt, 0, FLARE_FAILOVER_REACTIVE, (uint8_t[]){2}, 1, 0, out);
	assert_order(out, n, "2310");
	/* reactive with no answer (-1): the table's ranking */
	n = order_failover(&rt, 0, FLARE_FAILOVER_REACTIVE, NULL, -1, 0, out);
	assert_order(out, n, "3210");
	/* static: the configured order only */
	n = order_failover(&rt, 0, FLARE_FAILOVER_STATIC, NULL, -1, 0, out);
	assert_order(out, n, "2310");
	/* sixteen replicas, every one dead: no overflow, each once */
	route(&rt, FLARE_MAX_REPLICAS, "0000000000000000", FLARE_FAILOVER_PROACTIVE);
	rt.reps[5].n_failover = FLARE_MAX_REPLICAS;
	for (int i = 0; i < FLARE_MAX_REPLICAS; i++)
		rt.reps[5].failover[i] = (uint8_t)(FLARE_MAX_REPLICAS - 1 - i);
	n = order_failover(&rt, 5, FLARE_FAILOVER_PROACTIVE, NULL, -1, 0, out);
	assert_int_equal(n, FLARE_MAX_REPLICAS);
	assert_int_equal(out[n - 1], 5);
}

/* A request goes to each replica at most once by a heal: the replicas it
 * was already moved to are left out, the failed one too once tried. */
static void test_order_failover_bounded(void **state)
{
	(void)state;
	struct flare_route rt;
	uint8_t out[FLARE_MAX_REPLICAS + 1];
	route(&rt, 3, "111", FLARE_FAILOVER_PROACTIVE);
	rt.reps[0].n_failover = 2;
	memcpy(rt.reps[0].failover, (uint8_t[]){1, 2}, 2);
	int n = order_failover(&rt, 0, FLARE_FAILOVER_PROACTIVE, NULL, -1, 1u << 1, out);
	assert_order(out, n, "20");
	/* moved to 1 then 2 (both failed it at once); 0 the original, dead */
	rt.reps[0].alive = 0;
	n = order_failover(&rt, 2, FLARE_FAILOVER_PROACTIVE, NULL, -1, 1u << 1 | 1u << 2, out);
	assert_order(out, n, "0");
	n = order_failover(&rt, 0, FLARE_FAILOVER_PROACTIVE, NULL, -1, 7, out);
	assert_int_equal(n, 0); /* every replica had it: the failure surfaces */
}

/* PostgreSQL is a session protocol: healed during its startup exchange
 * only. Its first packet is recognised; other protocols are not. */
static void test_exchange_session_protocols(void **state)
{
	(void)state;
	static const uint8_t ssl[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
	static const uint8_t startup[12] = {0, 0, 0, 12, 0, 3, 0, 0, 'u', 0, 0, 0};
	assert_int_equal(exchange_session_proto(ssl, sizeof(ssl)), SESSION_POSTGRES);
	assert_int_equal(exchange_session_proto(startup, sizeof(startup)), SESSION_POSTGRES);
	assert_int_equal(exchange_session_proto((const uint8_t *)"GET / HTTP/1.1\r\n", 16),
			 SESSION_NONE);
	assert_int_equal(exchange_session_proto((const uint8_t *)"*1\r\n$4\r\nPING\r\n", 14),
			 SESSION_NONE);
	assert_int_equal(exchange_session_proto(ssl, 7), SESSION_NONE);

	struct fconn *fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
	exchange_wrote_buf(fc, ssl, sizeof(ssl));
	assert_true(exchange_healable(fc)); /* startup: replayed on a new connection */
	exchange_read(fc, NULL, 0, 1);      /* the server's answer: the session begins */
	exchange_wrote_buf(fc, startup, sizeof(startup));
	assert_int_equal(fc->ex.state, FX_REQUEST);
	assert_false(exchange_healable(fc)); /* a new connection would lack the session */
	fconn_release(fc);
	fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
	exchange_wrote_buf(fc, "PING\r\n", 6);
	exchange_read(fc, NULL, 0, 1);
	exchange_wrote_buf(fc, "PING\r\n", 6);
	assert_true(exchange_healable(fc)); /* not a session protocol */
	fconn_release(fc);
}

/* A reply byte is progress: a request may go to every replica again. */
static void test_exchange_reply_resets_replayed(void **state)
{
	(void)state;
	struct fconn *fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
	exchange_wrote_buf(fc, "a", 1);
	__atomic_store_n(&fc->ex.replayed, 6u, __ATOMIC_RELAXED);
	exchange_wrote_buf(fc, "b", 1); /* the same request: still 6 */
	assert_int_equal(fc->ex.replayed, 6u);
	exchange_read(fc, NULL, 0, 1);
	assert_int_equal(fc->ex.replayed, 0u);
	fconn_release(fc);
	fc = conn_with(FLARE_REPLAY_REQUEST_REPLY, 64);
	assert_int_equal(fc->ex.replayed, 0u); /* recycled clean */
	fconn_release(fc);
}

/* ---- the descriptor table ---- */

static void test_fdtab_aliases_and_detaches(void **state)
{
	(void)state;
	struct fconn *fc = fconn_new();
	uint32_t gen = fc->gen;
	fdtab_attach(100, fc);
	assert_ptr_equal(fdtab_get(100), fc);
	assert_null(fdtab_get(101));
	fdtab_note_opt(100, FLARE_SET_BIND);
	/* dup: the new number names the same connection, with its facts */
	assert_int_equal(fdtab_after_dup(100, 101), 101);
	assert_ptr_equal(fdtab_get(101), fc);
	assert_int_equal(fdtab_opts(101), FLARE_SET_BIND);
	assert_int_equal(fc->own.n_fds, 2);
	assert_int_equal(fconn_first_fd(fc), 100);
	/* closing one alias keeps the connection */
	fdtab_detach(100);
	assert_null(fdtab_get(100));
	assert_ptr_equal(fdtab_get(101), fc);
	assert_int_equal(fconn_state(fc), FC_READY);
	/* dup2 of an unmanaged number onto a managed one closes the latter */
	assert_int_equal(fdtab_after_dup(5, 101), 101);
	assert_null(fdtab_get(101));
	assert_int_equal(fconn_state(fc), FC_FREE);
	assert_true(fc->gen != gen);
	/* close_range forgets every managed number in the range, no others */
	struct fconn *a = fconn_new(), *b = fconn_new();
	fdtab_attach(200, a);
	fdtab_attach(201, a);
	fdtab_attach(205, b);
	fdtab_attach(300, b);
	fdtab_detach_range(200, 299);
	assert_null(fdtab_get(200));
	assert_null(fdtab_get(201));
	assert_null(fdtab_get(205));
	assert_ptr_equal(fdtab_get(300), b);
	assert_int_equal(fconn_state(a), FC_FREE);
	assert_int_equal(fconn_state(b), FC_READY);
	fdtab_detach(300);
	assert_int_equal(fconn_state(b), FC_FREE);
	/* a recycled connection starts over */
	struct fconn *c = fconn_new();
	assert_int_equal(c->own.n_fds, 0);
	assert_int_equal(c->ex.state, FX_FRESH);
	assert_int_equal(fconn_state(c), FC_READY);
	fconn_release(c);
}

static int setup(void **state)
{
	(void)state;
	flare_pid = (pid_t)syscall(SYS_getpid);
	return fdtab_init();
}

/* A connection closed while a thread holds its claim (a heal under way)
 * is recycled only when that thread lets go: never reused under it. */
static void test_release_waits_for_the_claim(void **state)
{
	(void)state;
	struct fconn *fc = fconn_new();
	fdtab_attach(400, fc);
	assert_true(fconn_claim(fc));
	fdtab_detach(400); /* the program's close */
	assert_null(fdtab_get(400));
	assert_int_equal(fconn_state(fc), FC_READY); /* still the healer's */
	struct fconn *other = fconn_new();
	assert_ptr_not_equal(other, fc); /* not handed out again */
	fconn_unclaim(fc);
	assert_int_equal(fconn_state(fc), FC_FREE);
	assert_true(fconn_claimed(fc)); /* free: nobody can claim it until handed out */
	fconn_release(other);
	/* released twice (a racing close): on the free list once */
	struct fconn *a = fconn_new(), *b;
	fconn_release(a);
	fconn_release(a);
	a = fconn_new();
	b = fconn_new();
	assert_ptr_not_equal(a, b);
	fconn_release(a);
	fconn_release(b);
}

/* close() from a signal handler that interrupted the library while it
 * held the connection's mutex: no deadlock; the number is forgotten at
 * once, and the work owed (lock.h) is done when the interrupted code lets
 * go of its last lock: the number dropped from the connection, and the
 * connection recycled when it has none left. */
static void test_close_while_lock_held(void **state)
{
	(void)state;
	struct fconn *fc = fconn_new();
	fdtab_attach(410, fc);
	fdtab_attach(411, fc);
	assert_int_equal(flare_lock(&fc->lock), 0); /* the interrupted code */
	fdtab_detach(410);                          /* the handler's close: returns */
	assert_null(fdtab_get(410));
	assert_true(__atomic_load_n(&flare_owed, __ATOMIC_RELAXED) & OWED_PRUNE);
	assert_int_equal(fc->own.n_fds, 2); /* not touched under the lock */
	flare_unlock(&fc->lock);
	assert_int_equal(flare_owed, 0);
	assert_int_equal(fc->own.n_fds, 1); /* 410 pruned at the let-go */
	assert_int_equal(fconn_first_fd(fc), 411);
	flare_lock(&fc->lock);
	fdtab_detach(411);
	assert_int_equal(fconn_state(fc), FC_READY);
	flare_unlock(&fc->lock);
	assert_int_equal(fconn_state(fc), FC_FREE); /* none left: recycled at once */
	assert_int_equal(flare_locks_held, 0);
}

/* closefrom()/close_range() from a signal handler while the library held
 * a connection's mutex: that connection's numbers in the range are
 * forgotten at once too (not skipped), the others' as usual. */
static void test_close_range_while_lock_held(void **state)
{
	(void)state;
	struct fconn *a = fconn_new(), *b = fconn_new();
	fdtab_attach(420, a);
	fdtab_attach(430, a);
	fdtab_attach(421, b);
	flare_lock(&a->lock);
	fdtab_detach_range(420, 429);
	assert_null(fdtab_get(420));
	assert_null(fdtab_get(421));
	assert_ptr_equal(fdtab_get(430), a);
	assert_int_equal(fconn_state(b), FC_FREE);
	flare_unlock(&a->lock);
	assert_int_equal(a->own.n_fds, 1);
	assert_int_equal(fconn_state(a), FC_READY);
	flare_lock(&a->lock);
	fdtab_detach_range(425, 450);
	flare_unlock(&a->lock);
	assert_int_equal(fconn_state(a), FC_FREE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_transition_table),
	    cmocka_unit_test(test_pending_list_follows_state),
	    cmocka_unit_test(test_claim_is_exclusive),
	    cmocka_unit_test(test_exchange_heal_rules),
	    cmocka_unit_test(test_exchange_replay_none),
	    cmocka_unit_test(test_framed_pipeline),
	    cmocka_unit_test(test_framed_session),
	    cmocka_unit_test(test_framed_http),
	    cmocka_unit_test(test_order_connect),
	    cmocka_unit_test(test_balance_policies),
	    cmocka_unit_test(test_order_failover),
	    cmocka_unit_test(test_order_failover_bounded),
	    cmocka_unit_test(test_exchange_session_protocols),
	    cmocka_unit_test(test_trust_table_closed),
	    cmocka_unit_test(test_trust_opaque_default),
	    cmocka_unit_test(test_trust_session_protocols),
	    cmocka_unit_test(test_trust_taint),
	    cmocka_unit_test(test_tls_table),
	    cmocka_unit_test(test_exchange_reply_resets_replayed),
	    cmocka_unit_test(test_fdtab_aliases_and_detaches),
	    cmocka_unit_test(test_release_waits_for_the_claim),
	    cmocka_unit_test(test_close_while_lock_held),
	    cmocka_unit_test(test_close_range_while_lock_held),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
