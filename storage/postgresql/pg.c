/* postgresql: the PostgreSQL backend's connections, schema, session lock
 * and reads (changes are in changes.c, the SQL in schema.c).
 *
 * DESIGN. Worker threads share a bounded pool of connections, each with
 * every statement prepared once; parameters and results travel in binary,
 * so no value is ever quoted into SQL. Nothing here runs on the loop
 * thread: the try_ reads always decline, and the request goes to a worker.
 *
 * Outages. A failed connection is dropped; the next request makes a new
 * one, no sooner than a backoff (50 ms doubling to 2 s) after the last
 * failed attempt, and during the backoff requests answer UNAVAILABLE at
 * once instead of queueing behind connection timeouts. The outage is
 * logged once with its cause and once at its end.
 *
 * Several servers. Any number of patd serve one database, each with its
 * own verification cache, kept exact by cluster.c: every change that can
 * alter a Verify answer is logged and announced in its transaction, and
 * a change that can turn a yes into a no waits until every live node has
 * applied it or its lease has run out (docs/cluster.md). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* pg_advisory_lock(PG_LOCK_CLASS, n): 'patd', then what is locked. */
#define PG_LOCK_CLASS   0x70617464
#define PG_LOCK_MIGRATE 2

/* ---------------------------------------------------------------- parameters */

static void pg_p_add(pg_params_t *p, const void *v, int len, int fmt)
{
    if (p->n >= PG_MAX_PARAMS) abort(); /* a statement's parameters are fixed */
    p->v[p->n] = v;
    p->len[p->n] = len;
    p->fmt[p->n] = fmt;
    p->n++;
}

void pg_p_text(pg_params_t *p, const char *s)
{
    pg_p_add(p, s, (int)strlen(s), 0); /* text format is the same bytes */
}

void pg_p_bytes(pg_params_t *p, const void *b, size_t len)
{
    pg_p_add(p, b, (int)len, 1);
}

void pg_p_i64(pg_params_t *p, int64_t v)
{
    uint8_t *b = p->num[p->n];
    for (int i = 7; i >= 0; i--, v = (int64_t)((uint64_t)v >> 8))
        b[i] = (uint8_t)v;
    pg_p_add(p, b, 8, 1);
}

void pg_p_i32(pg_params_t *p, int32_t v)
{
    uint32_t n = htonl((uint32_t)v);
    memcpy(p->num[p->n], &n, 4);
    pg_p_add(p, p->num[p->n], 4, 1);
}

void pg_p_bool(pg_params_t *p, int v)
{
    p->num[p->n][0] = v != 0;
    pg_p_add(p, p->num[p->n], 1, 1);
}

void pg_p_user(pg_params_t *p, const store_user_t *u)
{
    pg_p_text(p, u->user_id);
    pg_p_text(p, u->user_name);
    pg_p_text(p, u->email);
    pg_p_text(p, u->name);
    pg_p_text(p, u->created_by);
    pg_p_i32(p, u->role);
    pg_p_i32(p, u->user_type);
    pg_p_bool(p, u->active);
    pg_p_i64(p, u->created);
}

void pg_p_event(pg_params_t *p, const store_event_t *ev)
{
    pg_p_i64(p, ev->time);
    pg_p_i64(p, (int64_t)ev->seq);
    pg_p_i32(p, ev->kind);
    pg_p_i64(p, ev->count);
    pg_p_i64(p, ev->first_time);
    pg_p_text(p, ev->path);
    pg_p_text(p, ev->client_ip);
    pg_p_text(p, ev->actor);
    pg_p_text(p, ev->owner_id);
    pg_p_i32(p, ev->token_kind);
}

/* ---------------------------------------------------------------- arrays */

#define PG_ARRAY_HEADER 20

static void pg_array_room(pg_array_t *a, size_t more)
{
    if (a->len + more <= a->cap) return;
    while (a->len + more > a->cap)
        a->cap = a->cap ? a->cap * 2 : 256;
    a->buf = realloc(a->buf, a->cap);
    if (a->buf == NULL) abort();
}

