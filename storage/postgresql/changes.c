/* postgresql/changes: the PostgreSQL backend's changes. Each is one
 * transaction that locks what its precondition reads (the owner's row
 * first, then token rows: internal.h), checks, writes and commits, then
 * tells the observer before it returns. A change whose COMMIT got no
 * answer may or may not have happened: it answers UNAVAILABLE (nothing
 * not committed is acknowledged) and still tells the observer, since
 * forgetting a cache entry is always safe.
 *
 * A change that can alter a Verify answer is also logged, last in its
 * transaction (pg_log_change), for the other nodes, and acknowledged only
 * after pg_cluster_fence (cluster.c): a yes->no change so that no node says
 * yes after it, a no->yes one so that a restore or an activation answers
 * yes on every node as soon as it is acknowledged (docs/cluster.md). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int pg_is_active(const store_token_t *t, int64_t now_ms)
{
    return t->active && (t->expiration == 0 || now_ms < t->expiration);
}

/* Runs one statement of a transaction; on failure rolls it back. */
static PGresult *pg_tx_run(pg_t *g, pg_conn_t *c, int stmt, const pg_params_t *p, store_status_t *s,
                           const char *what)
{
    PGresult *r = pg_run(g, c, stmt, p, s, what);
    if (r == NULL && c->conn) pg_rollback(g, c);
    return r;
}

/* Reads the user row locked (stmt PG_USER_LOCK or PG_USER_SHARE) in the
 * open transaction: OK, NOT_FOUND or a failure (rolled back). */
static store_status_t pg_lock_user(pg_t *g, pg_conn_t *c, int stmt, const char *user_id,
                                   store_user_t *out, const char *what)
{
    pg_params_t p = {0};
    pg_p_text(&p, user_id);
    store_status_t s;
    PGresult *r = pg_tx_run(g, c, stmt, &p, &s, what);
    if (r == NULL) return s;
    s = PQntuples(r) == 1 ? STORE_OK : STORE_NOT_FOUND;
    if (s == STORE_OK) pg_user_row(r, 0, 0, out);
    PQclear(r);
    return s; /* NOT_FOUND leaves the transaction open: pg_put ends it */
}

/* Runs a statement that returns nothing of interest; 0 or -1 (*s). */
static int pg_tx_do(pg_t *g, pg_conn_t *c, int stmt, const pg_params_t *p, store_status_t *s,
                    const char *what)
{
    PGresult *r = pg_tx_run(g, c, stmt, p, s, what);
    PQclear(r);
    return r ? 0 : -1;
}

/* ---------------------------------------------------------------- users */

store_status_t pg_user_create(store_t *st, const store_user_t *u)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c == NULL) return s;
    pg_params_t p = {0};
    pg_p_user(&p, u);
    uint64_t t0 = store_mono_ns();
    PGresult *r = pg_run(g, c, PG_USER_INSERT, &p, &s, "create user");
    if (r) {
        s = strcmp(PQcmdTuples(r), "1") == 0 ? STORE_OK : STORE_EXISTS;
        PQclear(r);
        store_write_observe(st, store_mono_ns() - t0);
        store_write_ok(st);
    }
    pg_put(g, c);
    if (s == STORE_OK || s == STORE_UNAVAILABLE) store_notify_user(st, u->user_id);
    return s;
}

