/* postgresql/internal.h: the PostgreSQL backend's state and helpers, shared
 * by its files and by nothing outside storage/postgresql/.
 *
 * Tables (schema.c has them, in numbered migrations; docs/postgres.md
 * says what each index is for):
 *   patd_schema_migrations  version -> when it was applied
 *   patd_meta               "page_key" -> 32 random bytes
 *   patd_users              user_id -> the user
 *   patd_tokens             id -> the token; hash unique; (kind, owner_id,
 *                           name) unique, so duplicate names are refused by
 *                           the database itself, across processes
 *   patd_last_used          token_id -> Unix ms
 *   patd_activity           (token_id, time, seq) -> the event
 *   patd_change_seq         the number of the newest logged change
 *   patd_changes            seq -> the token hashes and user ids it touched
 *   patd_nodes              node_id -> its lease and how far it applied
 * and the sequence patd_token_ids (ids are never reused: a sequence never
 * goes back, not even in a rolled-back transaction or after a crash).
 *
 * Locking order, which every change follows so two changes can never wait
 * for each other: the owner's row first (FOR SHARE to change one of its
 * tokens, FOR UPDATE to change the user or all its tokens), then token
 * rows. A precondition is read after its row is locked, so it holds at the
 * commit. */
#ifndef PAT_PG_INTERNAL_H
#define PAT_PG_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

#include "backend.h"

#define PG_SCHEMA_KNOWN   2 /* the newest migration this patd has */
#define PG_DEFAULT_CONNS  8
#define PG_MAX_PARAMS     24
#define PG_BACKOFF_MIN_NS (50ull * 1000000)   /* first retry after an outage */
#define PG_BACKOFF_MAX_NS (2000ull * 1000000) /* retries at least this often */

/* The prepared statements, by number (their text is in pg.c's table). */
enum {
    PG_USER_GET,
    PG_USER_LOCK,  /* FOR UPDATE */
    PG_USER_SHARE, /* FOR SHARE */
    PG_USER_INSERT,
    PG_USER_UPDATE,
    PG_USER_DELETE,
    PG_USERS_LIST,
    PG_TOKEN_GET,
    PG_TOKEN_LOCK,
    PG_TOKEN_BY_HASH,
    PG_TOKEN_WITH_OWNER,
    PG_TOKENS_WITH_OWNERS,
    PG_TOKEN_CREATE,
    PG_TOKEN_SET_ACTIVE,
    PG_TOKEN_DELETE,
    PG_OWNED_LOCK,
    PG_OWNED_DELETE,
    PG_COUNT_ACTIVE,
    PG_TOKENS_OF_OWNER,
    PG_TOKENS_ALL,
    PG_EVENT_INSERT,
    PG_EVENTS_INSERT,
    PG_LAST_USED_GET,
    PG_USAGE,
    PG_ACTIVITY_LIST,
    PG_ACTIVITY_TRIM,
    PG_ACTIVITY_NEXT,
    PG_IMPORT_USERS,
    PG_IMPORT_TOKENS,
    PG_CHANGE_LOG,
    PG_NODES,
    PG_STMT__COUNT
};

/* The cluster link's statements (pg_cluster_sql). */
enum {
    PG_CL_SETUP,
    PG_CL_JOIN,
    PG_CL_RENEW,
    PG_CL_ACK,
    PG_CL_EXPIRE,
    PG_CL_FETCH,
    PG_CL_LEAVE,
    PG_CL__COUNT
};

typedef struct pg_cluster pg_cluster_t;

typedef struct {
    PGconn *conn; /* NULL: not connected (or dropped after a failure) */
    int busy;     /* handed out (guarded by pg_t.lock) */
} pg_conn_t;

typedef struct {
    store_t base; /* first: store.c hands us &base */
    char *conninfo;
    int bulk, shared;

    pthread_mutex_t lock; /* the pool and the outage state */
    pthread_cond_t freed;
    pg_conn_t *conns;
    unsigned n_conns;
    int down;            /* in an outage: logged at its start and end */
    uint64_t down_since; /* monotonic ns */
    uint64_t retry_at;   /* no connection attempt before this */
    uint64_t backoff;    /* the next wait after a failed attempt */
    uint64_t up_gen;     /* counts the cluster link's sightings of the database's return */

    _Atomic int warned_async, warned_fsync; /* each warning once */
    pg_cluster_t *cl; /* a serving patd's link to the others (cluster.c); NULL for tools */
} pg_t;

