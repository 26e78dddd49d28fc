#include "auth.h"

#include "config.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUTH_VERSION 2
#define ROLE_LABEL "flare-role-v1"
#define KEY_TEXT "flare-key 1 "
#define KEY_FILE_MIN 32
#define KEY_FILE_MAX 4096

static int parse_role_key(char *text, struct auth_key *key);

int auth_key_load(const char *path, struct auth_key *key, char *err, size_t errlen)
{
	uint8_t buf[KEY_FILE_MAX + 1];
	struct stat st;
	ssize_t n = -1;
	if (sodium_init() < 0) {
		snprintf(err, errlen, "%s: libsodium cannot start", path);
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open the key file: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		snprintf(err, errlen, "%s: the key file is not a regular file", path);
	/* PostgreSQL's rule for its key file: the daemon's own with mode 0600,
	 * or root's with 0640 (root:flare, read by the daemons' group) */
	else if (st.st_uid != geteuid() && st.st_uid != 0)
		snprintf(
		    err, errlen,
		    "%s: the key file belongs to uid %u, neither to this user (%u) nor to root",
		    path, (unsigned)st.st_uid, (unsigned)geteuid());
	else if (st.st_mode & (S_IRWXO | (st.st_uid == 0 ? S_IWGRP | S_IXGRP : S_IRWXG)))
		snprintf(err, errlen, "%s: the key file is open to %s (mode %04o): chmod %s it",
			 path,
			 st.st_uid == 0 ? "others or writable by its group" : "group or others",
			 (unsigned)(st.st_mode & 07777), st.st_uid == 0 ? "640" : "600");
	else if ((n = read(fd, buf, sizeof(buf))) < 0)
		snprintf(err, errlen, "%s: cannot read the key file: %s", path, strerror(errno));
	else if (n < KEY_FILE_MIN || n > KEY_FILE_MAX)
		snprintf(err, errlen, "%s: a key file holds %d to %d bytes, this one %zd", path,
			 KEY_FILE_MIN, KEY_FILE_MAX, n);
	close(fd);
	if (n < KEY_FILE_MIN || n > KEY_FILE_MAX) {
		sodium_memzero(buf, sizeof(buf));
		return -1;
	}
	memset(key, 0, sizeof(*key));
	int rc = 0;
	if ((size_t)n > strlen(KEY_TEXT) && memcmp(buf, KEY_TEXT, strlen(KEY_TEXT)) == 0) {
		buf[n] = '\0';
		rc = parse_role_key((char *)buf + strlen(KEY_TEXT), key);
		if (rc < 0)
			snprintf(err, errlen,
				 "%s: a role key file is \"flare-key 1 ROLE [HOST] HEX\" (ROLE "
				 "monitor, agent or operator; 64 hex digits)",
				 path);
	} else {
		crypto_generichash(key->k, sizeof(key->k), buf, (size_t)n, NULL, 0);
	}
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

static const char *const role_names[] = {"", "monitor", "agent", "operator"};

const char *auth_role_name(int role)
{
	return role > 0 && role <= FW_ROLE_CTL ? role_names[role] : "?";
}

int auth_role_parse(const char *s)
{
	for (int r = FW_ROLE_MONITOR; r <= FW_ROLE_CTL; r++)
		if (strcmp(s, role_names[r]) == 0)
			return r;
	return -1;
}

static int parse_role_key(char *text, struct auth_key *key)
{
	char *save = NULL, *words[4];
	int n = 0;
	for (char *w = strtok_r(text, " \t\r\n", &save); w && n < 4;
	     w = strtok_r(NULL, " \t\r\n", &save))
		words[n++] = w;
	if (n < 2 || strtok_r(NULL, " \t\r\n", &save))
		return -1;
	key->role = auth_role_parse(words[0]);
	int monitor = key->role == FW_ROLE_MONITOR;
	if (key->role < 0 || n != (monitor ? 3 : 2))
		return -1;
	if (monitor &&
	    snprintf(key->name, sizeof(key->name), "%s", words[1]) >= (int)sizeof(key->name))
		return -1;
	size_t bin_len = 0;
	const char *hex = words[n - 1];
	if (strlen(hex) != 2 * AUTH_KEY_BYTES ||
	    sodium_hex2bin(key->k, sizeof(key->k), hex, strlen(hex), NULL, &bin_len, NULL) < 0 ||
	    bin_len != AUTH_KEY_BYTES)
		return -1;
	return 0;
}

static void derive(const uint8_t secret[AUTH_KEY_BYTES], int role, const char *name,
		   uint8_t out[AUTH_KEY_BYTES])
{
	crypto_generichash_state st;
	uint8_t r = (uint8_t)role;
	crypto_generichash_init(&st, secret, AUTH_KEY_BYTES, AUTH_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)ROLE_LABEL, sizeof(ROLE_LABEL) - 1);
	crypto_generichash_update(&st, &r, 1);
	crypto_generichash_update(&st, (const uint8_t *)name, strlen(name));
	crypto_generichash_final(&st, out, AUTH_KEY_BYTES);
}

int auth_key_for(const struct auth_key *held, int role, const char *name, struct auth_key *out,
		 char *err, size_t errlen)
{
	const char *host = role == FW_ROLE_MONITOR ? name : "";
	memset(out, 0, sizeof(*out));
	out->role = role;
	snprintf(out->name, sizeof(out->name), "%s", host);
	if (held->role == 0) {
		derive(held->k, role, host, out->k);
		return 0;
	}
	if (held->role != role || strcmp(held->name, host) != 0) {
		snprintf(err, errlen, "the key is %s%s%s's, not %s%s%s's",
			 auth_role_name(held->role), held->name[0] ? " " : "", held->name,
			 auth_role_name(role), host[0] ? " " : "", host);
		return -1;
	}
	memcpy(out->k, held->k, sizeof(out->k));
	return 0;
}

int auth_key_format(const struct auth_key *k, char *out, size_t n)
{
	char hex[2 * AUTH_KEY_BYTES + 1];
	sodium_bin2hex(hex, sizeof(hex), k->k, sizeof(k->k));
	int w = snprintf(out, n, KEY_TEXT "%s%s%s %s\n", auth_role_name(k->role),
			 k->name[0] ? " " : "", k->name, hex);
	sodium_memzero(hex, sizeof(hex));
	return w > 0 && (size_t)w < n ? 0 : -1;
}

int auth_config_key(const struct flare_config *cfg, struct auth_key *key, char *err, size_t errlen)
{
	char why[512];
	if (!cfg->auth_key_file[0])
		return 0;
	if (auth_key_load(cfg->auth_key_file, key, why, sizeof(why)) == 0)
		return 1;
	snprintf(err, errlen, "%s:%d: auth_key_file %s", cfg->path, cfg->auth_key_line, why);
	return -1;
}

int auth_session_init(struct auth_session *s, const struct auth_key *key, int client)
{
	memset(s, 0, sizeof(*s));
	if (sodium_init() < 0)
		return -1;
	s->client = client;
	memcpy(s->key, key->k, sizeof(s->key));
	if (client) {
		s->role = key->role;
		snprintf(s->name, sizeof(s->name), "%s", key->name);
	}
	randombytes_buf(s->nonce, sizeof(s->nonce));
	return 0;
}

int auth_hello(const struct auth_session *s, struct fw_buf *b)
{
	size_t name_len = s->client ? strlen(s->name) : 0;
	uint8_t *p = fw_buf_reserve(b, FW_HDR_LEN + AUTH_HELLO_MIN + name_len);
	if (!p)
		return -1;
	fw_put_header(p, FW_AUTH, (uint32_t)(AUTH_HELLO_MIN + name_len));
	p += FW_HDR_LEN;
	p[0] = AUTH_VERSION;
	memcpy(p + 1, s->nonce, AUTH_NONCE_BYTES);
	p[1 + AUTH_NONCE_BYTES] = s->client ? (uint8_t)s->role : 0;
	p[2 + AUTH_NONCE_BYTES] = (uint8_t)name_len;
	memcpy(p + AUTH_HELLO_MIN, s->name, name_len);
	return 0;
}

int auth_take_hello(struct auth_session *s, const uint8_t *payload, size_t len, const char **why)
{
	static const char label[] = "flare-auth-v2";
	uint8_t okm[2 * AUTH_KEY_BYTES];
	if (s->keyed) {
		*why = "a second auth frame";
		return -1;
	}
	if (len < AUTH_HELLO_MIN || len > AUTH_HELLO_MAX || payload[0] != AUTH_VERSION ||
	    payload[2 + AUTH_NONCE_BYTES] != len - AUTH_HELLO_MIN) {
		*why = "malformed auth frame";
		return -1;
	}
	const uint8_t *peer = payload + 1;
	if (!s->client) {
		/* the key this peer must hold: its role's, for its name */
		int role = payload[1 + AUTH_NONCE_BYTES];
		size_t name_len = len - AUTH_HELLO_MIN;
		const uint8_t *name = payload + AUTH_HELLO_MIN;
		for (size_t i = 0; i < name_len; i++)
			if (name[i] < 0x21 || name[i] > 0x7e) {
				*why = "auth frame with a name that is not printable";
				return -1;
			}
		if (role < FW_ROLE_MONITOR || role > FW_ROLE_CTL ||
		    (role == FW_ROLE_MONITOR) != (name_len > 0)) {
			*why = "auth frame for a role that cannot talk to a manager";
			return -1;
		}
		s->role = role;
		memcpy(s->name, name, name_len);
		s->name[name_len] = '\0';
		uint8_t role_key[AUTH_KEY_BYTES];
		derive(s->key, role, s->name, role_key);
		memcpy(s->key, role_key, sizeof(s->key));
		sodium_memzero(role_key, sizeof(role_key));
	} else if (payload[1 + AUTH_NONCE_BYTES] != 0) {
		*why = "the manager's auth frame names a role";
		return -1;
	}
	if (sodium_memcmp(peer, s->nonce, AUTH_NONCE_BYTES) == 0) {
		*why = "the peer echoed our nonce";
		return -1;
	}
	crypto_generichash_state st;
	crypto_generichash_init(&st, s->key, sizeof(s->key), sizeof(okm));
	crypto_generichash_update(&st, (const uint8_t *)label, sizeof(label) - 1);
	crypto_generichash_update(&st, s->client ? s->nonce : peer, AUTH_NONCE_BYTES);
	crypto_generichash_update(&st, s->client ? peer : s->nonce, AUTH_NONCE_BYTES);
	crypto_generichash_final(&st, okm, sizeof(okm));
	/* first half: client to server */
	memcpy(s->tx, okm + (s->client ? 0 : AUTH_KEY_BYTES), AUTH_KEY_BYTES);
	memcpy(s->rx, okm + (s->client ? AUTH_KEY_BYTES : 0), AUTH_KEY_BYTES);
	sodium_memzero(okm, sizeof(okm));
	s->keyed = 1;
	return 0;
}

static void seq_nonce(uint8_t n[crypto_aead_chacha20poly1305_IETF_NPUBBYTES], uint64_t seq)
{
	memset(n, 0, crypto_aead_chacha20poly1305_IETF_NPUBBYTES);
	for (int i = 0; i < 8; i++)
		n[4 + i] = (uint8_t)(seq >> (56 - 8 * i));
}

int auth_seal(struct auth_session *s, const void *plain, size_t len, struct fw_buf *b)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
	if (!s->keyed || len > AUTH_RECORD_MAX) {
		b->err = 1;
		return -1;
	}
	uint8_t *p = fw_buf_reserve(b, FW_HDR_LEN + len + AUTH_TAG_BYTES);
	if (!p)
		return -1;
	fw_put_header(p, FW_SEALED, (uint32_t)(len + AUTH_TAG_BYTES));
	seq_nonce(nonce, s->tx_seq++);
	crypto_aead_chacha20poly1305_ietf_encrypt(p + FW_HDR_LEN, NULL, plain, len, p, FW_HDR_LEN,
						  NULL, nonce, s->tx);
	return 0;
}

