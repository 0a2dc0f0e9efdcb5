/* store: the backend-neutral half of the storage interface: choosing a
 * backend by URL, checking arguments once for every backend, the event
 * sequence, write statistics, fault injection and the observer. */
#include "store.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "backend.h"

static const store_backend_t *const store_backends[] = {&store_rocksdb_backend,
                                                        &store_postgresql_backend};

/* Write durations, from 50 us (a write without sync) to 1 s. */
static const uint64_t store_write_le_ns[STORE_WRITE_BUCKETS] = {
    50000,   100000,   250000,   500000,    1000000,   2500000,
    5000000, 10000000, 25000000, 100000000, 250000000, 1000000000,
};

/* ---------------------------------------------------------------- logging */

static _Atomic(store_log_fn) store_log_sink;

void store_set_log(store_log_fn fn)
{
    atomic_store(&store_log_sink, fn);
}

void store_log(int level, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    store_log_fn fn = atomic_load(&store_log_sink);
    if (fn)
        fn(level, line);
    else if (level > STORE_LOG_DEBUG)
        fprintf(stderr, "store: %s\n", line);
}

/* ---------------------------------------------------------------- helpers */

char *store_errf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return strdup(buf);
}

void store_copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (src == NULL) len = 0;
    if (len > cap - 1) {
        len = cap - 1;
        while (len > 0 && ((unsigned char)src[len] & 0xc0) == 0x80)
            len--; /* not inside a character */
    }
    if (len) memcpy(dst, src, len);
    dst[len] = '\0';
}

void store_user_merge(const store_user_t *u, const store_user_t *old, store_user_t *now)
{
    *now = *u;
    if (old == NULL) {
        if (u->role == 0) now->role = STORE_ROLE_MEMBER;
        return;
    }
    if (u->role == 0) now->role = old->role;
    now->active = old->active;
    now->created = old->created;
    memcpy(now->created_by, old->created_by, sizeof(now->created_by));
    now->user_type = old->user_type;
}

int store_random_key(uint8_t key[STORE_PAGE_KEY])
{
    return getrandom(key, STORE_PAGE_KEY, 0) == STORE_PAGE_KEY ? 0 : -1;
}