store_status_t pg_user_upsert(store_t *st, const store_user_t *u, store_user_t *now,
                              store_user_t *prev)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    store_user_t old;
    int existed = 0;
    int64_t seq = 0;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c == NULL) return s;
    /* Twice at most: a user made by someone else between our read and our
     * insert is then read locked, and updated. */
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((s = pg_begin(g, c, "write user")) != STORE_OK) break;
        s = pg_lock_user(g, c, PG_USER_LOCK, u->user_id, &old, "write user");
        existed = s == STORE_OK;
        if (s != STORE_OK && s != STORE_NOT_FOUND) break;
        if (existed && old.user_type == STORE_USER_SERVICE) {
            pg_rollback(g, c);
            s = STORE_CONFLICT;
            break;
        }
        store_user_merge(u, existed ? &old : NULL, now);
        pg_params_t p = {0};
        if (existed) {
            pg_p_user(&p, now);
            if (pg_tx_do(g, c, PG_USER_UPDATE, &p, &s, "write user") != 0) break;
            /* What a VerifyResponse carries changed: the others must know;
             * a lower role must be fenced. */
            if ((strcmp(now->user_name, old.user_name) != 0 || strcmp(now->email, old.email) != 0 ||
                 strcmp(now->name, old.name) != 0 || now->role != old.role) &&
                pg_log_change(g, c, now->role < old.role, NULL, 0, u->user_id, &seq, &s) != 0)
                break;
        } else {
            pg_p_user(&p, now);
            PGresult *r = pg_tx_run(g, c, PG_USER_INSERT, &p, &s, "write user");
            if (r == NULL) break;
            int inserted = strcmp(PQcmdTuples(r), "1") == 0;
            PQclear(r);
            if (!inserted) { /* made meanwhile: read it locked, then update */
                pg_rollback(g, c);
                s = STORE_CONFLICT;
                continue;
            }
        }
        s = pg_commit(g, c, "write user");
        break;
    }
    pg_put(g, c);
    if (s == STORE_OK || s == STORE_UNAVAILABLE) store_notify_user(st, u->user_id);
    if (s == STORE_OK) pg_cluster_fence(g, seq); /* seq 0: nothing logged */
    if (prev) {
        if (existed)
            *prev = old;
        else
            prev->user_id[0] = '\0';
    }
    return s;
}

static int32_t pg_kind_of(const store_user_t *u)
{
    return u->user_type == STORE_USER_SERVICE ? STORE_KIND_SERVICE : STORE_KIND_PERSONAL;
}

store_status_t pg_user_set_active(store_t *st, const char *user_id, int active,
                                  int no_active_tokens, int64_t now_ms, store_user_t *out,
                                  unsigned *n_active)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c == NULL) return s;
    int wrote = 0;
    int64_t seq = 0;
    if ((s = pg_begin(g, c, "write user")) != STORE_OK) goto out;
    /* Locked FOR UPDATE: a token being made for this user (which holds the
     * row FOR SHARE) commits first, and the count below sees it. */
    if ((s = pg_lock_user(g, c, PG_USER_LOCK, user_id, out, "write user")) != STORE_OK) goto out;
    if (!active && no_active_tokens) {
        pg_params_t p = {0};
        pg_p_i32(&p, pg_kind_of(out));
        pg_p_text(&p, user_id);
        pg_p_i64(&p, now_ms);
        PGresult *r = pg_tx_run(g, c, PG_COUNT_ACTIVE, &p, &s, "write user");
        if (r == NULL) goto out;
        *n_active = (unsigned)pg_i64(r, 0, 0);
        PQclear(r);
        if (*n_active > 0) {
            pg_rollback(g, c);
            s = STORE_CONFLICT;
            goto out;
        }
    }
    if (out->active == active) {
        pg_rollback(g, c); /* nothing to change */
        goto out;
    }
    out->active = active;
    pg_params_t p = {0};
    pg_p_user(&p, out);
    if (pg_tx_do(g, c, PG_USER_UPDATE, &p, &s, "write user") != 0) goto out;
    if (pg_log_change(g, c, !active, NULL, 0, user_id, &seq, &s) != 0) goto out;
    wrote = 1;
    s = pg_commit(g, c, "write user");
out:
    pg_put(g, c);
    if (wrote || s == STORE_UNAVAILABLE) store_notify_user(st, user_id);
    if (wrote && s == STORE_OK) pg_cluster_fence(g, seq);
    return s;
}

