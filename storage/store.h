/* store: patd's storage interface: users, tokens, last-used times and
 * activity, whatever keeps them.
 *
 * DESIGN. The service speaks only in the domain types below and in
 * operations that each do one whole change: create a token together with
 * its unique name, change a token's state, delete a token, upsert or
 * (de)activate a user, delete a service user with its tokens, write a batch
 * of uses. What an operation checks and changes is one atomic unit of the
 * backend; its preconditions (the name is free, the owner is active, the
 * token is no longer active) hold at the moment of the change, not at some
 * earlier read, so several workers (or several processes on one database)
 * cannot interleave between check and change.
 *
 * A backend is chosen at start-up by the scheme of a URL (store_open):
 * "rocksdb:DIR" is the embedded one (storage/rocksdb/), "postgresql://..."
 * a PostgreSQL database (storage/postgresql/). A backend plugs in
 * through storage/backend.h; docs/architecture.md says what it must
 * guarantee.
 *
 * Guarantees every backend gives:
 *  - Durability: an operation that returns STORE_OK has been committed
 *    durably (unless the store was opened with `bulk`, for loading tools).
 *  - Uniqueness: (owner, kind, name) of tokens and the hash of a token are
 *    unique; token ids are never reused, even after a crash.
 *  - Coherence: after a committed change that can alter a Verify answer,
 *    the backend tells the observer (store_set_observer) which token or
 *    user changed, before the operation returns; so a cache fed by it
 *    never answers from a state older than an acknowledged change.
 *  - The try_ reads never wait (no disk, no network); they may always
 *    decline with STORE_DECLINED, and the caller asks again with the
 *    blocking read on a worker.
 *
 * Thread-safety: every function may be called from any thread at once,
 * except store_set_observer (before serving) and store_close.
 * Ownership: the domain types are plain values with fixed-size strings;
 * nothing returned points into the store, and the caller owns every
 * buffer it passes. Arrays filled by list operations are the caller's. */
#ifndef PAT_STORE_H
#define PAT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define STORE_HASH_BYTES 32   /* SHA-256 of a token */
#define STORE_ID_MAX     255  /* bytes of a user id */
#define STORE_NAME_MAX   255  /* bytes of a token name */
#define STORE_TEXT_MAX   1024 /* user_name, email, name */
#define STORE_PATH_MAX   256  /* bytes of an activity path */
#define STORE_ADDR_MAX   64   /* bytes of a client address */
#define STORE_CURSOR_MAX (2 + STORE_ID_MAX + STORE_NAME_MAX)
#define STORE_PAGE_KEY   32 /* bytes of the page-token key */

/* Numbers of pat.v1's enums, which the domain types hold. */
enum { STORE_KIND_PERSONAL = 1, STORE_KIND_SERVICE = 2 };
enum { STORE_USER_HUMAN = 1, STORE_USER_SERVICE = 2 };
enum { STORE_ROLE_MEMBER = 1 };
enum {
    STORE_EVENT_USED = 1,
    STORE_EVENT_CREATED = 2,
    STORE_EVENT_REVOKED = 3,
    STORE_EVENT_RESTORED = 4,
    STORE_EVENT_DELETED = 5,
};

typedef struct store store_t;

typedef enum {
    STORE_OK = 0,
    STORE_NOT_FOUND,
    STORE_EXISTS,      /* a unique name or id is taken */
    STORE_CONFLICT,    /* the current state forbids it: each operation says how */
    STORE_DECLINED,    /* a try_ read that would have to wait */
    STORE_CORRUPT,     /* a stored value that does not decode */
    STORE_UNAVAILABLE, /* the store failed or refused; logged once with its cause */
} store_status_t;

typedef struct {
    char user_id[STORE_ID_MAX + 1];
    char user_name[STORE_TEXT_MAX + 1];
    char email[STORE_TEXT_MAX + 1];
    char name[STORE_TEXT_MAX + 1];
    char created_by[STORE_ID_MAX + 1];
    int32_t role, user_type; /* pat.v1.Role, pat.v1.UserType */
    int active;
    int64_t created; /* Unix ms */
} store_user_t;

typedef struct {
    uint64_t id;
    uint8_t hash[STORE_HASH_BYTES]; /* the token itself is never stored */
    char name[STORE_NAME_MAX + 1];
    char owner_id[STORE_ID_MAX + 1];
    char created_by[STORE_ID_MAX + 1];
    int32_t kind; /* STORE_KIND_* */
    int scim, active;
    int64_t created, expiration; /* Unix ms; expiration 0 = never */
} store_token_t;