static inline pg_t *pg_of(store_t *st)
{
    return (pg_t *)st;
}

/* Parameters in binary: each value is kept in the struct (ints) or points
 * at the caller's memory (text, bytes, arrays). */
typedef struct {
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];
    uint8_t num[PG_MAX_PARAMS][8];
    int n;
} pg_params_t;

void pg_p_text(pg_params_t *p, const char *s);
void pg_p_i64(pg_params_t *p, int64_t v);
void pg_p_i32(pg_params_t *p, int32_t v);
void pg_p_bool(pg_params_t *p, int v);
void pg_p_bytes(pg_params_t *p, const void *b, size_t len);

/* A one-dimensional array without NULLs in binary form, for unnest(). */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
    uint32_t n, oid;
} pg_array_t;

void pg_array_init(pg_array_t *a, uint32_t elem_oid);
void pg_array_i64(pg_array_t *a, int64_t v);
void pg_array_i32(pg_array_t *a, int32_t v);
void pg_array_bool(pg_array_t *a, int v);
void pg_array_text(pg_array_t *a, const char *s);
void pg_array_bytes(pg_array_t *a, const void *b, size_t len);
/* Fills in the header and adds it as a parameter; free with pg_array_free. */
void pg_p_array(pg_params_t *p, pg_array_t *a);
void pg_array_free(pg_array_t *a);

/* The columns of rows written through unnest(): one array each. */
#define PG_MAX_COLS 11
typedef struct {
    pg_array_t a[PG_MAX_COLS];
    int n;
} pg_cols_t;
void pg_cols_init(pg_cols_t *c, const uint32_t *oids, int n);
/* Adds every column as a parameter. */
void pg_cols_params(pg_cols_t *c, pg_params_t *p);
void pg_cols_free(pg_cols_t *c);
/* The PG_EVENT_COLS of patd_activity. */
void pg_cols_events(pg_cols_t *c);
void pg_cols_event(pg_cols_t *c, uint64_t id, const store_event_t *ev);
#define PG_OID_BOOL  16
#define PG_OID_BYTEA 17
#define PG_OID_INT8  20
#define PG_OID_INT4  23
#define PG_OID_TEXT  25

/* Results are binary too. */
int64_t pg_i64(const PGresult *r, int row, int col);
int32_t pg_i32(const PGresult *r, int row, int col);
int pg_bool(const PGresult *r, int row, int col);
void pg_text(const PGresult *r, int row, int col, char *dst, size_t cap);

/* The pool. pg_get: a connected connection, or NULL and *s (UNAVAILABLE
 * during an outage's backoff, at once). pg_put gives it back; a connection
 * that failed is dropped and made again by a later pg_get. */
pg_conn_t *pg_get(pg_t *g, store_status_t *s);
void pg_put(pg_t *g, pg_conn_t *c);
/* For changes: as pg_get, but UNAVAILABLE while writes fail by injection. */
pg_conn_t *pg_get_writer(pg_t *g, store_status_t *s);
/* A new connection with patd's defaults, not yet connected (PQconnectPoll). */
PGconn *pg_connect_start(pg_t *g);
/* The cluster link reached the database again: the pool need not wait out
 * its backoff. */
void pg_database_back(pg_t *g);

/* Runs a prepared statement. NULL on failure with *s set (EXISTS for a
 * unique violation, UNAVAILABLE otherwise, logged once per outage). */
PGresult *pg_run(pg_t *g, pg_conn_t *c, int stmt, const pg_params_t *p, store_status_t *s,
                 const char *what);
/* BEGIN, COMMIT (timed, as a write) and ROLLBACK. */
store_status_t pg_begin(pg_t *g, pg_conn_t *c, const char *what);
store_status_t pg_commit(pg_t *g, pg_conn_t *c, const char *what);
void pg_rollback(pg_t *g, pg_conn_t *c);
/* A result's columns, read into the domain types. The column lists are
 * PG_USER_COLS and PG_TOKEN_COLS, in this order. */
