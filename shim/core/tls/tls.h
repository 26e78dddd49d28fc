/* TLS sessions inside the program's OpenSSL (libssl 3), healed like
 * plaintext ones. The library links nothing but libc: every OpenSSL
 * function it calls is found at run time with dlsym (tls_sym.c), only in a
 * program that has libssl loaded, and only when it is OpenSSL 3.
 *
 * A program's SSL is *linked* to its managed connection when its handshake
 * completes inside one of the hooked calls and the connection's bytes are
 * exactly that session's (tls_link.c): from then on the socket hooks leave
 * the connection's exchange alone, and the SSL hooks (shim/lib/ssl_*.c)
 * feed the plaintext to it, so the framers and the session log run on the
 * plaintext with the plaintext's rules. A failure of the socket under a
 * linked session surfaces to OpenSSL as the kernel gave it; the SSL hook
 * that sees OpenSSL fail on it heals (tls_heal.c): a new TCP connection to
 * the next replica, a new SSL from the program's own SSL_CTX with the
 * program's session settings (tls_shadow.c), a full handshake that must
 * verify as the program's own did and present the very certificate the
 * program accepted, the session log, the outstanding requests; the
 * program's SSL * then reads and writes through the new session. */
#ifndef FLARE_TLS_H
#define FLARE_TLS_H

#include "conn/conn.h"
#include "frame/frame.h"
#include "tls/tls_call.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <stdint.h>

/* ---- tls_sym.c: OpenSSL, found at run time ---- */
/* X(name): the functions the library calls. The hooked ones (tls_hooked)
 * are looked up past libflare.so (RTLD_NEXT), the others wherever they are. */
#define FLARE_TLS_HOOKED(X)                                                                        \
	X(SSL_read)                                                                                \
	X(SSL_read_ex)                                                                             \
	X(SSL_peek)                                                                                \
	X(SSL_peek_ex)                                                                             \
	X(SSL_write)                                                                               \
	X(SSL_write_ex)                                                                            \
	X(SSL_connect)                                                                             \
	X(SSL_do_handshake)                                                                        \
	X(SSL_get_error)                                                                           \
	X(SSL_pending)                                                                             \
	X(SSL_has_pending) X(SSL_shutdown) X(SSL_free) X(SSL_clear) X(SSL_set_alpn_protos)         \
	    X(SSL_get_shutdown) X(SSL_is_init_finished) X(SSL_in_init) X(SSL_in_before)            \
		X(SSL_get_state) X(SSL_want)
#define FLARE_TLS_CALLED(X)                                                                        \
	X(OpenSSL_version_num)                                                                     \
	X(SSL_new)                                                                                 \
	X(SSL_get_SSL_CTX)                                                                         \
	X(SSL_ctrl)                                                                                \
	X(SSL_get_servername)                                                                      \
	X(SSL_get0_param)                                                                          \
	X(X509_VERIFY_PARAM_set1)                                                                  \
	X(X509_VERIFY_PARAM_set_inh_flags)                                                         \
	X(X509_VERIFY_PARAM_get_depth)                                                             \
	X(X509_VERIFY_PARAM_get_flags)                                                             \
	X(X509_VERIFY_PARAM_get_hostflags) X(X509_VERIFY_PARAM_get0_host) X(SSL_get_verify_mode)   \
	    X(SSL_get_verify_callback) X(SSL_set_verify) X(SSL_get_options) X(SSL_set_options) X(  \
		SSL_clear_options) X(SSL_get_certificate) X(SSL_get_privatekey)                    \
		X(SSL_use_certificate) X(SSL_use_PrivateKey) X(SSL_get_ex_data) X(SSL_set_ex_data) \
		    X(SSL_set_connect_state) X(SSL_is_server) X(SSL_get_verify_result)             \
			X(SSL_get0_peer_certificate) X(X509_cmp) X(SSL_get0_alpn_selected) X(      \
			    SSL_version) X(SSL_get_rbio) X(SSL_get_wbio) X(BIO_number_read)        \
			    X(BIO_number_written) X(BIO_new) X(BIO_free) X(BIO_s_mem) X(BIO_read)  \
				X(BIO_ctrl) X(BIO_new_socket) X(SSL_set_bio) X(ERR_set_mark)       \
				    X(ERR_pop_to_mark) X(ERR_clear_error) X(ERR_peek_last_error)   \
					X(ERR_error_string_n) X(SSL_get_cipher_list)               \
					    X(SSL_get_security_level) X(SSL_set_security_level)    \
						X(SSL_get_info_callback) X(SSL_set_info_callback)  \
						    X(SSL_get0_dane_authority)                     \
							X(SSL_ct_is_enabled)                       \
							    X(X509_verify_cert_error_string)
