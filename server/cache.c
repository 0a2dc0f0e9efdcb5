/* cache: sharded LRU maps with epoch-guarded inserts (see cache.h). */
#include "cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* 32 bytes of header: no stored hash (an eviction recomputes it from the
 * key, which for tokens is a load), so that a token entry (header, key,
 * payload, three short strings) stays in a 160-byte malloc chunk. */
typedef struct centry {
    struct centry *hnext;         /* hash chain */
    struct centry *lprev, *lnext; /* LRU list, most recent first */
    uint16_t klen;
    uint32_t stamp; /* the shard's clock when last moved to the front */
    /* Key then value, in one allocation: key bytes, padding to 8, payload
     * (which holds 8-byte fields and so must be aligned). */
    uint8_t data[] __attribute__((aligned(8)));
} centry_t;

#define CACHE_PAYLOAD(e) ((e)->data + CACHE_PAD((e)->klen))
#define CACHE_PAD(n)     (((size_t)(n) + 7) & ~(size_t)7)

typedef struct {
    pthread_mutex_t lock;
    centry_t **buckets;
    size_t nbuckets, count, cap;
    centry_t *head, *tail;
    _Atomic uint64_t epoch; /* written under the lock; cache_mark_current reads it without */
    uint32_t clock;         /* counts moves to the front */
} cshard_t;

typedef struct {
    cshard_t shards[CACHE_SHARDS];
    int digest_keys; /* keys are SHA-256 digests: their first bytes are the hash */
    /* Counts invalidations of any shard, bumped under the shard's lock: the
     * epoch of a reader that did not know the key before it read. */
    _Atomic uint64_t changes;
} cmap_t;

struct cache {
    cmap_t tokens, users;
    size_t capacity;
    _Atomic uint64_t hits, misses, evictions, prepared;
    /* A clustered store's fence: entries are answers only while
     * CLOCK_MONOTONIC is before this (UINT64_MAX: always). */
    _Atomic uint64_t serve_until;
};

static int cache_fenced(cache_t *c)
{
    uint64_t until = atomic_load_explicit(&c->serve_until, memory_order_acquire);
    if (__builtin_expect(until == UINT64_MAX, 1)) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec >= until;
}

/* The token payload stored after the 32-byte key. */
typedef struct {
    uint64_t id;
    int64_t created, expiration;
    int32_t kind;
    uint8_t scim, active;
    uint16_t name_len, owner_len, by_len; /* strings follow, NUL-terminated */
} ctok_t;

typedef struct {
    int32_t role, user_type;
    int64_t created;
    uint8_t active;
    uint16_t lens[4]; /* user_name, email, name, created_by; strings follow */
} cusr_t;

static uint64_t cache_hash(const cmap_t *m, const void *key, size_t len)
{
    if (m->digest_keys) { /* already uniform: no need to mix them again */
        uint64_t h;
        memcpy(&h, key, sizeof(h));
        return h;
    }
    /* FNV-1a for user ids. */
    const uint8_t *p = key;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* Buckets start few and double as entries come (at most one per bucket on
 * average): sized for the capacity up front, a cache of 100k holding a hot
 * set of 10k spread it over a 1 MiB array, one cache miss per lookup more
 * than a table that fits the CPU's cache. */
#define CMAP_BUCKETS_MIN 64

static void cmap_init(cmap_t *m, size_t capacity)
{
    size_t per = capacity / CACHE_SHARDS + 1;
    size_t nb = CMAP_BUCKETS_MIN;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        cshard_t *s = &m->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->nbuckets = nb;
        s->buckets = calloc(nb, sizeof(*s->buckets));
        if (s->buckets == NULL) abort();
        s->cap = capacity ? per : 0;
    }
}

