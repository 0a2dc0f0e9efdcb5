/* rocksdb/changes: the embedded backend's changes. Each takes its owner's
 * lock, reads what its precondition needs, writes one synced WriteBatch and
 * tells the observer before it unlocks, so a change is checked and made as
 * one step and its invalidation precedes its acknowledgement. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---------------------------------------------------------------- batches */

static void rdb_wb_put(rdb_t *r, rocksdb_writebatch_t *wb, int cf, const void *k, size_t kl,
                       const void *v, size_t vl)
{
    rocksdb_writebatch_put_cf(wb, r->cf[cf], k, kl, v, vl);
}

void rdb_wb_put_user(rdb_t *r, rocksdb_writebatch_t *wb, const store_user_t *u)
{
    size_t len;
    void *buf = rdb_pack_user(u, &len);
    rdb_wb_put(r, wb, CF_USERS, u->user_id, strlen(u->user_id), buf, len);
    free(buf);
}

void rdb_wb_put_token(rdb_t *r, rocksdb_writebatch_t *wb, const store_token_t *t)
{
    uint8_t id[8];
    rdb_put_u64(id, t->id);
    size_t len;
    void *buf = rdb_pack_token(t, &len);
    rdb_wb_put(r, wb, CF_TOKENS, id, 8, buf, len);
    rdb_wb_put(r, wb, CF_TOKEN_BY_HASH, t->hash, STORE_HASH_BYTES, buf, len);
    free(buf);
    uint8_t okey[STORE_CURSOR_MAX];
    size_t olen = rdb_owner_key(t->kind, t->owner_id, t->name, okey, sizeof(okey));
    rdb_wb_put(r, wb, CF_TOKENS_BY_OWNER, okey, olen, id, 8);
}

void rdb_wb_delete_token(rdb_t *r, rocksdb_writebatch_t *wb, const store_token_t *t)
{
    uint8_t id[8];
    rdb_put_u64(id, t->id);
    rocksdb_writebatch_delete_cf(wb, r->cf[CF_TOKENS], (const char *)id, 8);
    rocksdb_writebatch_delete_cf(wb, r->cf[CF_TOKEN_BY_HASH], (const char *)t->hash,
                                 STORE_HASH_BYTES);
    uint8_t okey[STORE_CURSOR_MAX];
    size_t olen = rdb_owner_key(t->kind, t->owner_id, t->name, okey, sizeof(okey));
    rocksdb_writebatch_delete_cf(wb, r->cf[CF_TOKENS_BY_OWNER], (const char *)okey, olen);
    rocksdb_writebatch_delete_cf(wb, r->cf[CF_LAST_USED], (const char *)id, 8);
}

void rdb_wb_put_event(rdb_t *r, rocksdb_writebatch_t *wb, uint64_t id, const store_event_t *ev)
{
    uint8_t key[RDB_EVENT_KEYLEN];
    rdb_event_key(key, id, (uint64_t)ev->time, ev->seq);
    size_t len;
    void *buf = rdb_pack_event(ev, &len);
    rdb_wb_put(r, wb, CF_ACTIVITY, key, sizeof(key), buf, len);
    free(buf);
}

store_status_t rdb_commit(rdb_t *r, rocksdb_writebatch_t *wb, int sync, const char *what)
{
    if (store_injected_fault(&r->base, what)) return STORE_UNAVAILABLE;
    char *err = NULL;
    uint64_t t0 = store_mono_ns();
    rocksdb_write(r->db, sync ? r->wsync : r->wnosync, wb, &err);
    store_write_observe(&r->base, store_mono_ns() - t0);
    if (err) {
        store_write_failed(&r->base, err, what);
        rocksdb_free(err);
        return STORE_UNAVAILABLE;
    }
    store_write_ok(&r->base);
    return STORE_OK;
}

/* Commits a batch of one change, freeing it. */
static store_status_t rdb_commit_one(rdb_t *r, rocksdb_writebatch_t *wb, const char *what)
{
    store_status_t s = rdb_commit(r, wb, 1, what);
    rocksdb_writebatch_destroy(wb);
    return s;
}

/* ---------------------------------------------------------------- owners */