/* Adds one DELETED event per token, as arrays: one statement for them all. */
static int pg_deleted_events(pg_t *g, pg_conn_t *c, const store_token_t *toks, size_t n,
                             const store_event_t *ev, store_status_t *s)
{
    pg_cols_t cols;
    pg_cols_events(&cols);
    for (size_t i = 0; i < n; i++) {
        store_event_t e = *ev;
        e.seq = store_event_seq(&g->base);
        memcpy(e.owner_id, toks[i].owner_id, sizeof(e.owner_id));
        e.token_kind = toks[i].kind;
        pg_cols_event(&cols, toks[i].id, &e);
    }
    pg_params_t p = {0};
    pg_cols_params(&cols, &p);
    int rc = pg_tx_do(g, c, PG_EVENTS_INSERT, &p, s, "delete user");
    pg_cols_free(&cols);
    return rc;
}

store_status_t pg_user_delete(store_t *st, const char *user_id, int64_t now_ms,
                              const store_event_t *ev, unsigned *n_active, uint64_t **ids,
                              size_t *n_ids)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c == NULL) return s;
    store_user_t u;
    store_token_t *toks = NULL;
    size_t n = 0;
    int sent = 0;
    int64_t seq = 0;
    if ((s = pg_begin(g, c, "delete user")) != STORE_OK) goto out;
    if ((s = pg_lock_user(g, c, PG_USER_LOCK, user_id, &u, "delete user")) != STORE_OK) goto out;
    pg_params_t p = {0};
    pg_p_i32(&p, pg_kind_of(&u));
    pg_p_text(&p, user_id);
    PGresult *r = pg_tx_run(g, c, PG_OWNED_LOCK, &p, &s, "delete user");
    if (r == NULL) goto out;
    n = (size_t)PQntuples(r);
    toks = malloc((n ? n : 1) * sizeof(*toks));
    if (toks == NULL) abort();
    for (size_t i = 0; i < n; i++)
        pg_token_row(r, (int)i, 0, &toks[i]);
    PQclear(r);
    for (size_t i = 0; i < n; i++)
        *n_active += (unsigned)pg_is_active(&toks[i], now_ms);
    if (*n_active > 0) {
        pg_rollback(g, c);
        s = STORE_CONFLICT;
        goto out;
    }
    /* Its revoked and expired tokens go with it, in the same transaction. */
    sent = 1;
    if (n && pg_deleted_events(g, c, toks, n, ev, &s) != 0) goto out;
    if (pg_tx_do(g, c, PG_OWNED_DELETE, &p, &s, "delete user") != 0) goto out;
    pg_params_t pu = {0};
    pg_p_text(&pu, user_id);
    if (pg_tx_do(g, c, PG_USER_DELETE, &pu, &s, "delete user") != 0) goto out;
    uint8_t(*hashes)[STORE_HASH_BYTES] = malloc((n ? n : 1) * STORE_HASH_BYTES);
    if (hashes == NULL) abort();
    for (size_t i = 0; i < n; i++)
        memcpy(hashes[i], toks[i].hash, STORE_HASH_BYTES);
    int logged =
        pg_log_change(g, c, 1, (const uint8_t(*)[STORE_HASH_BYTES])hashes, n, user_id, &seq, &s);
    free(hashes);
    if (logged != 0) goto out;
    s = pg_commit(g, c, "delete user");
    if (s == STORE_OK && n) {
        *ids = malloc(n * sizeof(**ids));
        if (*ids == NULL) abort();
        for (size_t i = 0; i < n; i++)
            (*ids)[i] = toks[i].id;
        *n_ids = n;
    }
out:
    pg_put(g, c);
    if (sent && (s == STORE_OK || s == STORE_UNAVAILABLE)) {
        for (size_t i = 0; i < n; i++)
            store_notify_token(st, toks[i].hash);
        store_notify_user(st, user_id);
    }
    if (s == STORE_OK) pg_cluster_fence(g, seq);
    free(toks);
    return s;
}

/* ---------------------------------------------------------------- tokens */