uint64_t store_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *store_status_name(store_status_t s)
{
    switch (s) {
    case STORE_OK:
        return "ok";
    case STORE_NOT_FOUND:
        return "not found";
    case STORE_EXISTS:
        return "already exists";
    case STORE_CONFLICT:
        return "conflicts with the current state";
    case STORE_DECLINED:
        return "declined without waiting";
    case STORE_CORRUPT:
        return "stored value does not decode";
    case STORE_UNAVAILABLE:
        return "storage unavailable";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- shared state */

void store_notify_token(store_t *st, const uint8_t hash[STORE_HASH_BYTES])
{
    if (st->observer.token_changed) st->observer.token_changed(st->observer.arg, hash);
}

void store_notify_user(store_t *st, const char *user_id)
{
    if (st->observer.user_changed) st->observer.user_changed(st->observer.arg, user_id);
}

void store_notify_everything(store_t *st)
{
    if (st->observer.everything_changed) st->observer.everything_changed(st->observer.arg);
}

void store_notify_serve_until(store_t *st, uint64_t mono_ns)
{
    if (st->observer.serve_until) st->observer.serve_until(st->observer.arg, mono_ns);
}

void store_set_observer(store_t *st, const store_observer_t *obs)
{
    st->observer = *obs;
}

store_status_t store_write_failed(store_t *st, const char *cause, const char *what)
{
    if (atomic_exchange(&st->writes_failing, 1) == 0)
        store_log(STORE_LOG_ERROR,
                  "%s failed: %s; writes are refused until the store accepts them again "
                  "(reads keep working)",
                  what, cause);
    else
        store_log(STORE_LOG_DEBUG, "%s failed again: %s", what, cause);
    return STORE_UNAVAILABLE;
}

void store_write_ok(store_t *st)
{
    if (atomic_load_explicit(&st->writes_failing, memory_order_relaxed) &&
        atomic_exchange(&st->writes_failing, 0))
        store_log(STORE_LOG_INFO, "writes are accepted again");
}

int store_injected_fault(store_t *st, const char *what)
{
    if (!atomic_load(&st->fail_writes)) return 0;
    store_write_failed(st, "injected fault (no space left on device)", what);
    return 1;
}

void store_write_observe(store_t *st, uint64_t ns)
{
    size_t i = 0;
    while (i < STORE_WRITE_BUCKETS && ns > store_write_le_ns[i])
        i++;
    atomic_fetch_add_explicit(&st->write_counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->write_sum_ns, ns, memory_order_relaxed);
}

void store_write_stats(const store_t *st, store_write_stats_t *out)
{
    memcpy(out->le_ns, store_write_le_ns, sizeof(out->le_ns));
    for (size_t i = 0; i <= STORE_WRITE_BUCKETS; i++)
        out->counts[i] = atomic_load_explicit(&st->write_counts[i], memory_order_relaxed);
    out->sum_ns = atomic_load_explicit(&st->write_sum_ns, memory_order_relaxed);
}

void store_set_fail_writes(store_t *st, int on)
{
    atomic_store(&st->fail_writes, on);
}

void store_set_decline_tries(store_t *st, int on)
{
    atomic_store(&st->decline_tries, on);
}

uint64_t store_event_seq(store_t *st)
{
    return atomic_fetch_add_explicit(&st->event_seq, 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------- open */

store_t *store_open(const char *url, const store_options_t *opt, char **errmsg)
{
    static const store_options_t defaults = {0};
    const char *colon = strchr(url, ':');
    const store_backend_t *be = NULL;
    size_t scheme_len = colon ? (size_t)(colon - url) : 0;
    if (scheme_len == 8 && strncmp(url, "postgres", 8) == 0) /* libpq's other spelling */
        be = &store_postgresql_backend;
    for (size_t i = 0; colon && i < sizeof(store_backends) / sizeof(store_backends[0]); i++) {
        size_t n = strlen(store_backends[i]->scheme);
        if (scheme_len == n && strncmp(url, store_backends[i]->scheme, n) == 0)
            be = store_backends[i];
    }
    if (be == NULL) {
        if (errmsg)
            *errmsg = store_errf("store URL '%.64s' names no known store: use rocksdb:DIR or "
                                 "postgresql://...",
                                 url);
        return NULL;
    }
    if (colon[1] == '\0') {
        if (errmsg)
            *errmsg = store_errf("store URL '%s' says where the store is: rocksdb:DIR or "
                                 "postgresql://HOST/DB",
                                 url);
        return NULL;
    }
    store_t *st = be->open(colon + 1, opt ? opt : &defaults, errmsg);
    if (st == NULL) return NULL;
    st->backend = be;
    st->url = strdup(url);
    if (st->url == NULL) abort();
    /* Sequence numbers start from the wall clock in nanoseconds, so that
     * they keep growing across restarts without being stored. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store(&st->event_seq, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    return st;
}

void store_close(store_t *st)
{
    if (st == NULL) return;
    char *url = st->url;
    st->backend->close(st);
    free(url);
}

const char *store_url(const store_t *st)
{
    return st->url;
}

void store_page_key(const store_t *st, uint8_t key[STORE_PAGE_KEY])
{
    memcpy(key, st->page_key, STORE_PAGE_KEY);
}

void store_compact(store_t *st)
{
    st->backend->compact(st);
}

long store_check(store_t *st, FILE *out)
{
    return st->backend->check(st, out);
}

/* ---------------------------------------------------------------- users */

static int store_id_ok(const char *id)
{
    return id && id[0] && strnlen(id, STORE_ID_MAX + 1) <= STORE_ID_MAX;
}

store_status_t store_user_get(store_t *st, const char *user_id, store_user_t *out)
{
    if (!store_id_ok(user_id)) return STORE_NOT_FOUND;
    return st->backend->user_get(st, user_id, out, 0);
}

store_status_t store_user_try_get(store_t *st, const char *user_id, store_user_t *out)
{
    if (atomic_load_explicit(&st->decline_tries, memory_order_relaxed)) return STORE_DECLINED;
    if (!store_id_ok(user_id)) return STORE_NOT_FOUND;
    return st->backend->user_get(st, user_id, out, 1);
}

store_status_t store_user_create(store_t *st, const store_user_t *u)
{
    if (!store_id_ok(u->user_id)) return STORE_NOT_FOUND;
    return st->backend->user_create(st, u);
}

store_status_t store_user_upsert(store_t *st, const store_user_t *u, store_user_t *now,
                                 store_user_t *prev)
{
    if (!store_id_ok(u->user_id)) return STORE_NOT_FOUND;
    return st->backend->user_upsert(st, u, now, prev);
}

store_status_t store_user_set_active(store_t *st, const char *user_id, int active,
                                     int no_active_tokens, int64_t now_ms, store_user_t *out,
                                     unsigned *n_active)
{
    unsigned dummy;
    if (n_active == NULL) n_active = &dummy;
    *n_active = 0;
    if (!store_id_ok(user_id)) return STORE_NOT_FOUND;
    return st->backend->user_set_active(st, user_id, active != 0, no_active_tokens, now_ms, out,
                                        n_active);
}

store_status_t store_user_delete(store_t *st, const char *user_id, int64_t now_ms,
                                 const store_event_t *ev, unsigned *n_active, uint64_t **ids,
                                 size_t *n_ids)
{
    *n_active = 0;
    *ids = NULL;
    *n_ids = 0;
    if (!store_id_ok(user_id)) return STORE_NOT_FOUND;
    return st->backend->user_delete(st, user_id, now_ms, ev, n_active, ids, n_ids);
}

store_status_t store_users_list(store_t *st, int32_t user_type, const store_cursor_t *after,
                                unsigned limit, store_user_t *out, unsigned *n, int *more,
                                store_cursor_t *next)
{
    store_cursor_t from = *after; /* next may be after */
    *n = 0;
    *more = 0;
    next->len = 0;
    if (limit == 0 || from.len > STORE_CURSOR_MAX) return STORE_OK;
    return st->backend->users_list(st, user_type, &from, limit, out, n, more, next);
}

/* ---------------------------------------------------------------- tokens */

store_status_t store_token_get(store_t *st, uint64_t id, store_token_t *out)
{
    return st->backend->token_get(st, id, out);
}

store_status_t store_token_get_by_hash(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                       store_token_t *out)
{
    return st->backend->token_get_by_hash(st, hash, out, 0);
}

store_status_t store_token_try_get_by_hash(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                           store_token_t *out)
{
    if (atomic_load_explicit(&st->decline_tries, memory_order_relaxed)) return STORE_DECLINED;
    return st->backend->token_get_by_hash(st, hash, out, 1);
}

store_status_t store_token_get_with_owner(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                          store_token_t *out, store_user_t *owner)
{
    owner->user_id[0] = '\0';
    if (st->backend->token_get_with_owner)
        return st->backend->token_get_with_owner(st, hash, out, owner);
    store_status_t s = st->backend->token_get_by_hash(st, hash, out, 0);
    if (s != STORE_OK) return s;
    store_status_t us = store_user_get(st, out->owner_id, owner);
    if (us == STORE_NOT_FOUND) owner->user_id[0] = '\0';
    return us == STORE_NOT_FOUND ? STORE_OK : us;
}

void store_tokens_get_with_owners(store_t *st, const uint8_t (*hashes)[STORE_HASH_BYTES], size_t n,
                                  store_token_t *out, store_user_t *owner, store_status_t *s)
{
    if (n == 0) return;
    if (st->backend->tokens_get_with_owners) {
        for (size_t i = 0; i < n; i++)
            owner[i].user_id[0] = '\0';
        st->backend->tokens_get_with_owners(st, hashes, n, out, owner, s);
        return;
    }
    for (size_t i = 0; i < n; i++)
        s[i] = store_token_get_with_owner(st, hashes[i], &out[i], &owner[i]);
}

int store_cluster_fd(store_t *st, int *want_write, uint64_t *gen)
{
    *want_write = 0;
    *gen = 0;
    return st->backend->cluster_fd ? st->backend->cluster_fd(st, want_write, gen) : -1;
}

uint64_t store_cluster_step(store_t *st)
{
    return st->backend->cluster_step ? st->backend->cluster_step(st) : 0;
}

void store_cluster_status(store_t *st, store_cluster_t *out)
{
    memset(out, 0, sizeof(*out));
    if (st->backend->cluster_status) st->backend->cluster_status(st, out);
}

int store_reads_in_batches(const store_t *st)
{
    return st->backend->tokens_get_with_owners != NULL;
}

store_status_t store_import_users(store_t *st, const store_user_t *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!store_id_ok(u[i].user_id)) return STORE_NOT_FOUND;
    return n ? st->backend->import_users(st, u, n) : STORE_OK;
}

store_status_t store_import_tokens(store_t *st, const store_token_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!store_id_ok(t[i].owner_id) || t[i].id == 0) return STORE_NOT_FOUND;
    return n ? st->backend->import_tokens(st, t, n) : STORE_OK;
}

void store_schema(const store_t *st, unsigned *version, unsigned *known)
{
    *version = st->schema;
    *known = st->schema_known;
}

store_status_t store_token_create(store_t *st, store_token_t *t, const store_event_t *ev)
{
    if (!store_id_ok(t->owner_id)) return STORE_NOT_FOUND;
    return st->backend->token_create(st, t, ev);
}

store_status_t store_token_set_active(store_t *st, uint64_t id, int active, const store_event_t *ev,
                                      store_token_t *out, int *changed)
{
    int dummy;
    if (changed == NULL) changed = &dummy;
    *changed = 0;
    return st->backend->token_set_active(st, id, active != 0, ev, out, changed);
}

store_status_t store_token_delete(store_t *st, uint64_t id, int64_t now_ms, const store_event_t *ev,
                                  store_token_t *out)
{
    return st->backend->token_delete(st, id, now_ms, ev, out);
}

store_status_t store_tokens_list(store_t *st, int32_t kind, const char *owner,
                                 const store_cursor_t *after, unsigned limit, store_token_t *out,
                                 unsigned *n, int *more, store_cursor_t *next)
{
    store_cursor_t from = *after; /* next may be after */
    *n = 0;
    *more = 0;
    next->len = 0;
    if (limit == 0 || from.len > STORE_CURSOR_MAX || (owner && !store_id_ok(owner)))
        return STORE_OK;
    return st->backend->tokens_list(st, kind, owner, &from, limit, out, n, more, next);
}

/* ---------------------------------------------------------------- usage */

store_status_t store_last_used_get(store_t *st, uint64_t id, int64_t *ms)
{
    *ms = 0;
    return st->backend->last_used_get(st, id, ms);
}

store_usage_t *store_usage_begin(store_t *st)
{
    return st->backend->usage_begin(st);
}

void store_usage_last_used(store_usage_t *b, uint64_t id, int64_t ms)
{
    b->st->backend->usage_last_used(b, id, ms);
}

void store_usage_event(store_usage_t *b, uint64_t id, const store_event_t *ev)
{
    b->st->backend->usage_event(b, id, ev);
}

store_status_t store_usage_commit(store_usage_t *b)
{
    store_t *st = b->st;
    if (store_injected_fault(st, "usage write")) {
        st->backend->usage_abandon(b);
        return STORE_UNAVAILABLE;
    }
    return st->backend->usage_commit(b);
}

store_status_t store_activity_list(store_t *st, uint64_t id, unsigned limit, store_event_t *out,
                                   unsigned *n)
{
    *n = 0;
    if (limit == 0) return STORE_OK;
    return st->backend->activity_list(st, id, limit, out, n);
}

store_status_t store_activity_trim(store_t *st, uint64_t id, unsigned keep)
{
    return st->backend->activity_trim(st, id, keep);
}

store_status_t store_activity_next_id(store_t *st, uint64_t after, uint64_t *id)
{
    if (after == UINT64_MAX) return STORE_NOT_FOUND;
    return st->backend->activity_next_id(st, after, id);
}
