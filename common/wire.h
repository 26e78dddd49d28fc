/* The control-plane wire protocol: length-prefixed frames
 *
 *   u16 magic 0xF1A3 | u8 version | u8 type | u32 payload length   (big endian)
 *
 * followed by the payload. Payload fields are big-endian integers, strings
 * as u16 length + bytes, addresses as u8 family + u16 port + 4/16 bytes.
 * Loads and utilizations travel as parts per million (u32).
 *
 * Encoders append to a growable or fixed buffer; decoders never trust a
 * length, reject trailing bytes, and return -1 with a reason on anything
 * malformed. Libc only: the library encodes registrations with it. */
#ifndef FLARE_WIRE_H
#define FLARE_WIRE_H

#include "addr.h"
#include "flare.h"

#include <stddef.h>
#include <stdint.h>

#define FW_MAGIC 0xF1A3
#define FW_VERSION 1
#define FW_HDR_LEN 8
#define FW_MAX_PAYLOAD (16u << 20)
#define FW_MAX_REG_ADDRS 32
#define FW_MAX_TEXT (15u << 20)

enum fw_type {
	FW_HELLO = 1,       /* first frame from any peer */
	FW_HEARTBEAT = 2,   /* both directions, every heartbeat interval */
	FW_REGISTER = 3,    /* server process -> monitor (UNIX socket) */
	FW_REPORT = 4,      /* monitor -> manager */
	FW_RANK = 5,        /* manager -> agent: full table or delta */
	FW_STATUS_REQ = 6,  /* flarectl -> manager */
	FW_STATUS_RESP = 7, /* manager -> flarectl */
	FW_QUERY_REQ = 8,   /* library -> agent -> manager (reactive failover) */
	FW_QUERY_RESP = 9,  /* manager -> agent -> library */
	FW_ERROR = 10,      /* a peer explains why it closes */
	/* with auth_key_file: the envelope (control/auth.h), never inside it */
	FW_AUTH = 11,    /* first frame each way: a fresh nonce */
	FW_SEALED = 12,  /* authenticated, encrypted frames */
	FW_COMMAND = 13, /* flarectl -> manager: an operator's command (text), STATUS_RESP back */
	FW_TYPE_MAX = FW_COMMAND,
};

enum fw_role {
	FW_ROLE_MONITOR = 1,
	FW_ROLE_AGENT = 2,
	FW_ROLE_CTL = 3,
	FW_ROLE_LIB = 4,
};

#define FW_LOAD_UNKNOWN 0xFFFFFFFFu

struct fw_hello {
	uint8_t role;
	uint32_t pid;
	char name[FLARE_NAME_MAX]; /* host name for monitors, free text for others */
};

struct fw_heartbeat {
	uint64_t seq;
	uint64_t time_ns; /* sender's CLOCK_MONOTONIC, for RTT only */
};

struct fw_register {
	uint32_t pid;
	uint16_t n_addrs;
	struct flare_addr addrs[FW_MAX_REG_ADDRS];
};

struct fw_report_replica {
	char name[FLARE_NAME_MAX];
	uint8_t alive;
	uint8_t registered; /* liveness comes from a registration, not a probe */
	uint8_t reason;     /* enum flare_death while dead */
	uint32_t pid;
	uint32_t load_ppm;   /* measured CPU share, FW_LOAD_UNKNOWN when not measured */
	uint32_t rate_milli; /* requests/s it serves, x1000 (data segments received) */
};

/* One client connection to a replica, for on-demand rebinding: the client's
 * address as the replica sees it and its request rate */
struct fw_report_conn {
	uint16_t replica; /* index into the report's replicas */
	struct flare_addr peer;
	uint32_t rate_milli;
};

#define FW_MAX_REPORT_CONNS 65535

struct fw_report {
	char host[FLARE_NAME_MAX];
	uint64_t seq;
	uint32_t util_ppm;
	uint32_t n_replicas;
	struct fw_report_replica *replicas;
	uint32_t n_conns;
	struct fw_report_conn *conns;
};

struct fw_rank_host {
	uint32_t idx;
	char name[FLARE_NAME_MAX];
	char monitor_socket[FLARE_SOCK_PATH_MAX];
	uint8_t alive;
	uint32_t util_ppm;
};

struct fw_rank_service {
	uint32_t idx;
	char name[FLARE_NAME_MAX];
	struct flare_addr addr;
	uint8_t strategy, failover, replay, protocol, replay_unsafe;
	uint32_t connect_timeout_ms, user_timeout_ms, replay_buffer, request_timeout_ms;
	uint16_t keepalive_idle_s, keepalive_interval_s, keepalive_count;
	uint32_t first_replica, n_replicas;
	int32_t primary;          /* local index of the primary replica, -1 when virtual */
	uint8_t balance, binding; /* enum flare_balance, enum flare_binding */
	uint32_t rebind_interval_ms, band_ppm;
	uint8_t n_order;
	uint8_t order[FLARE_MAX_REPLICAS]; /* local replica indexes, best first */
};