static void pg_put32(uint8_t *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

void pg_array_init(pg_array_t *a, uint32_t elem_oid)
{
    memset(a, 0, sizeof(*a));
    a->oid = elem_oid;
    pg_array_room(a, PG_ARRAY_HEADER);
    a->len = PG_ARRAY_HEADER;
}

void pg_array_bytes(pg_array_t *a, const void *b, size_t len)
{
    pg_array_room(a, 4 + len);
    pg_put32(a->buf + a->len, (uint32_t)len);
    if (len) memcpy(a->buf + a->len + 4, b, len);
    a->len += 4 + len;
    a->n++;
}

void pg_array_text(pg_array_t *a, const char *s)
{
    pg_array_bytes(a, s, strlen(s));
}

void pg_array_i64(pg_array_t *a, int64_t v)
{
    uint8_t b[8];
    for (int i = 7; i >= 0; i--, v = (int64_t)((uint64_t)v >> 8))
        b[i] = (uint8_t)v;
    pg_array_bytes(a, b, 8);
}

void pg_array_i32(pg_array_t *a, int32_t v)
{
    uint8_t b[4];
    pg_put32(b, (uint32_t)v);
    pg_array_bytes(a, b, 4);
}

void pg_array_bool(pg_array_t *a, int v)
{
    uint8_t b = v != 0;
    pg_array_bytes(a, &b, 1);
}

void pg_p_array(pg_params_t *p, pg_array_t *a)
{
    /* ndim, has-nulls, element type, then (dimension, lower bound); an
     * empty array has no dimension. */
    pg_put32(a->buf, a->n ? 1 : 0);
    pg_put32(a->buf + 4, 0);
    pg_put32(a->buf + 8, a->oid);
    pg_put32(a->buf + 12, a->n);
    pg_put32(a->buf + 16, 1);
    if (a->n == 0) a->len = 12;
    pg_p_add(p, (const char *)a->buf, (int)a->len, 1);
}

void pg_array_free(pg_array_t *a)
{
    free(a->buf);
    a->buf = NULL;
}

void pg_cols_init(pg_cols_t *c, const uint32_t *oids, int n)
{
    c->n = n;
    for (int i = 0; i < n; i++)
        pg_array_init(&c->a[i], oids[i]);
}

void pg_cols_params(pg_cols_t *c, pg_params_t *p)
{
    for (int i = 0; i < c->n; i++)
        pg_p_array(p, &c->a[i]);
}

void pg_cols_free(pg_cols_t *c)
{
    for (int i = 0; i < c->n; i++)
        pg_array_free(&c->a[i]);
}

void pg_cols_events(pg_cols_t *c)
{
    static const uint32_t oids[11] = {PG_OID_INT8, PG_OID_INT8, PG_OID_INT8, PG_OID_INT4,
                                      PG_OID_INT8, PG_OID_INT8, PG_OID_TEXT, PG_OID_TEXT,
                                      PG_OID_TEXT, PG_OID_TEXT, PG_OID_INT4};
    pg_cols_init(c, oids, 11);
}

void pg_cols_event(pg_cols_t *c, uint64_t id, const store_event_t *ev)
{
    pg_array_i64(&c->a[0], (int64_t)id);
    pg_array_i64(&c->a[1], ev->time);
    pg_array_i64(&c->a[2], (int64_t)ev->seq);
    pg_array_i32(&c->a[3], ev->kind);
    pg_array_i64(&c->a[4], ev->count);
    pg_array_i64(&c->a[5], ev->first_time);
    pg_array_text(&c->a[6], ev->path);
    pg_array_text(&c->a[7], ev->client_ip);
    pg_array_text(&c->a[8], ev->actor);
    pg_array_text(&c->a[9], ev->owner_id);
    pg_array_i32(&c->a[10], ev->token_kind);
}

/* ---------------------------------------------------------------- results */

int64_t pg_i64(const PGresult *r, int row, int col)
{
    const uint8_t *b = (const uint8_t *)PQgetvalue(r, row, col);
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return (int64_t)v;
}

int32_t pg_i32(const PGresult *r, int row, int col)
{
    uint32_t v;
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 4) return 0;
    memcpy(&v, PQgetvalue(r, row, col), 4);
    return (int32_t)ntohl(v);
}

int pg_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetlength(r, row, col) == 1 &&
           PQgetvalue(r, row, col)[0] != 0;
}