typedef struct {
    uint64_t seq; /* orders events of one millisecond (store_event_seq) */
    int32_t kind; /* STORE_EVENT_* */
    int64_t time; /* Unix ms; for USED the newest of `count` uses */
    uint32_t count;
    int64_t first_time;
    char path[STORE_PATH_MAX + 1];
    char client_ip[STORE_ADDR_MAX + 1];
    char actor[STORE_ID_MAX + 1];
    /* DELETED: whose the token was, so that they can still read it. */
    char owner_id[STORE_ID_MAX + 1];
    int32_t token_kind;
} store_event_t;

/* A position in a list, made by the backend; callers keep it opaque (the
 * service seals it into a page token). */
typedef struct {
    uint16_t len;
    uint8_t bytes[STORE_CURSOR_MAX];
} store_cursor_t;

/* Told of committed changes (the verification cache listens). A change
 * whose outcome is unknown (the database went away during its commit) is
 * told too: forgetting an entry is always safe. everything_changed: the
 * store may have been changed by someone else while this process could
 * not see it (PostgreSQL: the session lock was lost and taken again), so
 * nothing read before may be kept. */
typedef struct {
    void (*token_changed)(void *arg, const uint8_t hash[STORE_HASH_BYTES]);
    void (*user_changed)(void *arg, const char *user_id);
    void (*everything_changed)(void *arg);
    /* A clustered store (PostgreSQL) fences the cache: it may answer from
     * memory only while now (CLOCK_MONOTONIC, ns) is before mono_ns, this
     * node's lease (docs/cluster.md). Called on the loop thread; a store
     * that never calls it leaves the cache unfenced. */
    void (*serve_until)(void *arg, uint64_t mono_ns);
    void *arg;
} store_observer_t;

typedef struct {
    size_t cache_bytes;   /* the backend's own read cache; 0: its default */
    int bulk;             /* loading tools: commits need not be durable until close */
    int must_exist;       /* open only a store that exists (patd check): create nothing */
    int shared;           /* a tool beside a serving patd (check, migrate): no exclusive hold */
    unsigned connections; /* PostgreSQL: the pool's size; 0: its default */
    /* PostgreSQL, a serving patd: its lease, the bound on clock rate drift
     * between nodes (parts per million) and the fixed allowance that end
     * it early (docs/cluster.md); 0: defaults for tests of the store. */
    uint64_t cluster_lease_ms, cluster_drift_ppm, cluster_allowance_ms;
    const char *node_addr; /* where this node listens, shown to the others */
} store_options_t;

/* Opens the store named by url ("rocksdb:DIR", DIR must exist; or a libpq
 * URI "postgresql://..."), creating it if empty and bringing its schema up
 * to date. On failure returns NULL and, if errmsg is not NULL, a malloc'd
 * message to free. */
store_t *store_open(const char *url, const store_options_t *opt, char **errmsg);
/* Closes the store, leaving it quick to open again. NULL is a no-op. */
void store_close(store_t *st);
/* The URL it was opened with (no secret in it), for logs. */
const char *store_url(const store_t *st);
void store_set_observer(store_t *st, const store_observer_t *obs);
/* The key of page tokens: made with the store, the same for every process
 * that opens it. */
void store_page_key(const store_t *st, uint8_t key[STORE_PAGE_KEY]);
/* Compacts or vacuums after a bulk load. Blocks until done. */
void store_compact(store_t *st);
/* Walks the store and checks that it agrees with itself. Writes one line
 * per problem to out; returns the number, or -1 if the walk failed. */
long store_check(store_t *st, FILE *out);

/* ---------------------------------------------------------------- users */

store_status_t store_user_get(store_t *st, const char *user_id, store_user_t *out);
store_status_t store_user_try_get(store_t *st, const char *user_id, store_user_t *out);
/* Creates a user (EXISTS if the id is taken). */
store_status_t store_user_create(store_t *st, const store_user_t *u);
/* The platform's upsert of a human: creates u if missing; otherwise sets
 * user_name, email, name and (if u->role != 0) role, keeping active,
 * created and created_by; a new user with role 0 gets STORE_ROLE_MEMBER. CONFLICT if the id is a
 * service user's. *now receives the user as written, *prev (may be NULL) the one before (user_id ""
 * if it was created). */