static int rdb_is_active(const store_token_t *t, int64_t now_ms)
{
    return t->active && (t->expiration == 0 || now_ms < t->expiration);
}

/* The tokens of one owner (their kind follows the owner's type), for the
 * checks and the cascade of a service user's deletion. Caller holds the
 * owner lock; *out is malloc'd. */
static store_status_t rdb_owned(rdb_t *r, const store_user_t *u, store_token_t **out, size_t *n)
{
    int32_t kind = u->user_type == STORE_USER_SERVICE ? STORE_KIND_SERVICE : STORE_KIND_PERSONAL;
    size_t cap = 16;
    *n = 0;
    *out = malloc(cap * sizeof(**out));
    if (*out == NULL) abort();
    store_cursor_t after = {0}, next;
    for (;;) {
        unsigned got = 0;
        int more = 0;
        if (*n + 64 > cap) {
            cap *= 4;
            *out = realloc(*out, cap * sizeof(**out));
            if (*out == NULL) abort();
        }
        store_status_t s = r->base.backend->tokens_list(&r->base, kind, u->user_id, &after, 64,
                                                        *out + *n, &got, &more, &next);
        if (s != STORE_OK) return s;
        *n += got;
        if (!more) return STORE_OK;
        after = next;
    }
}

static unsigned rdb_count_active(const store_token_t *t, size_t n, int64_t now_ms)
{
    unsigned a = 0;
    for (size_t i = 0; i < n; i++)
        a += (unsigned)rdb_is_active(&t[i], now_ms);
    return a;
}

/* ---------------------------------------------------------------- users */

store_status_t rdb_user_create(store_t *st, const store_user_t *u)
{
    rdb_t *r = rdb_of(st);
    pthread_mutex_t *lock = rdb_owner_lock(r, u->user_id);
    pthread_mutex_lock(lock);
    store_user_t old;
    store_status_t s = rdb_user_read(r, u->user_id, &old, 0);
    if (s == STORE_OK) s = STORE_EXISTS;
    if (s == STORE_NOT_FOUND) {
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rdb_wb_put_user(r, wb, u);
        s = rdb_commit_one(r, wb, "create user");
        if (s == STORE_OK) store_notify_user(st, u->user_id);
    }
    pthread_mutex_unlock(lock);
    return s;
}

store_status_t rdb_user_upsert(store_t *st, const store_user_t *u, store_user_t *now,
                               store_user_t *prev)
{
    rdb_t *r = rdb_of(st);
    pthread_mutex_t *lock = rdb_owner_lock(r, u->user_id);
    pthread_mutex_lock(lock);
    store_user_t old;
    store_status_t s = rdb_user_read(r, u->user_id, &old, 0);
    int existed = s == STORE_OK;
    if (s == STORE_OK && old.user_type == STORE_USER_SERVICE) s = STORE_CONFLICT;
    if (s == STORE_OK || s == STORE_NOT_FOUND) {
        store_user_merge(u, existed ? &old : NULL, now);
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rdb_wb_put_user(r, wb, now);
        s = rdb_commit_one(r, wb, "write user");
        if (s == STORE_OK) store_notify_user(st, u->user_id);
    }
    pthread_mutex_unlock(lock);
    if (prev) {
        if (existed)
            *prev = old;
        else
            prev->user_id[0] = '\0';
    }
    return s;
}

store_status_t rdb_user_set_active(store_t *st, const char *user_id, int active,
                                   int no_active_tokens, int64_t now_ms, store_user_t *out,
                                   unsigned *n_active)
{
    rdb_t *r = rdb_of(st);
    pthread_mutex_t *lock = rdb_owner_lock(r, user_id);
    pthread_mutex_lock(lock);
    store_status_t s = rdb_user_read(r, user_id, out, 0);
    if (s == STORE_OK && !active && no_active_tokens) {
        store_token_t *toks;
        size_t n;
        s = rdb_owned(r, out, &toks, &n);
        if (s == STORE_OK && (*n_active = rdb_count_active(toks, n, now_ms)) > 0)
            s = STORE_CONFLICT;
        free(toks);
    }
    if (s == STORE_OK && out->active != active) {
        out->active = active;
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rdb_wb_put_user(r, wb, out);
        s = rdb_commit_one(r, wb, "write user");
        if (s == STORE_OK) store_notify_user(st, user_id);
    }
    pthread_mutex_unlock(lock);
    return s;
}