long auth_open(struct auth_session *s, const uint8_t *frame, size_t len, uint8_t *out,
	       const char **why)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
	unsigned long long n = 0;
	if (!s->keyed) {
		*why = "a sealed frame before the auth frame";
		return -1;
	}
	if (len < FW_HDR_LEN + AUTH_TAG_BYTES ||
	    len - FW_HDR_LEN - AUTH_TAG_BYTES > AUTH_RECORD_MAX) {
		*why = "sealed frame of an impossible size";
		return -1;
	}
	seq_nonce(nonce, s->rx_seq);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &n, NULL, frame + FW_HDR_LEN,
						      len - FW_HDR_LEN, frame, FW_HDR_LEN, nonce,
						      s->rx) < 0) {
		*why = "a frame that does not authenticate (wrong key, replayed or reordered)";
		return -1;
	}
	s->rx_seq++;
	s->proven = 1;
	return (long)n;
}

long auth_receive(struct auth_session *s, const struct fw_hdr *h, const uint8_t *frame,
		  uint8_t *out, int *hello, const char **why)
{
	*hello = 0;
	if (h->type == FW_AUTH && !s->keyed) {
		*hello = 1;
		return auth_take_hello(s, frame + FW_HDR_LEN, h->len, why) < 0 ? -1 : 0;
	}
	if (h->type == FW_SEALED && s->keyed) {
		if (!out) {
			*why = "out of memory";
			return -1;
		}
		return auth_open(s, frame, FW_HDR_LEN + (size_t)h->len, out, why);
	}
	*why = h->type == FW_AUTH ? "a second auth frame"
	       : s->keyed         ? "an unsealed frame"
				  : "no auth frame first (is auth_key_file set on both sides?)";
	return -1;
}

void auth_session_wipe(struct auth_session *s) { sodium_memzero(s, sizeof(*s)); }

size_t auth_first_record_len(const uint8_t *p, size_t len)
{
	struct fw_hdr h;
	const char *why;
	long whole = p ? fw_frame_check(p, len, &h, &why) : 0;
	size_t n = whole > 0 ? (size_t)whole : len;
	return n < AUTH_RECORD_MAX ? n : AUTH_RECORD_MAX;
}
