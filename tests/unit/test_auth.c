/* Control-plane authentication: the key file's rules, and sealed frames
 * that open once, in order, on their own connection only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "config.h"

static const struct auth_key key = {{1, 2, 3}, 0, ""};

/* A connected pair: c (client) and s (server) with each other's nonce. */
static void pair(struct auth_session *c, struct auth_session *s, const struct auth_key *ck,
		 const struct auth_key *sk)
{
	struct fw_buf hc = {0}, hs = {0};
	const char *why;
	struct auth_key agent;
	char err[128];
	/* the client holds an agent's key, derived from its secret */
	assert_int_equal(auth_key_for(ck, FW_ROLE_AGENT, "", &agent, err, sizeof(err)), 0);
	assert_int_equal(auth_session_init(c, &agent, 1), 0);
	assert_int_equal(auth_session_init(s, sk, 0), 0);
	assert_int_equal(auth_hello(c, &hc), 0);
	assert_int_equal(auth_hello(s, &hs), 0);
	assert_int_equal(hc.len, FW_HDR_LEN + AUTH_HELLO_MIN);
	assert_int_equal(auth_take_hello(c, hs.data + FW_HDR_LEN, hs.len - FW_HDR_LEN, &why), 0);
	assert_int_equal(auth_take_hello(s, hc.data + FW_HDR_LEN, hc.len - FW_HDR_LEN, &why), 0);
	assert_int_equal(s->role, FW_ROLE_AGENT);
	fw_buf_free(&hc);
	fw_buf_free(&hs);
}

/* Seals text from `from`; returns the frame (free it). */
static struct fw_buf seal(struct auth_session *from, const char *text)
{
	struct fw_buf b = {0};
	assert_int_equal(auth_seal(from, text, strlen(text), &b), 0);
	assert_int_equal(b.len, FW_HDR_LEN + strlen(text) + AUTH_TAG_BYTES);
	return b;
}

static long open_frame(struct auth_session *to, const struct fw_buf *f, char *out)
{
	const char *why = NULL;
	long n = auth_open(to, f->data, f->len, (uint8_t *)out, &why);
	if (n >= 0)
		out[n] = '\0';
	else
		assert_non_null(why);
	return n;
}

static void test_frames_open_once_in_order(void **state)
{
	struct auth_session c, s;
	char out[64];
	(void)state;
	pair(&c, &s, &key, &key);
	struct fw_buf f1 = seal(&c, "one"), f2 = seal(&c, "two"), f3 = seal(&c, "three");
	assert_int_equal(open_frame(&s, &f1, out), 3);
	assert_string_equal(out, "one");
	assert_int_equal(open_frame(&s, &f1, out), -1); /* replayed */
	assert_int_equal(open_frame(&s, &f3, out), -1); /* reordered: two is next */
	assert_int_equal(open_frame(&s, &f2, out), 3);
	assert_string_equal(out, "two");
	assert_int_equal(open_frame(&s, &f3, out), 5);
	/* and the other way, with its own key */
	struct fw_buf r = seal(&s, "reply");
	assert_int_equal(open_frame(&s, &r, out), -1); /* reflected to its sender */
	assert_int_equal(open_frame(&c, &r, out), 5);
	fw_buf_free(&f1);
	fw_buf_free(&f2);
	fw_buf_free(&f3);
	fw_buf_free(&r);
}

static void test_tampering_and_strangers_fail(void **state)
{
	struct auth_session c, s, c2, s2, w, sw;
	struct auth_key other = {{9}, 0, ""};
	char out[64];
	(void)state;
	pair(&c, &s, &key, &key);
	struct fw_buf f = seal(&c, "hello");
	f.data[FW_HDR_LEN + 1] ^= 1; /* payload */
	assert_int_equal(open_frame(&s, &f, out), -1);
	f.data[FW_HDR_LEN + 1] ^= 1;
	f.data[3] = FW_HELLO; /* header, which is additional data */
	assert_int_equal(open_frame(&s, &f, out), -1);
	f.data[3] = FW_SEALED;
	/* a frame recorded on another connection with the same key */
	pair(&c2, &s2, &key, &key);
	assert_int_equal(open_frame(&s2, &f, out), -1);
	assert_int_equal(open_frame(&s, &f, out), 5);
	/* a peer with another key */
	pair(&w, &sw, &other, &key);
	struct fw_buf g = seal(&w, "claim");
	assert_int_equal(open_frame(&sw, &g, out), -1);
	fw_buf_free(&f);
	fw_buf_free(&g);
}

