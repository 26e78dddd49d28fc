/* The program's SSL objects the library knows: an open-addressed table
 * from SSL * to its entry, read without a lock (one probe on the common
 * path), changed under a mutex. An entry exists for a session linked to a
 * managed connection, or one whose ALPN list the program set (a heal must
 * repeat it). A full table leaves new sessions alone: they pass through,
 * with connect-time failover only. */
#include "core.h"
#include "lock.h"
#include "log.h"

#include "conn/conn.h"
#include "conn/fdtab.h"
#include "tls/tls.h"
#include "tls/tls_call.h"

#include <stdlib.h>
#include <string.h>

#define TLS_SLOTS 4096 /* a power of two; at most half of it used */
#define TOMB ((SSL *)1)

static struct slot {
	SSL *key;
	struct tls_sess *val;
} slots[TLS_SLOTS];
static pthread_mutex_t table_lock = PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP;
static unsigned used; /* slots holding a key or a tombstone [table_lock] */
int flare_tls_sessions;
int flare_tls_swapped;
int flare_tls_healing;
__thread struct tls_call flare_tls_call __attribute__((tls_model("initial-exec")));

static unsigned slot_of(const SSL *ssl)
{
	uintptr_t h = (uintptr_t)ssl >> 4;
	h ^= h >> 17;
	h *= 0x9e3779b97f4a7c15ull;
	return (unsigned)(h >> 40) & (TLS_SLOTS - 1);
}

struct tls_sess *tls_find(const SSL *ssl)
{
	for (unsigned i = slot_of(ssl), n = 0; n < TLS_SLOTS; i = (i + 1) & (TLS_SLOTS - 1), n++) {
		SSL *k = __atomic_load_n(&slots[i].key, __ATOMIC_ACQUIRE);
		if (k == ssl)
			return __atomic_load_n(&slots[i].val, __ATOMIC_ACQUIRE);
		if (!k)
			return NULL;
	}
	return NULL;
}

struct tls_sess *tls_get(SSL *ssl)
{
	struct tls_sess *t = tls_find(ssl);
	if (t)
		return t;
	if (flare_lock(&table_lock) == EDEADLK)
		return NULL; /* a handler inside the table (lock.h): not tracked, not healed */
	/* tombstones go when the last entry does; until then misses probe
	 * past them, so the table stops taking entries at three quarters */
	if (!flare_tls_sessions && used) {
		memset(slots, 0, sizeof(slots));
		used = 0;
	}
	if ((t = tls_find(ssl)) != NULL || used >= TLS_SLOTS / 4 * 3) {
		flare_unlock(&table_lock);
		if (!t)
			log_warn("TLS: %d sessions known already: a new one is not healed",
				 flare_tls_sessions);
		return t;
	}
	t = calloc(1, sizeof(*t));
	if (t) {
		flare_mutex_init(&t->lock);
		t->prog = t->cur = ssl;
		unsigned i = slot_of(ssl);
		while (slots[i].key && slots[i].key != TOMB)
			i = (i + 1) & (TLS_SLOTS - 1);
		if (!slots[i].key)
			used++;
		__atomic_store_n(&slots[i].val, t, __ATOMIC_RELEASE);
		__atomic_store_n(&slots[i].key, ssl, __ATOMIC_RELEASE);
		__atomic_add_fetch(&flare_tls_sessions, 1, __ATOMIC_RELEASE);
	}
	flare_unlock(&table_lock);
	return t;
}

void tls_lock(struct tls_sess *t)
{
	if (flare_threaded())
		flare_lock(&t->lock);
}

void tls_unlock(struct tls_sess *t)
{
	if (flare_threaded())
		flare_unlock(&t->lock);
}

void tls_forget(SSL *ssl)
{
	/* a handler's SSL_free inside the table (lock.h): the entry stays until
	 * the SSL address is reused or forgotten again; it is never healed */
	if (flare_lock(&table_lock) == EDEADLK)
		return;
	struct tls_sess *t = NULL;
	for (unsigned i = slot_of(ssl), n = 0; n < TLS_SLOTS; i = (i + 1) & (TLS_SLOTS - 1), n++) {
		if (slots[i].key == ssl) {
			t = slots[i].val;
			__atomic_store_n(&slots[i].key, TOMB, __ATOMIC_RELEASE);
			break;
		}
		if (!slots[i].key)
			break;
	}
	if (t)
		__atomic_sub_fetch(&flare_tls_sessions, 1, __ATOMIC_RELEASE);
	flare_unlock(&table_lock);
	if (!t)
		return;
	tls_lock(t);
	struct fconn *fc = tls_conn(t);
	if (fc) {
		__atomic_store_n(&fc->tls.sess, NULL, __ATOMIC_RELEASE);
		__atomic_store_n(&fc->tls.mode, FT_OFF, __ATOMIC_RELEASE);
	}
	if (t->step != HS_NONE && t->step != HS_FAILED)
		__atomic_sub_fetch(&flare_tls_healing, 1, __ATOMIC_RELEASE);
	if (t->next)
		tls_shadow_free(t, t->next, t->next_exdata);
	if (t->cur != t->prog)
		tls_shadow_free(t, t->cur, t->exdata_set);
	tls_unlock(t);
	/* the program frees an SSL once, on the thread that used it last: no
	 * other thread holds this entry now */
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void tls_atfork_child(void)
{
	tls_sym_atfork_child();
	flare_mutex_init(&table_lock);
	for (unsigned i = 0; i < TLS_SLOTS; i++)
		if (slots[i].key && slots[i].key != TOMB)
			flare_mutex_init(&slots[i].val->lock);
}

int tls_each_healing(int (*f)(struct tls_sess *))
{
	/* under the table's lock: an entry is freed only once it is out of
	 * the table (tls_forget), so none goes while f looks at it */
	if (flare_trylock(&table_lock) != 0)
		return 1;
	int left = 0;
	for (unsigned i = 0; i < TLS_SLOTS; i++) {
		SSL *k = __atomic_load_n(&slots[i].key, __ATOMIC_ACQUIRE);
		if (!k || k == TOMB)
			continue;
		struct tls_sess *t = __atomic_load_n(&slots[i].val, __ATOMIC_ACQUIRE);
		int st = __atomic_load_n(&t->step, __ATOMIC_ACQUIRE);
		if (st != HS_NONE && st != HS_FAILED)
			left += f(t);
	}
	flare_unlock(&table_lock);
	return left;
}