store_status_t pg_token_create(store_t *st, store_token_t *t, const store_event_t *ev)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c == NULL) return s;
    static const store_event_t none = {0};
    pg_params_t p = {0};
    pg_p_text(&p, t->owner_id);
    pg_p_bytes(&p, t->hash, STORE_HASH_BYTES);
    pg_p_text(&p, t->name);
    pg_p_text(&p, t->created_by);
    pg_p_i32(&p, t->kind);
    pg_p_bool(&p, t->scim);
    pg_p_i64(&p, t->created);
    pg_p_i64(&p, t->expiration);
    pg_p_bool(&p, ev != NULL);
    pg_p_event(&p, ev ? ev : &none);
    uint64_t t0 = store_mono_ns();
    PGresult *r = pg_run(g, c, PG_TOKEN_CREATE, &p, &s, "create token");
    if (r) {
        if (PQgetisnull(r, 0, 0))
            s = STORE_NOT_FOUND;
        else if (!pg_bool(r, 0, 0))
            s = STORE_CONFLICT;
        else if (PQgetisnull(r, 0, 1))
            s = STORE_EXISTS;
        else {
            t->id = (uint64_t)pg_i64(r, 0, 1);
            t->active = 1;
            s = STORE_OK;
            store_write_observe(st, store_mono_ns() - t0);
            store_write_ok(st);
        }
        PQclear(r);
    } else if (s == STORE_UNAVAILABLE) {
        store_write_failed(st, "the database did not take the change", "create token");
    }
    pg_put(g, c);
    /* A new hash: no cache can hold an answer for it, nothing to tell. */
    return s;
}

/* Opens a transaction holding the token's owner FOR SHARE (owners never
 * change, so a first read finds it) and the token FOR UPDATE. */
static store_status_t pg_lock_token(pg_t *g, pg_conn_t *c, uint64_t id, store_token_t *out,
                                    store_user_t *owner, const char *what)
{
    pg_params_t p = {0};
    pg_p_i64(&p, (int64_t)id);
    store_status_t s;
    PGresult *r = pg_run(g, c, PG_TOKEN_GET, &p, &s, what);
    if (r == NULL) return s;
    s = PQntuples(r) == 1 ? STORE_OK : STORE_NOT_FOUND;
    if (s == STORE_OK) pg_token_row(r, 0, 0, out);
    PQclear(r);
    if (s != STORE_OK) return s;
    if ((s = pg_begin(g, c, what)) != STORE_OK) return s;
    s = pg_lock_user(g, c, PG_USER_SHARE, out->owner_id, owner, what);
    if (s != STORE_OK) return s; /* the owner went: so did the token */
    r = pg_tx_run(g, c, PG_TOKEN_LOCK, &p, &s, what);
    if (r == NULL) return s;
    s = PQntuples(r) == 1 ? STORE_OK : STORE_NOT_FOUND;
    if (s == STORE_OK) pg_token_row(r, 0, 0, out);
    PQclear(r);
    if (s != STORE_OK) pg_rollback(g, c); /* deleted meanwhile */
    return s;
}

/* Adds ev for token t in the open transaction. */
static int pg_add_event(pg_t *g, pg_conn_t *c, uint64_t id, const store_event_t *ev,
                        store_status_t *s, const char *what)
{
    pg_params_t p = {0};
    pg_p_i64(&p, (int64_t)id);
    pg_p_event(&p, ev);
    return pg_tx_do(g, c, PG_EVENT_INSERT, &p, s, what);
}

store_status_t pg_token_set_active(store_t *st, uint64_t id, int active, const store_event_t *ev,
                                   store_token_t *out, int *changed)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c == NULL) return s;
    store_user_t owner;
    int sent = 0;
    int64_t seq = 0;
    if ((s = pg_lock_token(g, c, id, out, &owner, "write token")) != STORE_OK) goto out;
    if (out->active == active) {
        pg_rollback(g, c);
        goto out;
    }
    /* A restore while the owner is deactivated would bring an old token
     * back the moment the owner is activated. */
    if (active && !owner.active) {
        pg_rollback(g, c);
        s = STORE_CONFLICT;
        goto out;
    }
    sent = 1;
    pg_params_t p = {0};
    pg_p_i64(&p, (int64_t)id);
    pg_p_bool(&p, active);
    if (pg_tx_do(g, c, PG_TOKEN_SET_ACTIVE, &p, &s, "write token") != 0) goto out;
    if (pg_add_event(g, c, id, ev, &s, "write token") != 0) goto out;
    if (pg_log_change(g, c, !active, (const uint8_t(*)[STORE_HASH_BYTES])out->hash, 1, NULL, &seq,
                      &s) != 0)
        goto out;
    if ((s = pg_commit(g, c, "write token")) == STORE_OK) {
        out->active = active;
        *changed = 1;
    }