void pg_text(const PGresult *r, int row, int col, char *dst, size_t cap)
{
    store_copy_str(dst, cap, PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

void pg_user_row(const PGresult *r, int row, int col, store_user_t *u)
{
    pg_text(r, row, col, u->user_id, sizeof(u->user_id));
    pg_text(r, row, col + 1, u->user_name, sizeof(u->user_name));
    pg_text(r, row, col + 2, u->email, sizeof(u->email));
    pg_text(r, row, col + 3, u->name, sizeof(u->name));
    pg_text(r, row, col + 4, u->created_by, sizeof(u->created_by));
    u->role = pg_i32(r, row, col + 5);
    u->user_type = pg_i32(r, row, col + 6);
    u->active = pg_bool(r, row, col + 7);
    u->created = pg_i64(r, row, col + 8);
}

void pg_token_row(const PGresult *r, int row, int col, store_token_t *t)
{
    t->id = (uint64_t)pg_i64(r, row, col);
    memset(t->hash, 0, sizeof(t->hash));
    if (PQgetlength(r, row, col + 1) == STORE_HASH_BYTES)
        memcpy(t->hash, PQgetvalue(r, row, col + 1), STORE_HASH_BYTES);
    pg_text(r, row, col + 2, t->name, sizeof(t->name));
    pg_text(r, row, col + 3, t->owner_id, sizeof(t->owner_id));
    pg_text(r, row, col + 4, t->created_by, sizeof(t->created_by));
    t->kind = pg_i32(r, row, col + 5);
    t->scim = pg_bool(r, row, col + 6);
    t->active = pg_bool(r, row, col + 7);
    t->created = pg_i64(r, row, col + 8);
    t->expiration = pg_i64(r, row, col + 9);
}

/* ---------------------------------------------------------------- connections */

/* A libpq message as one line (they end in a newline, some have two). */
static void pg_oneline(const char *msg, char *out, size_t cap)
{
    size_t k = 0;
    for (const char *p = msg ? msg : ""; *p && k + 1 < cap; p++)
        out[k++] = *p == '\n' ? ' ' : *p;
    while (k > 0 && out[k - 1] == ' ')
        k--;
    out[k] = '\0';
}

/* The server's notices ("relation already exists, skipping") are for a
 * person at psql: the debug log has them. */
static void pg_notice(void *arg, const char *message)
{
    (void)arg;
    char line[256];
    pg_oneline(message, line, sizeof(line));
    store_log(STORE_LOG_DEBUG, "postgresql: %s", line);
}

/* Our defaults first: whatever the URL says comes later and wins. A
 * database that vanishes without a word (a partition, a dead machine) is
 * found out by keepalives when the connection is idle, and by
 * tcp_user_timeout when a statement is in flight: without it a query
 * waits for TCP's retransmissions to give up, a quarter of an hour. */
static const char *const pg_conn_keys[] = {
    "connect_timeout",  "application_name", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "dbname",          NULL};
#define PG_CONN_VALS(g)                                                                            \
    {                                                                                              \
        "5", "patd", "10", "5", "3", "5000", (g)->conninfo, NULL                                   \
    }

PGconn *pg_connect_start(pg_t *g)
{
    const char *vals[] = PG_CONN_VALS(g);
    return PQconnectStartParams(pg_conn_keys, vals, 1);
}

/* Connects and prepares every statement; NULL and *why on failure. */
static PGconn *pg_connect(pg_t *g, int prepare, char *why, size_t cap)
{
    const char *vals[] = PG_CONN_VALS(g);
    PGconn *c = PQconnectdbParams(pg_conn_keys, vals, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        pg_oneline(c ? PQerrorMessage(c) : "out of memory", why, cap);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, pg_notice, NULL);
    /* An acknowledged change is a committed one: synchronous_commit must
     * not be off (PostgreSQL's default is on). A stronger setting (on,
     * remote_write, remote_apply with a synchronous standby) is the
     * operator's and is kept. A loading tool (bulk) does not wait until it
     * closes. */
    PGresult *r = PQexec(c, "SHOW synchronous_commit");
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    int off = ok && strcmp(PQgetvalue(r, 0, 0), "off") == 0;
    PQclear(r);
    if (ok && (g->bulk || off)) {
        if (off && !g->bulk && !atomic_exchange(&g->warned_async, 1))
            store_log(STORE_LOG_WARN, "postgresql: synchronous_commit is off for this role or "
                                      "database; patd's sessions set it on, since an "
                                      "acknowledged change must be committed");
        r = PQexec(c, g->bulk ? "SET synchronous_commit = off" : "SET synchronous_commit = on");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    r = ok ? PQexec(c, "SHOW fsync") : NULL;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        strcmp(PQgetvalue(r, 0, 0), "off") == 0 && !atomic_exchange(&g->warned_fsync, 1))
        store_log(STORE_LOG_WARN, "postgresql: the server runs with fsync off: a crash of its "
                                  "machine can lose changes patd acknowledged");
    PQclear(r);
    for (int i = 0; ok && prepare && i < PG_STMT__COUNT; i++) {
        char name[8];
        snprintf(name, sizeof(name), "s%d", i);
        r = PQprepare(c, name, pg_statements[i], 0, NULL);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            char msg[160];
            pg_oneline(PQresultErrorMessage(r), msg, sizeof(msg));
            snprintf(why, cap, "cannot prepare statement %d: %s", i, msg);
        }
        PQclear(r);
    }
    if (!ok) {
        if (!why[0]) pg_oneline(PQerrorMessage(c), why, cap);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* Caller holds g->lock. */
static void pg_outage_locked(pg_t *g, const char *cause)
{
    uint64_t now = store_mono_ns();
    if (!g->down) {
        g->down = 1;
        g->down_since = now;
        g->backoff = PG_BACKOFF_MIN_NS;
        store_log(STORE_LOG_ERROR,
                  "postgresql: cannot use the database: %s; changes answer UNAVAILABLE, "
                  "cached Verifies go on, and patd reconnects by itself",
                  cause);
        /* Idle connections are as dead as this one: drop them now, rather
         * than fail one request each later. */
        for (unsigned i = 0; i < g->n_conns; i++)
            if (!g->conns[i].busy && g->conns[i].conn) {
                PQfinish(g->conns[i].conn);
                g->conns[i].conn = NULL;
            }
    }
    g->retry_at = now + g->backoff;
    g->backoff = g->backoff * 2 > PG_BACKOFF_MAX_NS ? PG_BACKOFF_MAX_NS : g->backoff * 2;
}

/* A connection failed: drop it. */
static void pg_drop(pg_t *g, pg_conn_t *c, const char *cause)
{
    PQfinish(c->conn);
    c->conn = NULL;
    pthread_mutex_lock(&g->lock);
    pg_outage_locked(g, cause);
    pthread_mutex_unlock(&g->lock);
}

pg_conn_t *pg_get(pg_t *g, store_status_t *s)
{
    pthread_mutex_lock(&g->lock);
    pg_conn_t *c = NULL;
    for (;;) {
        for (unsigned i = 0; i < g->n_conns; i++) {
            pg_conn_t *x = &g->conns[i];
            if (x->busy) continue;
            if (c == NULL || (x->conn && !c->conn)) c = x; /* a connected one if any */
        }
        if (c) break;
        pthread_cond_wait(&g->freed, &g->lock);
    }
    c->busy = 1;
    if (c->conn) {
        pthread_mutex_unlock(&g->lock);
        return c;
    }
    if (g->down && store_mono_ns() < g->retry_at) {
        c->busy = 0;
        pthread_cond_signal(&g->freed);
        pthread_mutex_unlock(&g->lock);
        *s = STORE_UNAVAILABLE;
        return NULL;
    }
    uint64_t gen = g->up_gen;
    pthread_mutex_unlock(&g->lock);
    char why[256] = "";
    PGconn *conn = pg_connect(g, 1, why, sizeof(why));
    pthread_mutex_lock(&g->lock);
    if (conn == NULL) {
        /* An attempt that began before the cluster link saw the database answer
         * again is stale: it must not put the pool back into backoff. */
        if (gen == g->up_gen) pg_outage_locked(g, why);
        c->busy = 0;
        pthread_cond_signal(&g->freed);
        pthread_mutex_unlock(&g->lock);
        *s = STORE_UNAVAILABLE;
        return NULL;
    }
    c->conn = conn;
    if (g->down) {
        g->down = 0;
        store_log(STORE_LOG_INFO, "postgresql: connected again after %.1f s",
                  (double)(store_mono_ns() - g->down_since) / 1e9);
    }
    pthread_mutex_unlock(&g->lock);
    return c;
}

void pg_put(pg_t *g, pg_conn_t *c)
{
    if (c == NULL) return;
    if (c->conn && PQtransactionStatus(c->conn) != PQTRANS_IDLE) pg_rollback(g, c);
    pthread_mutex_lock(&g->lock);
    c->busy = 0;
    pthread_cond_signal(&g->freed);
    pthread_mutex_unlock(&g->lock);
}

pg_conn_t *pg_get_writer(pg_t *g, store_status_t *s)
{
    if (store_injected_fault(&g->base, "change")) {
        *s = STORE_UNAVAILABLE;
        return NULL;
    }
    return pg_get(g, s);
}

void pg_database_back(pg_t *g)
{
    pthread_mutex_lock(&g->lock);
    if (g->down) {
        g->retry_at = 0;
        g->backoff = PG_BACKOFF_MIN_NS;
        g->up_gen++;
    }
    pthread_mutex_unlock(&g->lock);
}

PGresult *pg_run(pg_t *g, pg_conn_t *c, int stmt, const pg_params_t *p, store_status_t *s,
                 const char *what)
{
    char name[8];
    snprintf(name, sizeof(name), "s%d", stmt);
    PGresult *r = PQexecPrepared(c->conn, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
                                 p ? p->fmt : NULL, 1);
    ExecStatusType es = PQresultStatus(r);
    if (es == PGRES_TUPLES_OK || es == PGRES_COMMAND_OK) return r;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    char msg[256];
    pg_oneline(PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(c->conn), msg,
               sizeof(msg));
    PQclear(r);
    if (state && strcmp(state, "23505") == 0) { /* unique_violation */
        *s = STORE_EXISTS;
        return NULL;
    }
    *s = STORE_UNAVAILABLE;
    if (PQstatus(c->conn) != CONNECTION_OK) {
        pg_drop(g, c, msg);
    } else {
        store_log(STORE_LOG_WARN, "postgresql: %s failed: %s (%s)", what, msg,
                  state ? state : "no SQLSTATE");
    }
    return NULL;
}

static store_status_t pg_simple(pg_t *g, pg_conn_t *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c->conn, sql);
    ExecStatusType es = PQresultStatus(r);
    char msg[256];
    pg_oneline(PQresultErrorMessage(r), msg, sizeof(msg));
    PQclear(r);
    if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) return STORE_OK;
    if (PQstatus(c->conn) != CONNECTION_OK)
        pg_drop(g, c, msg[0] ? msg : "connection lost");
    else
        store_log(STORE_LOG_WARN, "postgresql: %s failed: %s", what, msg);
    return STORE_UNAVAILABLE;
}

store_status_t pg_begin(pg_t *g, pg_conn_t *c, const char *what)
{
    return pg_simple(g, c, "BEGIN", what);
}

store_status_t pg_commit(pg_t *g, pg_conn_t *c, const char *what)
{
    uint64_t t0 = store_mono_ns();
    PGresult *r = PQexec(c->conn, "COMMIT");
    /* A COMMIT of a failed transaction answers ROLLBACK, not an error. */
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    char msg[256];
    pg_oneline(PQresultErrorMessage(r), msg, sizeof(msg));
    PQclear(r);
    if (ok) {
        store_write_observe(&g->base, store_mono_ns() - t0);
        store_write_ok(&g->base);
        return STORE_OK;
    }
    if (PQstatus(c->conn) != CONNECTION_OK) pg_drop(g, c, msg[0] ? msg : "connection lost");
    return store_write_failed(&g->base, msg[0] ? msg : "the transaction was rolled back", what);
}

void pg_rollback(pg_t *g, pg_conn_t *c)
{
    (void)g;
    PGresult *r = PQexec(c->conn, "ROLLBACK");
    PQclear(r);
    if (PQstatus(c->conn) != CONNECTION_OK) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
}

/* ---------------------------------------------------------------- schema */

/* Brings the schema up to date under the migration lock (several patds
 * starting at once apply each migration once), and reads the page key.
 * Returns 0, or -1 with *errmsg. */
static int pg_migrate(pg_t *g, const store_options_t *opt, char **errmsg)
{
    char why[256] = "";
    PGconn *c = pg_connect(g, 0, why, sizeof(why));
    if (c == NULL) {
        *errmsg = store_errf("cannot connect to PostgreSQL: %s", why);
        return -1;
    }
    char sql[256];
    snprintf(sql, sizeof(sql),
             "BEGIN; SELECT pg_advisory_xact_lock(%d, %d); "
             "CREATE TABLE IF NOT EXISTS patd_schema_migrations (version integer PRIMARY KEY, "
             "what text NOT NULL, applied timestamptz NOT NULL DEFAULT now())",
             PG_LOCK_CLASS, PG_LOCK_MIGRATE);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    unsigned version = 0;
    if (ok) {
        r = PQexec(c, "SELECT coalesce(max(version), 0) FROM patd_schema_migrations");
        ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        if (ok) version = (unsigned)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    if (!ok) {
        pg_oneline(PQerrorMessage(c), why, sizeof(why));
        *errmsg = store_errf("cannot read the schema version: %s", why);
        goto fail;
    }
    g->base.schema_known = PG_SCHEMA_KNOWN;
    if (version > PG_SCHEMA_KNOWN) {
        *errmsg = store_errf("the database has patd schema version %u, newer than this patd "
                             "knows (%u): run the patd that migrated it, or a newer one",
                             version, PG_SCHEMA_KNOWN);
        goto fail;
    }
    if (opt->must_exist && version == 0) {
        *errmsg = store_errf("no patd schema in this database (patd migrate makes it)");
        goto fail;
    }
    if (opt->must_exist && version < PG_SCHEMA_KNOWN) {
        *errmsg = store_errf("the database has patd schema version %u, older than this patd's "
                             "%u: run patd migrate first",
                             version, PG_SCHEMA_KNOWN);
        goto fail;
    }
    for (size_t i = 0; i < pg_n_migrations; i++) {
        const pg_migration_t *m = &pg_migrations[i];
        if (m->version <= version) continue;
        r = PQexec(c, m->sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (ok) {
            char v[16];
            snprintf(v, sizeof(v), "%u", m->version);
            const char *vals[2] = {v, m->what};
            r = PQexecParams(c,
                             "INSERT INTO patd_schema_migrations (version, what) VALUES ($1, $2)",
                             2, NULL, vals, NULL, NULL, 0);
            ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
        }
        if (!ok) {
            pg_oneline(PQerrorMessage(c), why, sizeof(why));
            *errmsg = store_errf("migration %u (%s) failed: %s", m->version, m->what, why);
            goto fail;
        }
        store_log(STORE_LOG_INFO, "postgresql: applied migration %u: %s", m->version, m->what);
        version = m->version;
    }
    g->base.schema = version;

    /* The page-token key: made by the first patd, the same for all. */
    uint8_t fresh[STORE_PAGE_KEY];
    if (store_random_key(fresh) != 0) {
        *errmsg = store_errf("cannot make the page-token key");
        goto fail;
    }
    const char *kv[1] = {(const char *)fresh};
    int kl[1] = {STORE_PAGE_KEY}, kf[1] = {1};
    r = PQexecParams(c,
                     opt->must_exist ? "SELECT 1 WHERE $1::bytea IS NOT NULL"
                                     : "INSERT INTO patd_meta (key, value) VALUES ('page_key', "
                                       "$1::bytea) ON CONFLICT (key) DO NOTHING",
                     1, NULL, kv, kl, kf, 1);
    explicit_bzero(fresh, sizeof(fresh));
    ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    if (ok) {
        r = PQexecParams(c, "SELECT value FROM patd_meta WHERE key = 'page_key'", 0, NULL, NULL,
                         NULL, NULL, 1);
        ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
             PQgetlength(r, 0, 0) == STORE_PAGE_KEY;
        if (ok) memcpy(g->base.page_key, PQgetvalue(r, 0, 0), STORE_PAGE_KEY);
        PQclear(r);
    }
    if (ok) {
        r = PQexec(c, "COMMIT");
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok) {
        pg_oneline(PQerrorMessage(c), why, sizeof(why));
        *errmsg = store_errf("cannot read the page-token key: %s", why[0] ? why : "missing");
        goto fail;
    }
    PQfinish(c);
    return 0;
fail:
    PQfinish(c);
    return -1;
}

/* ---------------------------------------------------------------- open */

static void pg_destroy(pg_t *g)
{
    pg_cluster_free(g);
    for (unsigned i = 0; i < g->n_conns; i++)
        PQfinish(g->conns[i].conn);
    free(g->conns);
    free(g->conninfo);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->freed);
    explicit_bzero(g->base.page_key, sizeof(g->base.page_key));
    free(g);
}

/* A password in the URL would show in `ps` and in logs: refused, with where
 * it belongs instead. */
static int pg_url_ok(const char *url, char **errmsg)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    if (opts == NULL) {
        char why[256];
        pg_oneline(perr ? perr : "out of memory", why, sizeof(why));
        *errmsg = store_errf("store URL is not a PostgreSQL URI: %s", why);
        PQfreemem(perr);
        return -1;
    }
    int has_password = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0]) has_password = 1;
    PQconninfoFree(opts);
    if (has_password) {
        *errmsg = store_errf("the store URL holds a password, which would show in process "
                             "lists and logs: put it in a password file (PGPASSFILE or "
                             "~/.pgpass) and leave it out of the URL");
        return -1;
    }
    return 0;
}