#define FLARE_TLS_PTR(name) __typeof__(name) *name;
struct tls_fns {
	FLARE_TLS_HOOKED(FLARE_TLS_PTR)
	FLARE_TLS_CALLED(FLARE_TLS_PTR)
};
#undef FLARE_TLS_PTR
extern struct tls_fns ossl;
/* Resolves them once; 1 when every one was found in an OpenSSL 3, and
 * sessions may be linked. The hooked ones alone are enough to pass
 * everything through (tls_passthrough). */
int tls_usable(void);
void tls_resolve(void);
/* The function `name` as its caller (a return address) would have bound
 * it without flare: the first definition in the global scope after this
 * library, else in the caller's own dependencies (an RTLD_LOCAL load).
 * resolved is the library's own look-up of it; cache holds the answers
 * per call site (TLS_CALLER_CACHE of them; past that, the library's own
 * look-up when it has one: no look-up per call). NULL when there is none. */
#define TLS_CALLER_CACHE 64
struct tls_caller {
	const void *site; /* [atom] published after fn */
	void *fn;
};
void *tls_next_for(const char *name, void *resolved, const void *site, struct tls_caller *cache);
/* where a site's probe of the cache starts */
static inline unsigned tls_site_slot(const void *site)
{
	return (unsigned)(((uintptr_t)site * 0x9E3779B97F4A7C15ull) >> 58) % TLS_CALLER_CACHE;
}
/* tls_next_for, its first probe inline: OpenSSL calls the state hooks
 * itself, through its PLT, several times a request. *resolved is read
 * once tls_resolve has run. */
static inline void *tls_next(const char *name, void *const *resolved, const void *site,
			     struct tls_caller *cache)
{
	struct tls_caller *c = &cache[tls_site_slot(site)];
	if (__atomic_load_n(&c->site, __ATOMIC_ACQUIRE) == site)
		return c->fn;
	tls_resolve();
	return tls_next_for(name, *resolved, site, cache);
}
void tls_sym_atfork_child(void);
extern int flare_tls_resolved; /* [atom] tls_resolve has run */

/* ---- tls_table.c: the program's SSL objects the library knows ---- */
/* What a heal is doing (tls_heal.c), step by step */
enum tls_step {
	HS_NONE,       /* the session in use works (or never failed) */
	HS_DIAL,       /* the next replica is to be dialed */
	HS_CONNECTING, /* its TCP connect is under way */
	HS_HELLO,      /* the new session's ClientHello is being sent */
	HS_HANDSHAKE,  /* the handshake goes on */
	HS_SESSION,    /* the session log is replayed, its replies read and checked */
	HS_REPLAY,     /* the outstanding requests are resent */
	HS_FAILED      /* no replica took over: the failure is the program's */
};

#define TLS_HELLO_MAX 4096
#define TLS_EXDATA 16 /* the program's ex_data indexes a new session carries */

struct tls_sess {
	SSL *prog;        /* the program's own SSL (the table's key) */
	SSL *cur;         /* the session it reads and writes through: prog, or one of ours */
	SSL *next;        /* the session a heal is making */
	struct fconn *fc; /* its managed connection, while fc->tls.sess says so */
	pthread_mutex_t lock;
	int step;                 /* enum tls_step */
	int synth;                /* the SSL_get_error code of the hook's own -1 (0: ask OpenSSL) */
	int fail_errno;           /* what a failed heal surfaces (errno of SSL_ERROR_SYSCALL) */
	int orig_err, orig_errno; /* the failure the heal began with */
	int blocking;             /* the heal under way waits (the program's descriptor blocks) */
	/* the heal's candidates, and where it is in them */
	uint8_t order[FLARE_MAX_REPLICAS + 1];
	int n_order, k, idx, from_idx;
	uint64_t t0_ns, deadline_ms;
	char why[64];
	/* the new session's first flight, made in the program's call, sent once
	 * the socket is connected (from anywhere: it is only bytes) */
	uint8_t hello[TLS_HELLO_MAX];
	uint32_t hello_len, hello_off;
	/* the replay: session log entry at sess_at (sent up to sess_sent, or its
	 * reply being read), then buf[off, len) */
	uint32_t sess_at, sess_sent, sess_got_len, sess_len, from, off, len;
	uint8_t sess_reading;
	uint8_t sess_got[FLARE_SESSION_REPLY];
	struct fr_rep sess_frp;
	/* counters of the socket when the session in use began on it */
	uint64_t rd_base, wr_base;
	/* the ALPN list the program set on its SSL (SSL_set_alpn_protos) */
	uint8_t alpn[256];
	uint16_t alpn_len;
	uint8_t alpn_set;
	uint16_t exdata_set; /* indexes copied into cur/next, cleared before they are freed */
	uint16_t next_exdata;
};