out:
    pg_put(g, c);
    if (sent && (s == STORE_OK || s == STORE_UNAVAILABLE)) store_notify_token(st, out->hash);
    if (sent && s == STORE_OK) pg_cluster_fence(g, seq);
    return s;
}

store_status_t pg_token_delete(store_t *st, uint64_t id, int64_t now_ms, const store_event_t *ev,
                               store_token_t *out)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c == NULL) return s;
    store_user_t owner;
    int sent = 0;
    int64_t seq = 0;
    if ((s = pg_lock_token(g, c, id, out, &owner, "delete token")) != STORE_OK) goto out;
    if (pg_is_active(out, now_ms)) {
        pg_rollback(g, c);
        s = STORE_CONFLICT;
        goto out;
    }
    sent = 1;
    store_event_t e = *ev;
    memcpy(e.owner_id, out->owner_id, sizeof(e.owner_id));
    e.token_kind = out->kind;
    pg_params_t p = {0};
    pg_p_i64(&p, (int64_t)id);
    if (pg_tx_do(g, c, PG_TOKEN_DELETE, &p, &s, "delete token") != 0) goto out;
    if (pg_add_event(g, c, id, &e, &s, "delete token") != 0) goto out;
    if (pg_log_change(g, c, 1, (const uint8_t(*)[STORE_HASH_BYTES])out->hash, 1, NULL, &seq, &s) !=
        0)
        goto out;
    s = pg_commit(g, c, "delete token");
out:
    pg_put(g, c);
    if (sent && (s == STORE_OK || s == STORE_UNAVAILABLE)) store_notify_token(st, out->hash);
    if (sent && s == STORE_OK) pg_cluster_fence(g, seq);
    return s;
}

/* ---------------------------------------------------------------- import */

/* Runs an import statement whose parameters are the columns, and frees them. */
static store_status_t pg_import(pg_t *g, pg_cols_t *cols, int stmt, const char *what)
{
    pg_params_t p = {0};
    pg_cols_params(cols, &p);
    store_status_t s;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c) {
        PGresult *r = pg_run(g, c, stmt, &p, &s, what);
        if (r) s = STORE_OK;
        PQclear(r);
        pg_put(g, c);
    }
    pg_cols_free(cols);
    return s;
}

store_status_t pg_import_users(store_t *st, const store_user_t *u, size_t n)
{
    static const uint32_t oids[9] = {PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT,
                                     PG_OID_TEXT, PG_OID_TEXT, PG_OID_INT4,
                                     PG_OID_INT4, PG_OID_BOOL, PG_OID_INT8};
    pg_cols_t c;
    pg_cols_init(&c, oids, 9);
    for (size_t i = 0; i < n; i++) {
        pg_array_text(&c.a[0], u[i].user_id);
        pg_array_text(&c.a[1], u[i].user_name);
        pg_array_text(&c.a[2], u[i].email);
        pg_array_text(&c.a[3], u[i].name);
        pg_array_text(&c.a[4], u[i].created_by);
        pg_array_i32(&c.a[5], u[i].role);
        pg_array_i32(&c.a[6], u[i].user_type);
        pg_array_bool(&c.a[7], u[i].active);
        pg_array_i64(&c.a[8], u[i].created);
    }
    return pg_import(pg_of(st), &c, PG_IMPORT_USERS, "import users");
}