static store_t *pg_open(const char *where, const store_options_t *opt, char **errmsg)
{
    char *dummy = NULL;
    if (errmsg == NULL) errmsg = &dummy;
    size_t n = strlen(where);
    char *url = malloc(n + 12);
    if (url == NULL) abort();
    snprintf(url, n + 12, "postgresql:%s", where);
    if (pg_url_ok(url, errmsg) != 0) {
        free(url);
        free(dummy);
        return NULL;
    }
    pg_t *g = calloc(1, sizeof(*g));
    if (g == NULL) abort();
    g->conninfo = url;
    g->bulk = opt->bulk;
    g->shared = opt->shared || opt->must_exist;
    g->n_conns = opt->connections ? opt->connections : PG_DEFAULT_CONNS;
    g->conns = calloc(g->n_conns, sizeof(*g->conns));
    if (g->conns == NULL) abort();
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->freed, NULL);

    if (pg_migrate(g, opt, errmsg) != 0) goto fail;
    /* One connection now, so that a wrong URL fails here and not at the
     * first request. */
    store_status_t s;
    pg_conn_t *c = pg_get(g, &s);
    if (c == NULL) {
        *errmsg = store_errf("cannot connect to PostgreSQL (see the log)");
        goto fail;
    }
    pg_put(g, c);
    if (!g->shared && !g->bulk && pg_cluster_new(g, opt, errmsg) != 0) goto fail;
    free(dummy);
    return &g->base;