store_status_t rdb_user_delete(store_t *st, const char *user_id, int64_t now_ms,
                               const store_event_t *ev, unsigned *n_active, uint64_t **ids,
                               size_t *n_ids)
{
    rdb_t *r = rdb_of(st);
    pthread_mutex_t *lock = rdb_owner_lock(r, user_id);
    pthread_mutex_lock(lock);
    store_user_t u;
    store_token_t *toks = NULL;
    size_t n = 0;
    store_status_t s = rdb_user_read(r, user_id, &u, 0);
    if (s == STORE_OK) s = rdb_owned(r, &u, &toks, &n);
    if (s == STORE_OK && (*n_active = rdb_count_active(toks, n, now_ms)) > 0) s = STORE_CONFLICT;
    if (s == STORE_OK) {
        /* Its revoked and expired tokens go with it, in the same batch. */
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        for (size_t i = 0; i < n; i++) {
            store_event_t e = *ev;
            e.seq = store_event_seq(st);
            memcpy(e.owner_id, toks[i].owner_id, sizeof(e.owner_id));
            e.token_kind = toks[i].kind;
            rdb_wb_delete_token(r, wb, &toks[i]);
            rdb_wb_put_event(r, wb, toks[i].id, &e);
        }
        rocksdb_writebatch_delete_cf(wb, r->cf[CF_USERS], user_id, strlen(user_id));
        s = rdb_commit_one(r, wb, "delete user");
        if (s == STORE_OK) {
            for (size_t i = 0; i < n; i++)
                store_notify_token(st, toks[i].hash);
            store_notify_user(st, user_id);
            if (n) {
                *ids = malloc(n * sizeof(**ids));
                if (*ids == NULL) abort();
                for (size_t i = 0; i < n; i++)
                    (*ids)[i] = toks[i].id;
                *n_ids = n;
            }
        }
    }
    pthread_mutex_unlock(lock);
    free(toks);
    return s;
}

/* ---------------------------------------------------------------- tokens */

store_status_t rdb_token_create(store_t *st, store_token_t *t, const store_event_t *ev)
{
    rdb_t *r = rdb_of(st);
    pthread_mutex_t *lock = rdb_owner_lock(r, t->owner_id);
    pthread_mutex_lock(lock);
    store_user_t owner;
    uint64_t other;
    store_status_t s = rdb_user_read(r, t->owner_id, &owner, 0);
    if (s == STORE_OK && !owner.active) s = STORE_CONFLICT;
    if (s == STORE_OK) {
        s = rdb_token_id_by_name(r, t->kind, t->owner_id, t->name, &other);
        s = s == STORE_OK ? STORE_EXISTS : s == STORE_NOT_FOUND ? STORE_OK : s;
    }
    if (s == STORE_OK) s = rdb_next_token_id(r, &t->id);
    if (s == STORE_OK) {
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rdb_wb_put_token(r, wb, t);
        if (ev) rdb_wb_put_event(r, wb, t->id, ev);
        s = rdb_commit_one(r, wb, "create token");
        /* A new hash: no cache can hold an answer for it, nothing to tell. */
    }
    pthread_mutex_unlock(lock);
    return s;
}

/* Reads token id under its owner's lock: returns the lock held, or NULL
 * (and *s) when the token cannot be read. Owners never change, so the lock
 * found from a first read is the token's for good. */
static pthread_mutex_t *rdb_lock_token(rdb_t *r, uint64_t id, store_token_t *out, store_status_t *s)
{
    if ((*s = rdb_token_read(r, id, out)) != STORE_OK) return NULL;
    pthread_mutex_t *lock = rdb_owner_lock(r, out->owner_id);
    pthread_mutex_lock(lock);
    if ((*s = rdb_token_read(r, id, out)) != STORE_OK) { /* deleted meanwhile */
        pthread_mutex_unlock(lock);
        return NULL;
    }
    return lock;
}