store_status_t pg_import_tokens(store_t *st, const store_token_t *t, size_t n)
{
    static const uint32_t oids[10] = {PG_OID_INT8, PG_OID_BYTEA, PG_OID_TEXT, PG_OID_TEXT,
                                      PG_OID_TEXT, PG_OID_INT4,  PG_OID_BOOL, PG_OID_BOOL,
                                      PG_OID_INT8, PG_OID_INT8};
    pg_cols_t c;
    pg_cols_init(&c, oids, 10);
    for (size_t i = 0; i < n; i++) {
        pg_array_i64(&c.a[0], (int64_t)t[i].id);
        pg_array_bytes(&c.a[1], t[i].hash, STORE_HASH_BYTES);
        pg_array_text(&c.a[2], t[i].name);
        pg_array_text(&c.a[3], t[i].owner_id);
        pg_array_text(&c.a[4], t[i].created_by);
        pg_array_i32(&c.a[5], t[i].kind);
        pg_array_bool(&c.a[6], t[i].scim);
        pg_array_bool(&c.a[7], t[i].active);
        pg_array_i64(&c.a[8], t[i].created);
        pg_array_i64(&c.a[9], t[i].expiration);
    }
    return pg_import(pg_of(st), &c, PG_IMPORT_TOKENS, "import tokens");
}

/* ---------------------------------------------------------------- usage */

/* A flush's last-used times and events as arrays: one statement. */
typedef struct {
    store_usage_t base; /* first */
    pg_cols_t lu;       /* token_id, ms */
    pg_cols_t ev;       /* the PG_EVENT_COLS */
} pg_usage_t;

store_usage_t *pg_usage_begin(store_t *st)
{
    static const uint32_t lu_oids[2] = {PG_OID_INT8, PG_OID_INT8};
    pg_usage_t *b = calloc(1, sizeof(*b));
    if (b == NULL) abort();
    b->base.st = st;
    pg_cols_init(&b->lu, lu_oids, 2);
    pg_cols_events(&b->ev);
    return &b->base;
}

void pg_usage_last_used(store_usage_t *base, uint64_t id, int64_t ms)
{
    pg_usage_t *b = (pg_usage_t *)base;
    pg_array_i64(&b->lu.a[0], (int64_t)id);
    pg_array_i64(&b->lu.a[1], ms);
}

void pg_usage_event(store_usage_t *base, uint64_t id, const store_event_t *ev)
{
    pg_cols_event(&((pg_usage_t *)base)->ev, id, ev);
}

void pg_usage_abandon(store_usage_t *base)
{
    pg_usage_t *b = (pg_usage_t *)base;
    pg_cols_free(&b->lu);
    pg_cols_free(&b->ev);
    free(b);
}

store_status_t pg_usage_commit(store_usage_t *base)
{
    pg_usage_t *b = (pg_usage_t *)base;
    pg_t *g = pg_of(base->st);
    store_status_t s = STORE_OK;
    if (b->lu.a[0].n || b->ev.a[0].n) {
        pg_params_t p = {0};
        pg_cols_params(&b->lu, &p);
        pg_cols_params(&b->ev, &p);
        pg_conn_t *c = pg_get_writer(g, &s);
        if (c) {
            uint64_t t0 = store_mono_ns();
            PGresult *r = pg_run(g, c, PG_USAGE, &p, &s, "usage write");
            if (r) {
                s = STORE_OK;
                store_write_observe(base->st, store_mono_ns() - t0);
                store_write_ok(base->st);
            } else if (s == STORE_UNAVAILABLE) {
                store_write_failed(base->st, "the database did not take the batch", "usage write");
            }
            PQclear(r);
            pg_put(g, c);
        }
    }
    pg_usage_abandon(base);
    return s;
}

store_status_t pg_activity_trim(store_t *st, uint64_t id, unsigned keep)
{
    pg_t *g = pg_of(st);
    pg_params_t p = {0};
    pg_p_i64(&p, (int64_t)id);
    pg_p_i32(&p, (int32_t)keep);
    store_status_t s;
    pg_conn_t *c = pg_get_writer(g, &s);
    if (c == NULL) return s;
    PGresult *r = pg_run(g, c, PG_ACTIVITY_TRIM, &p, &s, "trim activity");
    if (r) s = STORE_OK;
    PQclear(r);
    pg_put(g, c);
    return s;
}