extern int flare_tls_sessions; /* [atom] entries in the table: 0 keeps every hook plain */
/* The entry of ssl, or NULL: one probe on the common path. */
struct tls_sess *tls_find(const SSL *ssl);
/* The entry of ssl, made when missing (NULL when the table is full). */
struct tls_sess *tls_get(SSL *ssl);
/* [atom] a heal moved some session to a new SSL object of ours (sticky):
 * until then every object the program holds is the one in use */
extern int flare_tls_swapped;
/* The entry of a session the program passes to a hook, when the library
 * knows any (one load otherwise). */
static inline struct tls_sess *tls_known(const SSL *ssl)
{
	return __atomic_load_n(&flare_tls_sessions, __ATOMIC_ACQUIRE) ? tls_find(ssl) : NULL;
}
/* Forgets ssl: its sessions of ours are freed, its connection let go. */
void tls_forget(SSL *ssl);
void tls_lock(struct tls_sess *t);
void tls_unlock(struct tls_sess *t);
/* Calls f on every entry whose heal is under way (wait hooks). */
int tls_each_healing(int (*f)(struct tls_sess *));

/* A hooked call's context (flare_tls_call, tls_call.h): the managed
 * descriptor its BIO touches is how a session finds its connection. A call
 * inside another (TLS inside TLS) marks the outer one's as mixed. */
static inline void tls_call_enter(const SSL *s, struct tls_call *saved)
{
	*saved = flare_tls_call;
	flare_tls_call = (struct tls_call){.ssl = s, .fd = -1, .depth = 1};
}
static inline void tls_call_leave(const struct tls_call *saved)
{
	int touched = flare_tls_call.fc != NULL;
	flare_tls_call = *saved;
	if (saved->depth && touched)
		flare_tls_call.mixed = 1;
}

/* ---- tls_link.c ---- */
/* After a hooked call on ssl: links it to the connection its BIO used when
 * its handshake is complete and the connection carries exactly it. */
void tls_maybe_link(SSL *ssl);
/* The connection of a linked entry, or NULL (closed, recycled, unlinked). */
struct fconn *tls_conn(struct tls_sess *t);
/* The connection's descriptor that sessions of ours read and write */
int tls_fd(struct tls_sess *t);

/* ---- tls_shadow.c: a new session made like the program's ---- */
/* A new client SSL from prog's SSL_CTX with prog's SNI name, ALPN list,
 * verification parameters and mode, options, protocol bounds, security
 * level and client certificate; NULL (logged) when prog's settings cannot
 * be carried over exactly. */
SSL *tls_shadow_new(struct tls_sess *t);
/* Frees one of our sessions (the program's ex_data taken off it first). */
void tls_shadow_free(struct tls_sess *t, SSL *s, uint16_t exdata);
/* Does the new session's peer prove what the program's proved: the same
 * verification result, the very certificate, the same protocol (ALPN)
 * and version? 0, or -1 with the reason in why. */
int tls_same_peer(struct tls_sess *t, SSL *s, char *why, size_t n);

/* ---- tls_heal.c ---- */
/* A hooked I/O call on t (a read or peek when reading) saw OpenSSL fail
 * with SSL_get_error code err: heals when the socket failed under it and
 * the plaintext exchange allows (a read: only with a request outstanding).
 * 1: healed, retry the call; 0: a heal is under way (the hook returns -1
 * with t->synth); -1: the failure is the program's. [t locked] */
int tls_on_failure(struct tls_sess *t, int reading, int err);
/* Moves a heal under way on, from the program's own call on its SSL: 1
 * healed, 0 still under way (t->synth set), -1 failed (t->synth set). */
int tls_heal_continue(struct tls_sess *t);
/* A hooked call on a session whose heal is under way moves it on first:
 * 1 when the call may go on (healed, or none under way), else 0 with errno
 * and t->synth set as the call reports. [t locked] */
int tls_ready(struct tls_sess *t);
/* The socket hooks' part for a linked connection: a failure of its
 * socket, seen by the BIO (the SSL hook decides); for watch.c, a heal
 * asked of a linked connection shuts the socket's reading side so that
 * OpenSSL meets the failure in the program's call. */

#endif