store_status_t rdb_token_set_active(store_t *st, uint64_t id, int active, const store_event_t *ev,
                                    store_token_t *out, int *changed)
{
    rdb_t *r = rdb_of(st);
    store_status_t s;
    pthread_mutex_t *lock = rdb_lock_token(r, id, out, &s);
    if (lock == NULL) return s;
    if (out->active != active) {
        if (active) {
            /* A restore while the owner is deactivated would bring an old
             * token back the moment the owner is activated. */
            store_user_t owner;
            s = rdb_user_read(r, out->owner_id, &owner, 0);
            if (s == STORE_OK && !owner.active) s = STORE_CONFLICT;
        }
        if (s == STORE_OK) {
            out->active = active;
            rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
            rdb_wb_put_token(r, wb, out);
            rdb_wb_put_event(r, wb, id, ev);
            s = rdb_commit_one(r, wb, "write token");
            if (s == STORE_OK) {
                *changed = 1;
                store_notify_token(st, out->hash);
            } else {
                out->active = !active;
            }
        }
    }
    pthread_mutex_unlock(lock);
    return s;
}

store_status_t rdb_token_delete(store_t *st, uint64_t id, int64_t now_ms, const store_event_t *ev,
                                store_token_t *out)
{
    rdb_t *r = rdb_of(st);
    store_status_t s;
    pthread_mutex_t *lock = rdb_lock_token(r, id, out, &s);
    if (lock == NULL) return s;
    if (rdb_is_active(out, now_ms)) {
        s = STORE_CONFLICT;
    } else {
        store_event_t e = *ev;
        memcpy(e.owner_id, out->owner_id, sizeof(e.owner_id));
        e.token_kind = out->kind;
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rdb_wb_delete_token(r, wb, out);
        rdb_wb_put_event(r, wb, id, &e);
        s = rdb_commit_one(r, wb, "delete token");
        if (s == STORE_OK) store_notify_token(st, out->hash);
    }
    pthread_mutex_unlock(lock);
    return s;
}

/* ---------------------------------------------------------------- usage */

typedef struct {
    store_usage_t base; /* first */
    rocksdb_writebatch_t *wb;
} rdb_usage_t;

store_usage_t *rdb_usage_begin(store_t *st)
{
    rdb_usage_t *b = malloc(sizeof(*b));
    if (b == NULL) abort();
    b->base.st = st;
    b->wb = rocksdb_writebatch_create();
    return &b->base;
}

void rdb_usage_last_used(store_usage_t *base, uint64_t id, int64_t ms)
{
    rdb_usage_t *b = (rdb_usage_t *)base;
    uint8_t k[8], v[8];
    rdb_put_u64(k, id);
    rdb_put_u64(v, (uint64_t)ms);
    rdb_wb_put(rdb_of(base->st), b->wb, CF_LAST_USED, k, 8, v, 8);
}

void rdb_usage_event(store_usage_t *base, uint64_t id, const store_event_t *ev)
{
    rdb_wb_put_event(rdb_of(base->st), ((rdb_usage_t *)base)->wb, id, ev);
}

void rdb_usage_abandon(store_usage_t *base)
{
    rdb_usage_t *b = (rdb_usage_t *)base;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

store_status_t rdb_usage_commit(store_usage_t *base)
{
    rdb_usage_t *b = (rdb_usage_t *)base;
    store_status_t s = rdb_commit(rdb_of(base->st), b->wb, 1, "usage write");
    rdb_usage_abandon(base);
    return s;
}

/* ---------------------------------------------------------------- activity */

store_status_t rdb_activity_list(store_t *st, uint64_t id, unsigned limit, store_event_t *out,
                                 unsigned *n)
{
    rdb_t *r = rdb_of(st);
    uint8_t hi[RDB_EVENT_KEYLEN];
    rdb_event_key(hi, id, UINT64_MAX, UINT64_MAX);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ropts, r->cf[CF_ACTIVITY]);
    store_status_t s = STORE_OK;
    for (rocksdb_iter_seek_for_prev(it, (const char *)hi, sizeof(hi));
         rocksdb_iter_valid(it) && *n < limit; rocksdb_iter_prev(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != RDB_EVENT_KEYLEN || rdb_get_u64(k) != id) break;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        rdb_event_rec_t *ev = patd__store__activity_record__unpack(NULL, vl, v);
        if (ev == NULL) {
            s = STORE_CORRUPT;
            break;
        }
        rdb_event_from_rec(ev, &out[*n]);
        out[(*n)++].seq = rdb_get_u64(k + 16);
        patd__store__activity_record__free_unpacked(ev, NULL);
    }
    if (s == STORE_OK) s = rdb_iter_status(it);
    rocksdb_iter_destroy(it);
    return s;
}

