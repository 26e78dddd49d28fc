#include "auth.h"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AUTH_VERSION 1
#define KEY_FILE_MIN 32
#define KEY_FILE_MAX 4096

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
	else if (st.st_mode & (S_IRWXG | S_IRWXO))
		snprintf(err, errlen,
			 "%s: the key file is open to group or others (mode %04o): chmod 600 it",
			 path, (unsigned)(st.st_mode & 07777));
	else if (st.st_uid != geteuid())
		snprintf(err, errlen, "%s: the key file belongs to uid %u, not to this user (%u)",
			 path, (unsigned)st.st_uid, (unsigned)geteuid());
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
	crypto_generichash(key->k, sizeof(key->k), buf, (size_t)n, NULL, 0);
	sodium_memzero(buf, sizeof(buf));
	return 0;
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
	randombytes_buf(s->nonce, sizeof(s->nonce));
	return 0;
}

int auth_hello(const struct auth_session *s, struct fw_buf *b)
{
	uint8_t *p = fw_buf_reserve(b, FW_HDR_LEN + AUTH_HELLO_LEN);
	if (!p)
		return -1;
	fw_put_header(p, FW_AUTH, AUTH_HELLO_LEN);
	p[FW_HDR_LEN] = AUTH_VERSION;
	memcpy(p + FW_HDR_LEN + 1, s->nonce, AUTH_NONCE_BYTES);
	return 0;
}

int auth_take_hello(struct auth_session *s, const uint8_t *payload, size_t len, const char **why)
{
	static const char label[] = "flare-auth-v1";
	uint8_t okm[2 * AUTH_KEY_BYTES];
	if (s->keyed) {
		*why = "a second auth frame";
		return -1;
	}
	if (len != AUTH_HELLO_LEN || payload[0] != AUTH_VERSION) {
		*why = "malformed auth frame";
		return -1;
	}
	const uint8_t *peer = payload + 1;
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