fail:
    pg_destroy(g);
    if (errmsg == &dummy) free(dummy);
    return NULL;
}

static void pg_close(store_t *st)
{
    pg_t *g = pg_of(st);
    pg_cluster_leave(g);
    if (g->bulk) {
        /* A loading tool's commits were not waited for: one synchronous
         * commit now flushes the WAL through all of them. */
        store_status_t s;
        pg_conn_t *c = pg_get(g, &s);
        if (c &&
            pg_simple(g, c, "SET synchronous_commit = on; BEGIN; SELECT txid_current(); COMMIT",
                      "flush at close") != STORE_OK)
            store_log(STORE_LOG_ERROR, "postgresql: the last writes may not be durable");
        pg_put(g, c);
    }
    pg_destroy(g);
}

static void pg_compact(store_t *st)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    pg_conn_t *c = pg_get(g, &s);
    if (c == NULL) return;
    static const char *const tables[] = {"patd_users", "patd_tokens", "patd_last_used",
                                         "patd_activity"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]) && c->conn; i++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "VACUUM (ANALYZE) %s", tables[i]);
        pg_simple(g, c, sql, "vacuum");
    }
    pg_put(g, c);
}

/* ---------------------------------------------------------------- reads */

/* Runs one read and hands its result to the caller (NULL: *s says why). */
static PGresult *pg_read(pg_t *g, int stmt, const pg_params_t *p, store_status_t *s)
{
    pg_conn_t *c = pg_get(g, s);
    if (c == NULL) return NULL;
    PGresult *r = pg_run(g, c, stmt, p, s, "read");
    pg_put(g, c);
    return r;
}