static void test_handshake_rules(void **state)
{
	struct auth_session c, s;
	const char *why = NULL;
	uint8_t p[AUTH_HELLO_MIN] = {2};
	char out[8];
	(void)state;
	p[1 + AUTH_NONCE_BYTES] = FW_ROLE_AGENT;
	assert_int_equal(auth_session_init(&s, &key, 0), 0);
	struct fw_buf early = {0};
	assert_int_equal(auth_seal(&s, "x", 1, &early), -1); /* no keys yet */
	fw_buf_free(&early);
	assert_int_equal(auth_take_hello(&s, p, sizeof(p) - 1, &why), -1);
	p[0] = 1; /* an older version */
	assert_int_equal(auth_take_hello(&s, p, sizeof(p), &why), -1);
	p[0] = 2;
	p[1 + AUTH_NONCE_BYTES] = 9; /* no such role */
	assert_int_equal(auth_take_hello(&s, p, sizeof(p), &why), -1);
	p[1 + AUTH_NONCE_BYTES] = FW_ROLE_MONITOR; /* a monitor names its host */
	assert_int_equal(auth_take_hello(&s, p, sizeof(p), &why), -1);
	p[1 + AUTH_NONCE_BYTES] = FW_ROLE_AGENT;
	memcpy(p + 1, s.nonce, AUTH_NONCE_BYTES); /* our own nonce echoed */
	assert_int_equal(auth_take_hello(&s, p, sizeof(p), &why), -1);
	pair(&c, &s, &key, &key);
	assert_int_equal(auth_take_hello(&s, p, sizeof(p), &why), -1); /* a second one */
	struct fw_buf f = seal(&c, "ok");
	assert_int_equal(open_frame(&s, &f, out), 2);
	fw_buf_free(&f);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	unlink(path);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static void test_key_file_rules(void **state)
{
	char dir[] = "/tmp/flare-auth-XXXXXX", path[128], err[512];
	struct auth_key a, b;
	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	const char *k32 = "0123456789abcdef0123456789abcdef";
	write_file(path, k32, 0644);
	assert_int_equal(auth_key_load(path, &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, geteuid() == 0 ? "chmod 640" : "chmod 600"));
	/* root's key file may be read by its group (root:flare 0640, the
	 * package's); anyone else's must be the daemon's own */
	write_file(path, k32, 0640);
	assert_int_equal(chown(path, 0, 0) == 0 ? auth_key_load(path, &a, err, sizeof(err)) : 0, 0);
	if (geteuid() == 0) {
		assert_int_equal(chown(path, 65534, 65534), 0);
		write_file(path, k32, 0600); /* rewritten by root: root's again */
		assert_int_equal(chown(path, 65534, 65534), 0);
		assert_int_equal(auth_key_load(path, &a, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "neither to this user (0) nor to root"));
	} else {
		assert_int_equal(auth_key_load(path, &a, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "chmod 600"));
	}
	write_file(path, "short", 0600);
	assert_int_equal(auth_key_load(path, &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "this one 5"));
	write_file(path, k32, 0600);
	assert_int_equal(auth_key_load(path, &a, err, sizeof(err)), 0);
	assert_int_equal(auth_key_load(path, &b, err, sizeof(err)), 0);
	assert_memory_equal(a.k, b.k, sizeof(a.k));
	write_file(path, "0123456789abcdef0123456789abcdeF", 0400);
	assert_int_equal(auth_key_load(path, &b, err, sizeof(err)), 0);
	assert_memory_not_equal(a.k, b.k, sizeof(a.k));
	unlink(path);
	assert_int_equal(auth_key_load(path, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open"));
	rmdir(dir);
}

static void test_config_names_the_key(void **state)
{
	static const char *text =
	    "\nauth_key_file = \"secret/key\";\n"
	    "manager = { addresses = [ \"127.0.0.1:1\" ]; };\n"
	    "hosts = ( { name = \"h0\"; utilization = \"file:/nonexistent\"; } );\n"
	    "services = ( { name = \"A\"; address = \"127.0.0.1:2\"; replicas = (\n"
	    "  { name = \"A-1\"; host = \"h0\"; address = \"127.0.0.1:3\"; } ); } );\n";
	struct flare_config c;
	struct auth_key k;
	char err[512];
	(void)state;
	assert_int_equal(
	    flare_config_load_string(text, "/etc/flare/flare.conf", &c, err, sizeof(err)), 0);
	/* relative to the config's folder */
	assert_string_equal(c.auth_key_file, "/etc/flare/secret/key");
	assert_int_equal(auth_config_key(&c, &k, err, sizeof(err)), -1);
	assert_non_null(
	    strstr(err, "/etc/flare/flare.conf:2: auth_key_file /etc/flare/secret/key"));
	flare_config_free(&c);
	assert_int_equal(
	    flare_config_load_string(strstr(text, "manager"), "x.conf", &c, err, sizeof(err)), 0);
	assert_int_equal(auth_config_key(&c, &k, err, sizeof(err)), 0); /* none */
	flare_config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frames_open_once_in_order),
	    cmocka_unit_test(test_tampering_and_strangers_fail),
	    cmocka_unit_test(test_handshake_rules),
	    cmocka_unit_test(test_key_file_rules),
	    cmocka_unit_test(test_config_names_the_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