void pg_user_row(const PGresult *r, int row, int col, store_user_t *u);
void pg_token_row(const PGresult *r, int row, int col, store_token_t *t);
/* A user's row: PG_USER_INSERT's and PG_USER_UPDATE's parameters. */
void pg_p_user(pg_params_t *p, const store_user_t *u);
void pg_p_event(pg_params_t *p, const store_event_t *ev);
#define PG_USER_COLS "user_id, user_name, email, name, created_by, role, user_type, active, created"
#define PG_TOKEN_COLS                                                                              \
    "id, hash, name, owner_id, created_by, kind, scim, active, created, expiration"
#define PG_USER_NCOLS  9
#define PG_TOKEN_NCOLS 10

/* The migrations (schema.c). */
typedef struct {
    unsigned version;
    const char *what;
    const char *sql;
} pg_migration_t;
extern const pg_migration_t pg_migrations[];
extern const size_t pg_n_migrations;
extern const char *const pg_statements[PG_STMT__COUNT];
extern const char *const pg_cluster_sql[PG_CL__COUNT];

/* The cluster (cluster.c). pg_cluster_new joins at open (0, or -1 with
 * *errmsg); pg_cluster_leave deregisters at a clean close; free after. */
int pg_cluster_new(pg_t *g, const store_options_t *opt, char **errmsg);
void pg_cluster_leave(pg_t *g);
void pg_cluster_free(pg_t *g);
/* In a change's open transaction, last before COMMIT: logs what it touched
 * (n hashes, and user_id if not NULL) and announces it. fence: it can turn
 * a Verify from yes to no. *seq: its number. 0, or -1 with *s (rolled back). */
int pg_log_change(pg_t *g, pg_conn_t *c, int fence, const uint8_t (*hashes)[STORE_HASH_BYTES],
                  size_t n, const char *user_id, int64_t *seq, store_status_t *s);
/* After a fencing change committed as seq: waits until every other live
 * node has applied it, or its lease has run out (docs/cluster.md). */
void pg_cluster_fence(pg_t *g, int64_t seq);
/* store.h's store_cluster_*, run on the loop thread. */
int pg_cluster_fd(store_t *st, int *want_write, uint64_t *gen);
uint64_t pg_cluster_step(store_t *st);
void pg_cluster_status(store_t *st, store_cluster_t *out);

/* The operations (the backend table in pg.c lists them). */
store_status_t pg_user_create(store_t *st, const store_user_t *u);
store_status_t pg_user_upsert(store_t *st, const store_user_t *u, store_user_t *now,
                              store_user_t *prev);
store_status_t pg_user_set_active(store_t *st, const char *user_id, int active,
                                  int no_active_tokens, int64_t now_ms, store_user_t *out,
                                  unsigned *n_active);
store_status_t pg_user_delete(store_t *st, const char *user_id, int64_t now_ms,
                              const store_event_t *ev, unsigned *n_active, uint64_t **ids,
                              size_t *n_ids);
store_status_t pg_token_create(store_t *st, store_token_t *t, const store_event_t *ev);
store_status_t pg_token_set_active(store_t *st, uint64_t id, int active, const store_event_t *ev,
                                   store_token_t *out, int *changed);
store_status_t pg_token_delete(store_t *st, uint64_t id, int64_t now_ms, const store_event_t *ev,
                               store_token_t *out);
store_status_t pg_import_users(store_t *st, const store_user_t *u, size_t n);
store_status_t pg_import_tokens(store_t *st, const store_token_t *t, size_t n);
store_usage_t *pg_usage_begin(store_t *st);
void pg_usage_last_used(store_usage_t *b, uint64_t id, int64_t ms);
void pg_usage_event(store_usage_t *b, uint64_t id, const store_event_t *ev);
store_status_t pg_usage_commit(store_usage_t *b);
void pg_usage_abandon(store_usage_t *b);
store_status_t pg_activity_trim(store_t *st, uint64_t id, unsigned keep);
long pg_check(store_t *st, FILE *out);

#endif