static store_status_t pg_user_get(store_t *st, const char *user_id, store_user_t *out, int try_only)
{
    if (try_only) return STORE_DECLINED; /* the loop thread never waits on the network */
    pg_params_t p = {0};
    pg_p_text(&p, user_id);
    store_status_t s;
    PGresult *r = pg_read(pg_of(st), PG_USER_GET, &p, &s);
    if (r == NULL) return s;
    s = PQntuples(r) == 1 ? STORE_OK : STORE_NOT_FOUND;
    if (s == STORE_OK) pg_user_row(r, 0, 0, out);
    PQclear(r);
    return s;
}

static store_status_t pg_token_one(store_t *st, int stmt, pg_params_t *p, store_token_t *out)
{
    store_status_t s;
    PGresult *r = pg_read(pg_of(st), stmt, p, &s);
    if (r == NULL) return s;
    s = PQntuples(r) == 1 ? STORE_OK : STORE_NOT_FOUND;
    if (s == STORE_OK) pg_token_row(r, 0, 0, out);
    PQclear(r);
    return s;
}

static store_status_t pg_token_get(store_t *st, uint64_t id, store_token_t *out)
{
    pg_params_t p = {0};
    pg_p_i64(&p, (int64_t)id);
    return pg_token_one(st, PG_TOKEN_GET, &p, out);
}

static store_status_t pg_token_get_by_hash(store_t *st, const uint8_t *hash, store_token_t *out,
                                           int try_only)
{
    if (try_only) return STORE_DECLINED;
    pg_params_t p = {0};
    pg_p_bytes(&p, hash, STORE_HASH_BYTES);
    return pg_token_one(st, PG_TOKEN_BY_HASH, &p, out);
}

static store_status_t pg_token_get_with_owner(store_t *st, const uint8_t *hash, store_token_t *out,
                                              store_user_t *owner)
{
    pg_params_t p = {0};
    pg_p_bytes(&p, hash, STORE_HASH_BYTES);
    store_status_t s;
    PGresult *r = pg_read(pg_of(st), PG_TOKEN_WITH_OWNER, &p, &s);
    if (r == NULL) return s;
    s = PQntuples(r) == 1 ? STORE_OK : STORE_NOT_FOUND;
    if (s == STORE_OK) {
        pg_token_row(r, 0, 0, out);
        if (PQgetisnull(r, 0, PG_TOKEN_NCOLS))
            owner->user_id[0] = '\0';
        else
            pg_user_row(r, 0, PG_TOKEN_NCOLS, owner);
    }
    PQclear(r);
    return s;
}