struct fw_rank_replica {
	uint32_t idx;
	char name[FLARE_NAME_MAX];
	struct flare_addr addr;
	uint32_t service, host;
	uint8_t alive;
	uint32_t load_ppm, weight_ppm; /* CPU share; headroom weight (spare x ramp) */
	uint32_t rate_milli;           /* smoothed requests/s x1000 */
	uint32_t ramp_ppm;             /* slow start: its share of new bindings so far */
	uint8_t flags;                 /* FLARE_REP_DRAINED */
	uint8_t reason;                /* enum flare_death while dead */
	uint8_t n_failover;
	uint8_t failover[FLARE_MAX_REPLICAS]; /* local indexes to try if this one fails */
};

/* On-demand rebinding: the connection from `client` to replica `from`
 * (global indexes) is to move to replica `to` at its next request boundary */
struct fw_move {
	struct flare_addr client;
	uint32_t from, to;
};

/* full = 1: the whole table (n_* are the totals, idx = position).
 * full = 0: only changed entries, replacing the ones at idx.
 * has_moves: the list of moves replaces the table's (always in a full one) */
struct fw_rank {
	uint8_t full;
	uint64_t gen;
	uint32_t n_hosts, n_services, n_replicas;
	struct fw_rank_host *hosts;
	struct fw_rank_service *services;
	struct fw_rank_replica *replicas;
	uint8_t has_moves;
	uint32_t n_moves;
	struct fw_move *moves;
};

struct fw_text {
	uint8_t format; /* status: 0 text, 1 json */
	uint32_t len;
	char *text; /* NUL-terminated */
};

struct fw_query {
	struct flare_addr service;
	struct flare_addr failed;
	uint8_t n_addrs; /* response: targets, best first */
	struct flare_addr addrs[FLARE_MAX_REPLICAS];
};

struct fw_msg {
	uint8_t type;
	union {
		struct fw_hello hello;
		struct fw_heartbeat heartbeat;
		struct fw_register reg;
		struct fw_report report;
		struct fw_rank rank;
		struct fw_text text; /* STATUS_REQ (format only), STATUS_RESP, ERROR, COMMAND */
		struct fw_query query;
	} u;
};

/* Output buffer: growable (fixed = 0, malloc'd) or caller-provided. */
struct fw_buf {
	uint8_t *data;
	size_t len, cap;
	int fixed;
	int err; /* set when a fixed buffer overflowed or malloc failed */
};

void fw_buf_init_fixed(struct fw_buf *b, void *mem, size_t cap);
void fw_buf_free(struct fw_buf *b);
void fw_buf_consume(struct fw_buf *b, size_t n);
/* Appends n bytes to b and returns them to fill; NULL (b->err set) when
 * a fixed buffer is full or malloc failed. */
uint8_t *fw_buf_reserve(struct fw_buf *b, size_t n);

struct fw_hdr {
	uint8_t version, type;
	uint32_t len;
};

/* Writes the 8-byte header of a frame of `type` carrying len payload bytes. */
void fw_put_header(uint8_t *out, uint8_t type, uint32_t len);

/* Returns the whole frame's length when buf holds a complete one, 0 when
 * more bytes are needed, -1 (reason in *why) for a bad header. */
long fw_frame_check(const uint8_t *buf, size_t len, struct fw_hdr *h, const char **why);

/* Decodes one payload. Returns 0, or -1 with a static reason in *why.
 * fw_msg_free releases what a decode allocated (also after a failure). */
int fw_decode(uint8_t type, const uint8_t *payload, size_t len, struct fw_msg *out,
	      const char **why);
void fw_msg_free(struct fw_msg *m);

/* Each appends one whole frame; returns 0 or -1 (b->err set). */
int fw_encode_hello(struct fw_buf *b, const struct fw_hello *m);
int fw_encode_heartbeat(struct fw_buf *b, const struct fw_heartbeat *m);
int fw_encode_register(struct fw_buf *b, const struct fw_register *m);
int fw_encode_report(struct fw_buf *b, const struct fw_report *m);
int fw_encode_rank(struct fw_buf *b, const struct fw_rank *m);
int fw_encode_text(struct fw_buf *b, uint8_t type, const struct fw_text *m);
int fw_encode_query(struct fw_buf *b, uint8_t type, const struct fw_query *m);
int fw_encode(struct fw_buf *b, const struct fw_msg *m);

const char *fw_type_name(int type);

#endif