static void cmap_destroy(cmap_t *m)
{
    for (int i = 0; i < CACHE_SHARDS; i++) {
        cshard_t *s = &m->shards[i];
        for (centry_t *e = s->head, *n; e; e = n) {
            n = e->lnext;
            free(e);
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
}

static cshard_t *cmap_shard(cmap_t *m, uint64_t h)
{
    return &m->shards[(h >> 58) % CACHE_SHARDS];
}

/* Caller holds the shard lock. */
static centry_t **cmap_slot(cshard_t *s, uint64_t h, const void *key, size_t klen)
{
    centry_t **pp = &s->buckets[h & (s->nbuckets - 1)];
    while (*pp && !((*pp)->klen == klen && memcmp((*pp)->data, key, klen) == 0))
        pp = &(*pp)->hnext;
    return pp;
}

/* Doubles a shard's buckets; caller holds the shard lock. Each entry moves
 * once per doubling, so growing to n entries costs O(n) in all. */
static void cmap_grow(const cmap_t *m, cshard_t *s)
{
    size_t nb = s->nbuckets * 2;
    centry_t **b = calloc(nb, sizeof(*b));
    if (b == NULL) abort();
    for (centry_t *e = s->head; e; e = e->lnext) {
        centry_t **slot = &b[cache_hash(m, e->data, e->klen) & (nb - 1)];
        e->hnext = *slot;
        *slot = e;
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

static void lru_unlink(cshard_t *s, centry_t *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        s->head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        s->tail = e->lprev;
}

static void lru_push(cshard_t *s, centry_t *e)
{
    e->stamp = ++s->clock;
    e->lprev = NULL;
    e->lnext = s->head;
    if (s->head) s->head->lprev = e;
    s->head = e;
    if (s->tail == NULL) s->tail = e;
}

static void cmap_remove(cshard_t *s, centry_t **pp)
{
    centry_t *e = *pp;
    *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    free(e);
}

/* Looks up key; copies the payload out with copy(). Returns 1 on a hit. */
static int cmap_get(cache_t *c, cmap_t *m, const void *key, size_t klen,
                    void (*copy)(const uint8_t *payload, void *out), void *out, uint64_t *epoch,
                    int count_miss)
{
    uint64_t h = cache_hash(m, key, klen);
    cshard_t *s = cmap_shard(m, h);
    int fenced = cache_fenced(c);
    pthread_mutex_lock(&s->lock);
    centry_t *e = fenced ? NULL : *cmap_slot(s, h, key, klen);
    if (e) {
        /* A hit moves the entry to the front only once it has aged past a
         * quarter of the shard (memcached bumps items the same way): a hot
         * set that fits is then read without writing to the entry or
         * touching its neighbours, and it still never reaches the tail. */
        if ((uint32_t)(s->clock - e->stamp) > s->cap / 4) {
            lru_unlink(s, e);
            lru_push(s, e);
        }
        copy(CACHE_PAYLOAD(e), out);
    }
    if (epoch) *epoch = atomic_load_explicit(&s->epoch, memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    if (e)
        atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
    else if (count_miss)
        atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
    return e != NULL;
}

/* epoch: the shard's, or with any_shard the map's count of changes. */
static void cmap_put(cache_t *c, cmap_t *m, const void *key, size_t klen, const void *payload,
                     size_t plen, uint64_t epoch, int any_shard)
{
    uint64_t h = cache_hash(m, key, klen);
    cshard_t *s = cmap_shard(m, h);
    if (s->cap == 0) return;
    centry_t *e = malloc(sizeof(*e) + CACHE_PAD(klen) + plen);
    if (e == NULL) abort();
    e->klen = (uint16_t)klen;
    memcpy(e->data, key, klen);
    memcpy(CACHE_PAYLOAD(e), payload, plen);
    pthread_mutex_lock(&s->lock);
    if (any_shard ? atomic_load(&m->changes) != epoch
                  : atomic_load_explicit(&s->epoch, memory_order_relaxed) != epoch) {
        /* A write invalidated this shard since the reader looked: what it
         * read may be older than that write, so it must not be cached. */
        pthread_mutex_unlock(&s->lock);
        free(e);
        return;
    }
    centry_t **pp = cmap_slot(s, h, key, klen);
    if (*pp) cmap_remove(s, pp);
    e->hnext = *pp;
    *pp = e;
    lru_push(s, e);
    s->count++;
    if (s->count > s->nbuckets) cmap_grow(m, s);
    while (s->count > s->cap) {
        centry_t *old = s->tail;
        cmap_remove(s, cmap_slot(s, cache_hash(m, old->data, old->klen), old->data, old->klen));
        atomic_fetch_add_explicit(&c->evictions, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
}

static void cmap_invalidate(cmap_t *m, const void *key, size_t klen)
{
    uint64_t h = cache_hash(m, key, klen);
    cshard_t *s = cmap_shard(m, h);
    pthread_mutex_lock(&s->lock);
    centry_t **pp = cmap_slot(s, h, key, klen);
    if (*pp) cmap_remove(s, pp);
    atomic_fetch_add_explicit(&s->epoch, 1, memory_order_release);
    atomic_fetch_add(&m->changes, 1);
    pthread_mutex_unlock(&s->lock);
}

static void cmap_clear(cmap_t *m)
{
    for (int i = 0; i < CACHE_SHARDS; i++) {
        cshard_t *s = &m->shards[i];
        pthread_mutex_lock(&s->lock);
        while (s->head)
            cmap_remove(s, cmap_slot(s, cache_hash(m, s->head->data, s->head->klen), s->head->data,
                                     s->head->klen));
        atomic_fetch_add_explicit(&s->epoch, 1, memory_order_release);
        atomic_fetch_add(&m->changes, 1);
        pthread_mutex_unlock(&s->lock);
    }
}

cache_t *cache_new(size_t capacity)
{
    cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL) abort();
    c->capacity = capacity;
    atomic_init(&c->serve_until, UINT64_MAX);
    cmap_init(&c->tokens, capacity);
    c->tokens.digest_keys = 1;
    cmap_init(&c->users, capacity * 2);
    return c;
}

void cache_free(cache_t *c)
{
    if (c == NULL) return;
    cmap_destroy(&c->tokens);
    cmap_destroy(&c->users);
    free(c);
}

/* ---------------------------------------------------------------- tokens */

/* The entries' strings were cut to the fields' sizes when put. */
static void cache_copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap) len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void ctok_copy(const uint8_t *p, void *out)
{
    const ctok_t *t = (const ctok_t *)p;
    store_token_t *o = out;
    o->id = t->id;
    o->created = t->created;
    o->expiration = t->expiration;
    o->kind = t->kind;
    o->scim = t->scim;
    o->active = t->active;
    const char *s = (const char *)(t + 1);
    cache_copy_str(o->name, sizeof(o->name), s, t->name_len);
    s += t->name_len + 1;
    cache_copy_str(o->owner_id, sizeof(o->owner_id), s, t->owner_len);
    s += t->owner_len + 1;
    cache_copy_str(o->created_by, sizeof(o->created_by), s, t->by_len);
}

int cache_token_get(cache_t *c, const uint8_t hash[STORE_HASH_BYTES], store_token_t *out,
                    uint64_t *epoch, int count_miss)
{
    int hit = cmap_get(c, &c->tokens, hash, STORE_HASH_BYTES, ctok_copy, out, epoch, count_miss);
    if (hit) memcpy(out->hash, hash, STORE_HASH_BYTES);
    return hit;
}

void cache_token_put(cache_t *c, const store_token_t *t, uint64_t epoch)
{
    ctok_t h = {.id = t->id,
                .created = t->created,
                .expiration = t->expiration,
                .kind = t->kind,
                .scim = (uint8_t)t->scim,
                .active = (uint8_t)t->active};
    h.name_len = (uint16_t)strnlen(t->name, STORE_NAME_MAX);
    h.owner_len = (uint16_t)strnlen(t->owner_id, STORE_ID_MAX);
    h.by_len = (uint16_t)strnlen(t->created_by, STORE_ID_MAX);
    size_t plen = sizeof(h) + h.name_len + h.owner_len + h.by_len + 3;
    uint8_t buf[sizeof(ctok_t) + STORE_NAME_MAX + 2 * STORE_ID_MAX + 3];
    memcpy(buf, &h, sizeof(h));
    char *s = (char *)buf + sizeof(h);
    memcpy(s, t->name, h.name_len);
    s[h.name_len] = '\0';
    s += h.name_len + 1;
    memcpy(s, t->owner_id, h.owner_len);
    s[h.owner_len] = '\0';
    s += h.owner_len + 1;
    memcpy(s, t->created_by, h.by_len);
    s[h.by_len] = '\0';
    cmap_put(c, &c->tokens, t->hash, STORE_HASH_BYTES, buf, plen, epoch, 0);
}

void cache_token_invalidate(cache_t *c, const uint8_t hash[STORE_HASH_BYTES])
{
    cmap_invalidate(&c->tokens, hash, STORE_HASH_BYTES);
}

/* ---------------------------------------------------------------- users */

static void cusr_copy(const uint8_t *p, void *out)
{
    const cusr_t *u = (const cusr_t *)p;
    store_user_t *o = out;
    o->role = u->role;
    o->user_type = u->user_type;
    o->created = u->created;
    o->active = u->active;
    const char *s = (const char *)(u + 1);
    char *dst[4] = {o->user_name, o->email, o->name, o->created_by};
    size_t caps[4] = {sizeof(o->user_name), sizeof(o->email), sizeof(o->name),
                      sizeof(o->created_by)};
    for (int i = 0; i < 4; i++) {
        cache_copy_str(dst[i], caps[i], s, u->lens[i]);
        s += u->lens[i] + 1;
    }
}

int cache_user_get(cache_t *c, const char *user_id, store_user_t *out, uint64_t *epoch,
                   int count_miss)
{
    size_t len = strlen(user_id);
    int hit = cmap_get(c, &c->users, user_id, len, cusr_copy, out, epoch, count_miss);
    if (hit) cache_copy_str(out->user_id, sizeof(out->user_id), user_id, len);
    return hit;
}

static void cache_user_insert(cache_t *c, const store_user_t *u, uint64_t epoch, int any_shard)
{
    cusr_t h = {.role = u->role,
                .user_type = u->user_type,
                .created = u->created,
                .active = (uint8_t)u->active};
    const char *strs[4] = {u->user_name, u->email, u->name, u->created_by};
    const size_t caps[4] = {sizeof(u->user_name) - 1, sizeof(u->email) - 1, sizeof(u->name) - 1,
                            sizeof(u->created_by) - 1};
    size_t plen = sizeof(h);
    for (int i = 0; i < 4; i++) {
        h.lens[i] = (uint16_t)strnlen(strs[i], caps[i]);
        plen += h.lens[i] + 1u;
    }
    uint8_t *buf = malloc(plen);
    if (buf == NULL) abort();
    memcpy(buf, &h, sizeof(h));
    char *s = (char *)buf + sizeof(h);
    for (int i = 0; i < 4; i++) {
        memcpy(s, strs[i], h.lens[i]);
        s[h.lens[i]] = '\0';
        s += h.lens[i] + 1;
    }
    cmap_put(c, &c->users, u->user_id, strnlen(u->user_id, STORE_ID_MAX), buf, plen, epoch,
             any_shard);
    free(buf);
}

void cache_user_put(cache_t *c, const store_user_t *u, uint64_t epoch)
{
    cache_user_insert(c, u, epoch, 0);
}

uint64_t cache_users_epoch(cache_t *c)
{
    return atomic_load(&c->users.changes);
}

void cache_user_put_since(cache_t *c, const store_user_t *u, uint64_t users_epoch)
{
    cache_user_insert(c, u, users_epoch, 1);
}

void cache_clear(cache_t *c)
{
    cmap_clear(&c->tokens);
    cmap_clear(&c->users);
}

void cache_user_invalidate(cache_t *c, const char *user_id)
{
    cmap_invalidate(&c->users, user_id, strlen(user_id));
}

/* ---------------------------------------------------------------- the store's seam */

static void cache_on_token(void *arg, const uint8_t hash[STORE_HASH_BYTES])
{
    cache_token_invalidate(arg, hash);
}

static void cache_on_user(void *arg, const char *user_id)
{
    cache_user_invalidate(arg, user_id);
}

static void cache_on_everything(void *arg)
{
    cache_clear(arg);
}

static void cache_on_serve_until(void *arg, uint64_t mono_ns)
{
    cache_serve_until(arg, mono_ns);
}

void cache_serve_until(cache_t *c, uint64_t mono_ns)
{
    atomic_store_explicit(&c->serve_until, mono_ns, memory_order_release);
}

void cache_observer(cache_t *c, store_observer_t *out)
{
    out->token_changed = cache_on_token;
    out->user_changed = cache_on_user;
    out->everything_changed = cache_on_everything;
    out->serve_until = cache_on_serve_until;
    out->arg = c;
}

cache_mark_t cache_token_mark(cache_t *c, const uint8_t hash[STORE_HASH_BYTES], uint64_t epoch)
{
    cmap_t *m = &c->tokens;
    cache_mark_t k = {&cmap_shard(m, cache_hash(m, hash, STORE_HASH_BYTES))->epoch, epoch};
    return k;
}

cache_mark_t cache_user_mark(cache_t *c, const char *user_id, uint64_t epoch)
{
    cmap_t *m = &c->users;
    cache_mark_t k = {&cmap_shard(m, cache_hash(m, user_id, strlen(user_id)))->epoch, epoch};
    return k;
}

int cache_mark_current(cache_t *c, const cache_mark_t *m)
{
    return !cache_fenced(c) && atomic_load_explicit(m->epoch, memory_order_acquire) == m->seen;
}

void cache_count_prepared(cache_t *c)
{
    /* One counter on the hot path; its two hits are added when read. */
    atomic_fetch_add_explicit(&c->prepared, 1, memory_order_relaxed);
}

void cache_count_miss(cache_t *c)
{
    atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
}

void cache_stats(cache_t *c, cache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->prepared = atomic_load(&c->prepared);
    out->hits = atomic_load(&c->hits) + 2 * out->prepared;
    out->misses = atomic_load(&c->misses);
    out->evictions = atomic_load(&c->evictions);
    out->capacity = c->capacity;
    for (int i = 0; i < CACHE_SHARDS; i++) {
        pthread_mutex_lock(&c->tokens.shards[i].lock);
        out->entries += c->tokens.shards[i].count;
        pthread_mutex_unlock(&c->tokens.shards[i].lock);
        pthread_mutex_lock(&c->users.shards[i].lock);
        out->user_entries += c->users.shards[i].count;
        pthread_mutex_unlock(&c->users.shards[i].lock);
    }
}