store_status_t rdb_activity_trim(store_t *st, uint64_t id, unsigned keep)
{
    rdb_t *r = rdb_of(st);
    uint8_t hi[RDB_EVENT_KEYLEN];
    rdb_event_key(hi, id, UINT64_MAX, UINT64_MAX);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ropts, r->cf[CF_ACTIVITY]);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    unsigned seen = 0, doomed = 0;
    /* Point deletes of the (few) rows past the newest `keep`: a range
     * tombstone per trim would pile up in the memtable and slow reads. */
    for (rocksdb_iter_seek_for_prev(it, (const char *)hi, sizeof(hi)); rocksdb_iter_valid(it);
         rocksdb_iter_prev(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != RDB_EVENT_KEYLEN || rdb_get_u64(k) != id) break;
        if (++seen > keep) {
            rocksdb_writebatch_delete_cf(wb, r->cf[CF_ACTIVITY], (const char *)k, kl);
            doomed++;
        }
    }
    store_status_t s = rdb_iter_status(it);
    rocksdb_iter_destroy(it);
    /* Maintenance: lost in a crash, it is simply done again. */
    if (s == STORE_OK && doomed) s = rdb_commit(r, wb, 0, "trim activity");
    rocksdb_writebatch_destroy(wb);
    return s;
}

store_status_t rdb_activity_next_id(store_t *st, uint64_t after, uint64_t *id)
{
    rdb_t *r = rdb_of(st);
    uint8_t lo[RDB_EVENT_KEYLEN];
    rdb_event_key(lo, after + 1, 0, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ropts, r->cf[CF_ACTIVITY]);
    rocksdb_iter_seek(it, (const char *)lo, sizeof(lo));
    store_status_t s = STORE_NOT_FOUND;
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl == RDB_EVENT_KEYLEN) {
            *id = rdb_get_u64(k);
            s = STORE_OK;
        }
    } else {
        s = rdb_iter_status(it) == STORE_OK ? STORE_NOT_FOUND : STORE_UNAVAILABLE;
    }
    rocksdb_iter_destroy(it);
    return s;
}

/* ---------------------------------------------------------------- import */

store_status_t rdb_import_users(store_t *st, const store_user_t *u, size_t n)
{
    rdb_t *r = rdb_of(st);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (size_t i = 0; i < n; i++)
        rdb_wb_put_user(r, wb, &u[i]);
    return rdb_commit_one(r, wb, "import users");
}

store_status_t rdb_import_tokens(store_t *st, const store_token_t *t, size_t n)
{
    rdb_t *r = rdb_of(st);
    uint64_t top = 0;
    for (size_t i = 0; i < n; i++)
        if (t[i].id > top) top = t[i].id;
    /* The counter first: an id below the mark is never handed out again. */
    pthread_mutex_lock(&r->id_lock);
    store_status_t s = STORE_OK;
    if (top >= r->id_hw) {
        s = rdb_reserve_ids(r, top + 1 + RDB_ID_BLOCK);
        if (s == STORE_OK) r->id_hw = top + 1 + RDB_ID_BLOCK;
    }
    if (s == STORE_OK && top >= r->id_next) r->id_next = top + 1;
    pthread_mutex_unlock(&r->id_lock);
    if (s != STORE_OK) return s;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    for (size_t i = 0; i < n; i++)
        rdb_wb_put_token(r, wb, &t[i]);
    return rdb_commit_one(r, wb, "import tokens");
}