store_status_t store_user_upsert(store_t *st, const store_user_t *u, store_user_t *now,
                                 store_user_t *prev);
/* Sets a user's active flag; *out receives the user. With
 * no_active_tokens, CONFLICT if the user has tokens active at now_ms
 * (*n_active receives how many). */
store_status_t store_user_set_active(store_t *st, const char *user_id, int active,
                                     int no_active_tokens, int64_t now_ms, store_user_t *out,
                                     unsigned *n_active);
/* Deletes a user with its tokens, each getting the DELETED event `ev`
 * (seq is taken per token). CONFLICT if one is active at now_ms
 * (*n_active: how many). *ids receives the deleted token ids (malloc'd,
 * free() it; NULL when none), *n_ids their number. */
store_status_t store_user_delete(store_t *st, const char *user_id, int64_t now_ms,
                                 const store_event_t *ev, unsigned *n_active, uint64_t **ids,
                                 size_t *n_ids);
/* Users in user_id order, of one type (0: all), from `after` (len 0: the
 * start). Fills at most `limit` into out (room for limit), *n; *more is 1
 * when more follow, and then *next is where the next page starts. */
store_status_t store_users_list(store_t *st, int32_t user_type, const store_cursor_t *after,
                                unsigned limit, store_user_t *out, unsigned *n, int *more,
                                store_cursor_t *next);

/* ---------------------------------------------------------------- tokens */

store_status_t store_token_get(store_t *st, uint64_t id, store_token_t *out);
store_status_t store_token_get_by_hash(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                       store_token_t *out);
store_status_t store_token_try_get_by_hash(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                           store_token_t *out);
/* The token of a hash and its owner, in one read where the backend can
 * (PostgreSQL: one statement, one round trip): what a cold Verify needs.
 * owner->user_id is "" when the owner does not exist. */
store_status_t store_token_get_with_owner(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                          store_token_t *out, store_user_t *owner);
/* The same for n hashes at once: s[i], out[i], owner[i] for hashes[i]. A
 * backend that reads them in one go (PostgreSQL: one statement) says so
 * with store_reads_in_batches; the others read them one by one. */
void store_tokens_get_with_owners(store_t *st, const uint8_t (*hashes)[STORE_HASH_BYTES], size_t n,
                                  store_token_t *out, store_user_t *owner, store_status_t *s);
int store_reads_in_batches(const store_t *st);
/* Creates t with its CREATED event (ev; NULL for a bulk loader that
 * writes no history), assigning t->id. NOT_FOUND if the
 * owner does not exist, CONFLICT if the owner is deactivated, EXISTS if
 * the owner has a token of this kind with this name. */
store_status_t store_token_create(store_t *st, store_token_t *t, const store_event_t *ev);
/* Sets a token's active flag with its event (REVOKED or RESTORED), unless
 * it already has that value (then nothing is written and *changed is 0).
 * Restoring: CONFLICT if the owner is deactivated. *out: the token. */
store_status_t store_token_set_active(store_t *st, uint64_t id, int active, const store_event_t *ev,
                                      store_token_t *out, int *changed);
/* Deletes a token, its name and its last-used time, and adds the DELETED
 * event ev (the rest of its history stays). CONFLICT if it is active at
 * now_ms. *out: the token as it was. */
store_status_t store_token_delete(store_t *st, uint64_t id, int64_t now_ms, const store_event_t *ev,
                                  store_token_t *out);
/* Tokens of one kind, of one owner (owner != NULL, in name order) or of
 * all (each owner's together, owners in the backend's order); paged as
 * store_users_list. */
store_status_t store_tokens_list(store_t *st, int32_t kind, const char *owner,
                                 const store_cursor_t *after, unsigned limit, store_token_t *out,
                                 unsigned *n, int *more, store_cursor_t *next);

/* Loading tools (patd copy-store): writes users, or tokens keeping their
 * ids (the id counter moves past them), as they are; no history, no
 * checks beyond the store's uniqueness (EXISTS). */
store_status_t store_import_users(store_t *st, const store_user_t *u, size_t n);
store_status_t store_import_tokens(store_t *st, const store_token_t *t, size_t n);
/* The backend's schema version and the newest it knows (for messages). */
void store_schema(const store_t *st, unsigned *version, unsigned *known);

/* ---------------------------------------------------------------- usage */