static void pg_tokens_get_with_owners(store_t *st, const uint8_t (*hashes)[STORE_HASH_BYTES],
                                      size_t n, store_token_t *out, store_user_t *owner,
                                      store_status_t *s)
{
    pg_array_t a;
    pg_array_init(&a, PG_OID_BYTEA);
    for (size_t i = 0; i < n; i++)
        pg_array_bytes(&a, hashes[i], STORE_HASH_BYTES);
    pg_params_t p = {0};
    pg_p_array(&p, &a);
    store_status_t all;
    PGresult *r = pg_read(pg_of(st), PG_TOKENS_WITH_OWNERS, &p, &all);
    pg_array_free(&a);
    for (size_t i = 0; i < n; i++)
        s[i] = r ? STORE_NOT_FOUND : all;
    /* Few rows each way: match every row to the hashes it answers (a
     * token asked for twice answers both). */
    for (int row = 0; r && row < PQntuples(r); row++) {
        if (PQgetlength(r, row, 1) != STORE_HASH_BYTES) continue;
        const char *h = PQgetvalue(r, row, 1);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == STORE_OK || memcmp(h, hashes[i], STORE_HASH_BYTES) != 0) continue;
            pg_token_row(r, row, 0, &out[i]);
            if (!PQgetisnull(r, row, PG_TOKEN_NCOLS))
                pg_user_row(r, row, PG_TOKEN_NCOLS, &owner[i]);
            s[i] = STORE_OK;
        }
    }
    PQclear(r);
}

static store_status_t pg_users_list(store_t *st, int32_t user_type, const store_cursor_t *after,
                                    unsigned limit, store_user_t *out, unsigned *n, int *more,
                                    store_cursor_t *next)
{
    char from[STORE_ID_MAX + 1];
    store_copy_str(from, sizeof(from), (const char *)after->bytes, after->len);
    pg_params_t p = {0};
    pg_p_i32(&p, user_type);
    pg_p_text(&p, from);
    pg_p_i32(&p, (int32_t)(limit + 1));
    store_status_t s;
    PGresult *r = pg_read(pg_of(st), PG_USERS_LIST, &p, &s);
    if (r == NULL) return s;
    int rows = PQntuples(r);
    for (int i = 0; i < rows && *n < limit; i++)
        pg_user_row(r, i, 0, &out[(*n)++]);
    if ((unsigned)rows > limit) {
        *more = 1;
        const char *last = out[*n - 1].user_id;
        next->len = (uint16_t)strlen(last);
        memcpy(next->bytes, last, next->len);
    }
    PQclear(r);
    return STORE_OK;
}

/* Token cursors: owner length (1), owner, name. */
static void pg_token_cursor(const store_token_t *t, store_cursor_t *c)
{
    size_t ol = strlen(t->owner_id), nl = strlen(t->name);
    c->bytes[0] = (uint8_t)ol;
    memcpy(c->bytes + 1, t->owner_id, ol);
    memcpy(c->bytes + 1 + ol, t->name, nl);
    c->len = (uint16_t)(1 + ol + nl);
}

static store_status_t pg_tokens_list(store_t *st, int32_t kind, const char *owner,
                                     const store_cursor_t *after, unsigned limit,
                                     store_token_t *out, unsigned *n, int *more,
                                     store_cursor_t *next)
{
    char from_owner[STORE_ID_MAX + 1] = "", from_name[STORE_NAME_MAX + 1] = "";
    if (after->len > 0) {
        size_t ol = after->bytes[0];
        if (1 + ol > after->len) return STORE_OK; /* not a cursor of ours: nothing follows */
        store_copy_str(from_owner, sizeof(from_owner), (const char *)after->bytes + 1, ol);
        store_copy_str(from_name, sizeof(from_name), (const char *)after->bytes + 1 + ol,
                       after->len - 1 - ol);
    }
    pg_params_t p = {0};
    pg_p_i32(&p, kind);
    pg_p_text(&p, owner ? owner : from_owner);
    pg_p_text(&p, owner && strcmp(owner, from_owner) != 0 ? "" : from_name);
    pg_p_i32(&p, (int32_t)(limit + 1));
    store_status_t s;
    PGresult *r = pg_read(pg_of(st), owner ? PG_TOKENS_OF_OWNER : PG_TOKENS_ALL, &p, &s);
    if (r == NULL) return s;
    int rows = PQntuples(r);
    for (int i = 0; i < rows && *n < limit; i++)
        pg_token_row(r, i, 0, &out[(*n)++]);
    if ((unsigned)rows > limit) {
        *more = 1;
        pg_token_cursor(&out[*n - 1], next);
    }
    PQclear(r);
    return STORE_OK;
}

/* A statement of one bigint parameter that answers one bigint (or no row,
 * or NULL: NOT_FOUND). */
static store_status_t pg_read_i64(store_t *st, int stmt, uint64_t arg, int64_t *out)
{
    pg_params_t p = {0};
    pg_p_i64(&p, (int64_t)arg);
    store_status_t s;
    PGresult *r = pg_read(pg_of(st), stmt, &p, &s);
    if (r == NULL) return s;
    s = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) ? STORE_OK : STORE_NOT_FOUND;
    if (s == STORE_OK) *out = pg_i64(r, 0, 0);
    PQclear(r);
    return s;
}

static store_status_t pg_last_used_get(store_t *st, uint64_t id, int64_t *ms)
{
    store_status_t s = pg_read_i64(st, PG_LAST_USED_GET, id, ms);
    return s == STORE_NOT_FOUND ? STORE_OK : s; /* never used: 0 */
}

