/* backend: what a storage backend implements, and the parts of store_t
 * that every backend shares. Only storage/ includes this file.
 *
 * A backend defines a store_backend_t (its scheme and operations) and is
 * listed in store.c's table. Its own state embeds store_t as its first
 * member, so that store.c can hand a store_t * to the operations, which
 * cast it back. The operations have store.h's contracts; store.c checks
 * arguments that are the same for every backend (lengths, limits), keeps
 * the event sequence, the write statistics and the fault injection, so a
 * backend does not repeat them. After a committed change a backend calls
 * store_notify_token() / store_notify_user() before returning. */
#ifndef PAT_STORE_BACKEND_H
#define PAT_STORE_BACKEND_H

#include <stdatomic.h>

#include "store.h"

struct store_usage {
    store_t *st; /* the backend's batch follows (it embeds this first) */
};

typedef struct {
    const char *scheme; /* "rocksdb": URLs "rocksdb:..." */
    /* `where` is the URL after "scheme:". */
    store_t *(*open)(const char *where, const store_options_t *opt, char **errmsg);
    void (*close)(store_t *st);
    void (*compact)(store_t *st);
    long (*check)(store_t *st, FILE *out);

    store_status_t (*user_get)(store_t *st, const char *user_id, store_user_t *out, int try_only);
    store_status_t (*user_create)(store_t *st, const store_user_t *u);
    store_status_t (*user_upsert)(store_t *st, const store_user_t *u, store_user_t *now,
                                  store_user_t *prev);
    store_status_t (*user_set_active)(store_t *st, const char *user_id, int active,
                                      int no_active_tokens, int64_t now_ms, store_user_t *out,
                                      unsigned *n_active);
    store_status_t (*user_delete)(store_t *st, const char *user_id, int64_t now_ms,
                                  const store_event_t *ev, unsigned *n_active, uint64_t **ids,
                                  size_t *n_ids);
    store_status_t (*users_list)(store_t *st, int32_t user_type, const store_cursor_t *after,
                                 unsigned limit, store_user_t *out, unsigned *n, int *more,
                                 store_cursor_t *next);

    store_status_t (*token_get)(store_t *st, uint64_t id, store_token_t *out);
    store_status_t (*token_get_by_hash)(store_t *st, const uint8_t *hash, store_token_t *out,
                                        int try_only);
    /* Optional: NULL reads the token, then its owner. */
    store_status_t (*token_get_with_owner)(store_t *st, const uint8_t *hash, store_token_t *out,
                                           store_user_t *owner);
    /* Optional: several at once, in one read. */
    void (*tokens_get_with_owners)(store_t *st, const uint8_t (*hashes)[STORE_HASH_BYTES], size_t n,
                                   store_token_t *out, store_user_t *owner, store_status_t *s);
    store_status_t (*token_create)(store_t *st, store_token_t *t, const store_event_t *ev);
    store_status_t (*token_set_active)(store_t *st, uint64_t id, int active,
                                       const store_event_t *ev, store_token_t *out, int *changed);
    store_status_t (*token_delete)(store_t *st, uint64_t id, int64_t now_ms,
                                   const store_event_t *ev, store_token_t *out);
    store_status_t (*tokens_list)(store_t *st, int32_t kind, const char *owner,
                                  const store_cursor_t *after, unsigned limit, store_token_t *out,
                                  unsigned *n, int *more, store_cursor_t *next);

    store_status_t (*import_users)(store_t *st, const store_user_t *u, size_t n);
    store_status_t (*import_tokens)(store_t *st, const store_token_t *t, size_t n);

    store_status_t (*last_used_get)(store_t *st, uint64_t id, int64_t *ms);
    store_usage_t *(*usage_begin)(store_t *st);
    void (*usage_last_used)(store_usage_t *b, uint64_t id, int64_t ms);
    void (*usage_event)(store_usage_t *b, uint64_t id, const store_event_t *ev);
    store_status_t (*usage_commit)(store_usage_t *b); /* and frees b */
    void (*usage_abandon)(store_usage_t *b);
    store_status_t (*activity_list)(store_t *st, uint64_t id, unsigned limit, store_event_t *out,
                                    unsigned *n);
    store_status_t (*activity_trim)(store_t *st, uint64_t id, unsigned keep);
    store_status_t (*activity_next_id)(store_t *st, uint64_t after, uint64_t *id);

    /* Optional: a cluster of processes on one store (store.h). */
    int (*cluster_fd)(store_t *st, int *want_write, uint64_t *gen);
    uint64_t (*cluster_step)(store_t *st);
    void (*cluster_status)(store_t *st, store_cluster_t *out);
} store_backend_t;

struct store {
    const store_backend_t *backend;
    char *url;
    store_observer_t observer;
    uint8_t page_key[STORE_PAGE_KEY]; /* the backend fills it at open */
    unsigned schema, schema_known;    /* the backend fills them at open */
    _Atomic uint64_t event_seq;
    _Atomic int fail_writes;    /* test fault injection */
    _Atomic int decline_tries;  /* test fault injection */
    _Atomic int writes_failing; /* logged once per episode of failures */
    _Atomic uint64_t write_counts[STORE_WRITE_BUCKETS + 1];
    _Atomic uint64_t write_sum_ns;
};

/* For backends: tell the observer (after the commit, before returning). */
void store_notify_token(store_t *st, const uint8_t hash[STORE_HASH_BYTES]);
void store_notify_user(store_t *st, const char *user_id);
void store_notify_everything(store_t *st);
void store_notify_serve_until(store_t *st, uint64_t mono_ns);
/* True (and the failure logged as a write failure) while fail_writes is
 * on: a backend calls it before each commit. */
int store_injected_fault(store_t *st, const char *what);
/* Write failures come in episodes: the first is logged with its cause, the
 * rest quietly, the recovery once. Returns STORE_UNAVAILABLE. */
store_status_t store_write_failed(store_t *st, const char *cause, const char *what);
void store_write_ok(store_t *st);
/* Counts a committed write that took ns. */
void store_write_observe(store_t *st, uint64_t ns);
uint64_t store_mono_ns(void);
/* store_user_upsert's rule, for every backend: *now is u, and where the
 * user existed (old != NULL) keeps its active flag, type, creation and
 * role unless u sets one; a new user without a role is a Member. */
void store_user_merge(const store_user_t *u, const store_user_t *old, store_user_t *now);
/* Bounded copy of a string into a fixed field (cut at a character). */
void store_copy_str(char *dst, size_t cap, const char *src, size_t len);
/* A malloc'd message for an open's errmsg. */
char *store_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Fills a page-token key from the system's random generator; 0 or -1. */
int store_random_key(uint8_t key[STORE_PAGE_KEY]);

/* A log line through store_set_log's sink; level 0 debug .. 3 error. */
void store_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define STORE_LOG_DEBUG 0
#define STORE_LOG_INFO  1
#define STORE_LOG_WARN  2
#define STORE_LOG_ERROR 3

/* The backends. */
extern const store_backend_t store_rocksdb_backend;
extern const store_backend_t store_postgresql_backend; /* also "postgres://" */

#endif