/* 0 when never used (or not written yet). */
store_status_t store_last_used_get(store_t *st, uint64_t id, int64_t *ms);
/* A sequence number for an event, taken when it happens (it orders the
 * events of one millisecond as they occurred). */
uint64_t store_event_seq(store_t *st);

/* Uses are written in batches: begin, add, commit (durable) or abandon. */
typedef struct store_usage store_usage_t;
store_usage_t *store_usage_begin(store_t *st);
void store_usage_last_used(store_usage_t *b, uint64_t id, int64_t ms);
void store_usage_event(store_usage_t *b, uint64_t id, const store_event_t *ev);
/* Commits and frees the batch. */
store_status_t store_usage_commit(store_usage_t *b);

/* A token's activity, newest first: at most limit events into out. */
store_status_t store_activity_list(store_t *st, uint64_t id, unsigned limit, store_event_t *out,
                                   unsigned *n);
/* Deletes the token's events older than its newest `keep` (0: all). */
store_status_t store_activity_trim(store_t *st, uint64_t id, unsigned keep);
/* The smallest token id above `after` that has events; NOT_FOUND past the
 * last. Pages through the histories for the purge of deleted tokens. */
store_status_t store_activity_next_id(store_t *st, uint64_t after, uint64_t *id);

/* ---------------------------------------------------------------- cluster */

/* Several patd on one PostgreSQL (docs/cluster.md). The link to the others
 * runs on the loop thread, which polls store_cluster_fd and calls
 * store_cluster_step when it is readable or writable, or when the time
 * store_cluster_step asked for has come; store_cluster_step never waits.
 * A store without a cluster (RocksDB, the tools) answers -1 and 0. */
#define STORE_NODE_ID_MAX 96
#define STORE_NODES_MAX   32
typedef struct {
    char node_id[STORE_NODE_ID_MAX];
    char addr[128];
    int64_t applied;       /* the newest change it said it applied */
    int64_t lease_left_ms; /* by this node's reckoning; <= 0: run out */
    int expired, self;
} store_node_t;

typedef struct {
    int clustered;
    int connected;           /* the listening connection is up */
    int ready;               /* the lease holds and every known change is applied */
    int64_t applied, latest; /* this node's applied change, the newest it knows */
    int64_t lease_left_ms;   /* this node's; <= 0: run out (no answers from the cache) */
    uint64_t lease_ms;
    uint64_t fences, fence_wait_ms, fence_timeouts; /* yes->no changes waited for, in all */
    uint64_t reconnects, gaps; /* listening connection remade; caches emptied */
    unsigned n_nodes;
    store_node_t nodes[STORE_NODES_MAX];
} store_cluster_t;

/* The descriptor to poll (-1: none now) and whether to poll for writing;
 * *gen changes whenever it is a new connection. */
int store_cluster_fd(store_t *st, int *want_write, uint64_t *gen);
/* Does what is due; returns the ms until it wants to be called again
 * (0 when the store has no cluster). */
uint64_t store_cluster_step(store_t *st);
void store_cluster_status(store_t *st, store_cluster_t *out);

/* ---------------------------------------------------------------- observing */

/* Durations of committed writes (for /metrics), cumulative since open.
 * counts[i] for writes of at most le_ns[i] (not cumulative),
 * counts[STORE_WRITE_BUCKETS] for the rest. */
#define STORE_WRITE_BUCKETS 12
typedef struct {
    uint64_t le_ns[STORE_WRITE_BUCKETS];
    uint64_t counts[STORE_WRITE_BUCKETS + 1];
    uint64_t sum_ns;
} store_write_stats_t;
void store_write_stats(const store_t *st, store_write_stats_t *out);

/* Fault injection for tests (only patd-testclock's TestingService reaches
 * them): fail_writes makes every change fail with STORE_UNAVAILABLE as a
 * full disk would; decline_tries makes every try_ read decline. */
void store_set_fail_writes(store_t *st, int on);
void store_set_decline_tries(store_t *st, int on);

/* A short phrase for a status, for messages ("not found"). */
const char *store_status_name(store_status_t s);

/* Where the store's log lines go: level 0 debug .. 3 error, and the line
 * without a newline (never a secret). Process-wide; set before store_open.
 * NULL (the default): stderr. */
typedef void (*store_log_fn)(int level, const char *line);
void store_set_log(store_log_fn fn);

#endif