static store_status_t pg_activity_list(store_t *st, uint64_t id, unsigned limit, store_event_t *out,
                                       unsigned *n)
{
    pg_params_t p = {0};
    pg_p_i64(&p, (int64_t)id);
    pg_p_i32(&p, (int32_t)limit);
    store_status_t s;
    PGresult *r = pg_read(pg_of(st), PG_ACTIVITY_LIST, &p, &s);
    if (r == NULL) return s;
    for (int i = 0; i < PQntuples(r) && *n < limit; i++) {
        store_event_t *e = &out[(*n)++];
        e->seq = (uint64_t)pg_i64(r, i, 0);
        e->kind = pg_i32(r, i, 1);
        e->time = pg_i64(r, i, 2);
        e->count = (uint32_t)pg_i64(r, i, 3);
        e->first_time = pg_i64(r, i, 4);
        pg_text(r, i, 5, e->path, sizeof(e->path));
        pg_text(r, i, 6, e->client_ip, sizeof(e->client_ip));
        pg_text(r, i, 7, e->actor, sizeof(e->actor));
        pg_text(r, i, 8, e->owner_id, sizeof(e->owner_id));
        e->token_kind = pg_i32(r, i, 9);
    }
    PQclear(r);
    return STORE_OK;
}

static store_status_t pg_activity_next_id(store_t *st, uint64_t after, uint64_t *id)
{
    int64_t v = 0;
    store_status_t s = pg_read_i64(st, PG_ACTIVITY_NEXT, after, &v);
    if (s == STORE_OK) *id = (uint64_t)v;
    return s;
}

/* ---------------------------------------------------------------- check */

/* Each query lists problems, one row each, as text. */
static const struct {
    const char *what, *sql;
} pg_checks[] = {
    {"patd_tokens: owner of a token does not exist",
     "SELECT 'token ' || t.id FROM patd_tokens t WHERE NOT EXISTS (SELECT 1 FROM patd_users u "
     "WHERE u.user_id = t.owner_id)"},
    {"patd_tokens: a token's kind does not match its owner's type",
     "SELECT 'token ' || t.id FROM patd_tokens t JOIN patd_users u ON u.user_id = t.owner_id "
     "WHERE (t.kind = 2) <> (u.user_type = 2)"},
    {"patd_token_ids: the sequence is behind a token id (ids would be reused)",
     "SELECT 'max id ' || max(id) || ', next from the sequence ' || (SELECT CASE WHEN is_called "
     "THEN last_value + 1 ELSE last_value END FROM patd_token_ids) FROM patd_tokens HAVING "
     "max(id) >= (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM "
     "patd_token_ids)"},
    {"an index is not valid",
     "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid AND indrelid::regclass"
     "::text LIKE 'patd\\_%'"},
    {"patd_meta: the page-token key is missing",
     "SELECT 'page_key' WHERE NOT EXISTS (SELECT 1 FROM patd_meta WHERE key = 'page_key' AND "
     "length(value) = 32)"},
};

long pg_check(store_t *st, FILE *out)
{
    pg_t *g = pg_of(st);
    store_status_t s;
    pg_conn_t *c = pg_get(g, &s);
    if (c == NULL) return -1;
    long problems = 0;
    if (g->base.schema != PG_SCHEMA_KNOWN) {
        fprintf(out, "patd_schema_migrations: version %u, this patd knows %u\n", g->base.schema,
                PG_SCHEMA_KNOWN);
        problems++;
    }
    for (size_t i = 0; i < sizeof(pg_checks) / sizeof(pg_checks[0]); i++) {
        PGresult *r = PQexec(c->conn, pg_checks[i].sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            char msg[256];
            pg_oneline(PQresultErrorMessage(r), msg, sizeof(msg));
            fprintf(stderr, "patd check: cannot run a check (%s): %s\n", pg_checks[i].what, msg);
            PQclear(r);
            pg_put(g, c);
            return -1;
        }
        for (int k = 0; k < PQntuples(r); k++) {
            fprintf(out, "%s: %s\n", pg_checks[i].what, PQgetvalue(r, k, 0));
            problems++;
        }
        PQclear(r);
    }
    pg_put(g, c);
    return problems;
}

const store_backend_t store_postgresql_backend = {
    .scheme = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .compact = pg_compact,
    .check = pg_check,
    .user_get = pg_user_get,
    .user_create = pg_user_create,
    .user_upsert = pg_user_upsert,
    .user_set_active = pg_user_set_active,
    .user_delete = pg_user_delete,
    .users_list = pg_users_list,
    .token_get = pg_token_get,
    .token_get_by_hash = pg_token_get_by_hash,
    .token_get_with_owner = pg_token_get_with_owner,
    .tokens_get_with_owners = pg_tokens_get_with_owners,
    .token_create = pg_token_create,
    .token_set_active = pg_token_set_active,
    .token_delete = pg_token_delete,
    .tokens_list = pg_tokens_list,
    .import_users = pg_import_users,
    .import_tokens = pg_import_tokens,
    .last_used_get = pg_last_used_get,
    .usage_begin = pg_usage_begin,
    .usage_last_used = pg_usage_last_used,
    .usage_event = pg_usage_event,
    .usage_commit = pg_usage_commit,
    .usage_abandon = pg_usage_abandon,
    .activity_list = pg_activity_list,
    .activity_trim = pg_activity_trim,
    .activity_next_id = pg_activity_next_id,
    .cluster_fd = pg_cluster_fd,
    .cluster_step = pg_cluster_step,
    .cluster_status = pg_cluster_status,
};
