/* Authenticated control connections (auth_key_file), with libsodium.
 *
 * Every TCP control connection starts with one FW_AUTH frame each way:
 * u8 version | 32-byte random nonce | u8 role | u8 n | name[n] (the
 * connecting side's role and, for a monitor, its host; the manager sends
 * role 0). Each role holds its own key, derived from the deployment's
 * secret as BLAKE2b-256 keyed with the secret over "flare-role-v1" | role |
 * name: a monitor's key is for its own host, an agent's for subscribing,
 * an operator's (flarectl) for status, drain and reload. The manager holds
 * the secret and derives the key the client's role and name call for.
 * Both sides then derive two session keys (one per direction) as
 * BLAKE2b-512 keyed with that role key over "flare-auth-v2" | client nonce
 * | server nonce, and from then on send only FW_SEALED frames:
 * ChaCha20-Poly1305 (IETF) of whole inner frames, the outer header as
 * additional data, the nonce a per-direction counter.
 *
 * So a peer proves it holds the key with its first sealed frame; a frame
 * recorded on another connection does not open (the keys differ: both
 * nonces are fresh), and a frame replayed, dropped or reordered within a
 * connection does not open either (the counter moved). Nothing before the
 * first sealed frame is acted on. */
#ifndef FLARE_AUTH_H
#define FLARE_AUTH_H

#include "flare.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_BYTES 32
#define AUTH_NONCE_BYTES 32
#define AUTH_TAG_BYTES 16
#define AUTH_HELLO_MIN (1 + AUTH_NONCE_BYTES + 2)
#define AUTH_HELLO_MAX (AUTH_HELLO_MIN + FLARE_NAME_MAX - 1)
/* plaintext per sealed frame: larger writes are split */
#define AUTH_RECORD_MAX (64u << 10)

struct auth_key {
	uint8_t k[AUTH_KEY_BYTES];
	int role;                  /* 0: the deployment's secret; else the FW_ROLE_* it serves */
	char name[FLARE_NAME_MAX]; /* a monitor key's host */
};

/* Reads a key from PATH, a regular file readable by its owner only:
 * either the deployment's secret (at least 32 bytes of anything, e.g.
 * `head -c 32 /dev/urandom`; the key is the BLAKE2b hash of the whole
 * file) or one role's key as `flarectl key` writes it ("flare-key 1 ROLE
 * [HOST] HEX"). 0, or -1 with "PATH: reason" in err. */
int auth_key_load(const char *path, struct auth_key *key, char *err, size_t errlen);
/* The key of role (FW_ROLE_*) and name from a held key: derived from the
 * secret, or the held key itself when it is that role's (and host's).
 * 0, or -1 with the reason in err. */
int auth_key_for(const struct auth_key *held, int role, const char *name, struct auth_key *out,
		 char *err, size_t errlen);
/* A role key as a key file's text (one line). */
int auth_key_format(const struct auth_key *k, char *out, size_t n);
const char *auth_role_name(int role);
int auth_role_parse(const char *s);

struct flare_config;
/* The config's key: 1 loaded into key, 0 when the config names none, -1
 * with "FILE:LINE: auth_key_file PATH: reason" in err. */
int auth_config_key(const struct flare_config *cfg, struct auth_key *key, char *err, size_t errlen);

struct auth_session {
	int client; /* this side connected (it chose the first nonce) */
	int keyed;  /* the peer's nonce arrived: sealing works */
	int proven; /* a sealed frame of the peer's opened: it holds the key */
	/* a client: its role key; the manager: the secret, then the role key */
	uint8_t key[AUTH_KEY_BYTES];
	int role;                  /* a client's own; the manager: what the peer claimed */
	char name[FLARE_NAME_MAX]; /* the same for its name */
	uint8_t nonce[AUTH_NONCE_BYTES];
	uint8_t tx[AUTH_KEY_BYTES], rx[AUTH_KEY_BYTES];
	uint64_t tx_seq, rx_seq;
};

/* Draws this side's nonce; 0, or -1 when libsodium cannot start. A
 * client's key is its role key (key->role, key->name go in its hello);
 * the manager's is the deployment's secret. */
int auth_session_init(struct auth_session *s, const struct auth_key *key, int client);
/* Appends this side's FW_AUTH frame to b. */
int auth_hello(const struct auth_session *s, struct fw_buf *b);
/* Takes the peer's FW_AUTH payload and derives the session keys. */
int auth_take_hello(struct auth_session *s, const uint8_t *payload, size_t len, const char **why);
/* Appends one FW_SEALED frame holding plain (at most AUTH_RECORD_MAX). */
int auth_seal(struct auth_session *s, const void *plain, size_t len, struct fw_buf *b);
/* Opens one FW_SEALED frame (whole, header included) into out, which has
 * room for len - FW_HDR_LEN - AUTH_TAG_BYTES bytes; returns the plaintext
 * length, or -1 with *why. */
long auth_open(struct auth_session *s, const uint8_t *frame, size_t len, uint8_t *out,
	       const char **why);
/* One whole envelope frame (header h) as it arrives: the peer's nonce
 * first (*hello set), then sealed frames opened into out (room for h->len
 * bytes; the caller reserves it for FW_SEALED only). Returns the opened
 * length (0 for the nonce), or -1 with *why for anything the protocol does
 * not allow here: the peer is to be rejected. */
long auth_receive(struct auth_session *s, const struct fw_hdr *h, const uint8_t *frame,
		  uint8_t *out, int *hello, const char **why);
void auth_session_wipe(struct auth_session *s);
/* The length of the first whole frame at p (all of len when there is no
 * whole frame, capped at AUTH_RECORD_MAX): what goes in the first record. */
size_t auth_first_record_len(const uint8_t *p, size_t len);

#endif
