/* postgresql/cluster: several patd on one database, each with its own
 * verification cache, and no node answering yes after a revoke was
 * acknowledged anywhere (docs/cluster.md has the argument step by step).
 *
 * DESIGN. Every change that can alter a Verify answer writes a row of
 * patd_changes in its own transaction, numbered by the one counter row
 * (so the numbers follow the commits, with no gap), and NOTIFYs
 * patd_changes. Each node keeps one connection of its own, the link, in
 * non-blocking mode, driven by the loop thread (store_cluster_fd and
 * store_cluster_step): it LISTENs, fetches what it has not applied,
 * applies it to the cache through the store's observer, records how far
 * it got (patd_nodes.applied) and NOTIFYs patd_applied, and renews its
 * lease every third of it.
 *
 * The lease. A renewal is counted from the moment it is sent, and lasts
 * lease - margin by this node's monotonic clock, margin = 2 * drift *
 * lease + allowance. A renewal answers the newest change number at that
 * moment; its lease starts to count only once the node has applied that
 * far. While no lease holds, the cache is fenced (serve_until): Verifies
 * read the database.
 *
 * The fence. A change that can turn a yes into a no (pg_cluster_fence),
 * once committed as number S, reads patd_nodes and waits until each other
 * node that is not expired has applied S, or its lease has run out: at
 * most one lease after the commit by this node's clock, or sooner when
 * this node sees it expired. A node is expired by another when that one has
 * seen its renewal count unchanged for a whole lease by its own clock, and
 * only if it is still unchanged (a compare-and-set in the database), so a
 * renewal in flight either lands first or finds it expired and joins again.
 *
 * Threads: the link's state is the loop thread's; the node table (acks,
 * expiries) is shared with the fencing workers under `mu`. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define PG_CL_DEFAULT_LEASE_MS  2000
#define PG_CL_DEFAULT_DRIFT_PPM 1000
#define PG_CL_DEFAULT_ALLOW_MS  25
#define PG_CL_CONNECT_MAX_NS    (5000ull * 1000000) /* an attempt longer than this is abandoned */

typedef struct {
    char id[STORE_NODE_ID_MAX];
    char addr[128];
    int64_t applied;   /* the most it said (ack) or showed (row) */
    int64_t renewals;  /* the count last seen */
    uint64_t seen_ns;  /* when this node first saw that count */
    uint64_t lease_ns; /* its lease */
    uint64_t gone_gen; /* bumped when it is seen expired or gone */
    int expired, in_table, expiring;
} pg_node_t;

struct pg_cluster {
    pg_t *g;
    uint64_t lease_ns, margin_ns;
    char id[STORE_NODE_ID_MAX], addr[128];

    /* The link: the loop thread's. */
    PGconn *conn;
    int connecting, query; /* query: the PG_CL_* in flight, or -1 */
    uint64_t gen, connect_started, retry_at, backoff, sent_at;
    int set_up, joined, fetch_more, logged_down, flushing;
    uint64_t next_renew;
    int64_t applied, acked, ack_sent; /* applied -1: not joined yet */
    uint64_t pending_until;           /* a lease waiting for pending_need to be applied */
    int64_t pending_need;
    uint64_t lease_until; /* this node's lease, monotonic ns (0: none) */
    char expire_id[STORE_NODE_ID_MAX];
    int64_t expire_renewals;

    /* Shared with the fencing workers. */
    pthread_mutex_t mu;
    pthread_cond_t cond; /* a node acked, expired or left */
    pg_node_t nodes[STORE_NODES_MAX];
    unsigned n_nodes;
    int64_t latest; /* the newest change number known */
    _Atomic uint64_t lease_until_pub;
    _Atomic int connected, ready;
    _Atomic uint64_t fences, fence_wait_ns, fence_timeouts, reconnects, gaps;
};

static uint64_t cl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- the node table */

/* Caller holds mu. NULL when the table is full. */
static pg_node_t *cl_node(pg_cluster_t *cl, const char *id)
{
    for (unsigned i = 0; i < cl->n_nodes; i++)
        if (strcmp(cl->nodes[i].id, id) == 0) return &cl->nodes[i];
    if (cl->n_nodes == STORE_NODES_MAX) {
        /* Reuse a gone node's slot. */
        for (unsigned i = 0; i < cl->n_nodes; i++)
            if (!cl->nodes[i].in_table && cl->nodes[i].expired) {
                memset(&cl->nodes[i], 0, sizeof(cl->nodes[i]));
                snprintf(cl->nodes[i].id, sizeof(cl->nodes[i].id), "%s", id);
                return &cl->nodes[i];
            }
        return NULL;
    }
    pg_node_t *n = &cl->nodes[cl->n_nodes++];
    memset(n, 0, sizeof(*n));
    snprintf(n->id, sizeof(n->id), "%s", id);
    n->applied = -1;
    n->renewals = -1;
    n->lease_ns = cl->lease_ns;
    return n;
}

static void cl_gone(pg_cluster_t *cl, pg_node_t *n)
{
    n->expired = 1;
    n->gone_gen++;
    pthread_cond_broadcast(&cl->cond);
}

/* ---------------------------------------------------------------- the lease */

static void cl_publish(pg_cluster_t *cl)
{
    uint64_t until = cl->lease_until;
    if (atomic_exchange(&cl->lease_until_pub, until) != until)
        store_notify_serve_until(&cl->g->base, until);
    pthread_mutex_lock(&cl->mu);
    int caught_up = cl->applied >= 0 && cl->applied >= cl->latest;
    pthread_mutex_unlock(&cl->mu);
    atomic_store(&cl->ready, caught_up && cl_now() < until);
}

/* A renewal (or join) sent at sent_at answered: the lease it gives holds
 * once `need` is applied. */
static void cl_leased(pg_cluster_t *cl, int64_t need)
{
    uint64_t until = cl->sent_at + cl->lease_ns - cl->margin_ns;
    if (cl->applied >= need) {
        if (until > cl->lease_until) cl->lease_until = until;
        cl->pending_until = 0;
    } else {
        cl->pending_until = until;
        cl->pending_need = need;
    }
}

static void cl_applied(pg_cluster_t *cl, int64_t seq)
{
    cl->applied = seq;
    if (cl->pending_until && cl->applied >= cl->pending_need) {
        if (cl->pending_until > cl->lease_until) cl->lease_until = cl->pending_until;
        cl->pending_until = 0;
    }
}

/* ---------------------------------------------------------------- the link */

static void cl_lost(pg_cluster_t *cl, const char *why)
{
    char line[256];
    snprintf(line, sizeof(line), "%s", why && why[0] ? why : "connection lost");
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (!cl->logged_down)
        store_log(STORE_LOG_WARN,
                  "cluster: the listening connection is down (%s); the cache answers until "
                  "this node's lease runs out, and catches up when it is back",
                  line);
    cl->logged_down = 1;
    PQfinish(cl->conn);
    cl->conn = NULL;
    cl->connecting = 0;
    cl->query = -1;
    cl->set_up = 0;
    cl->ack_sent = -1;
    cl->expire_id[0] = '\0';
    atomic_store(&cl->connected, 0);
    uint64_t now = cl_now();
    cl->retry_at = now + cl->backoff;
    cl->backoff = cl->backoff * 2 > PG_BACKOFF_MAX_NS ? PG_BACKOFF_MAX_NS : cl->backoff * 2;
}

static int cl_send(pg_cluster_t *cl, int q, int n, const char *const *v)
{
    int ok = q == PG_CL_SETUP
                 ? PQsendQuery(cl->conn, pg_cluster_sql[q])
                 : PQsendQueryParams(cl->conn, pg_cluster_sql[q], n, NULL, v, NULL, NULL, 1);
    if (!ok) {
        cl_lost(cl, PQerrorMessage(cl->conn));
        return -1;
    }
    cl->query = q;
    cl->sent_at = cl_now();
    return 0;
}

/* Sends the next statement that is due, if none is in flight. */
static void cl_next(pg_cluster_t *cl)
{
    if (cl->conn == NULL || cl->connecting || cl->query >= 0) return;
    char a[24], b[24], l[24];
    uint64_t now = cl_now();
    if (!cl->set_up) {
        cl_send(cl, PG_CL_SETUP, 0, NULL);
    } else if (!cl->joined) {
        snprintf(a, sizeof(a), "%" PRId64, cl->applied);
        snprintf(l, sizeof(l), "%" PRIu64, cl->lease_ns / 1000000);
        const char *v[4] = {cl->id, cl->addr, cl->applied >= 0 ? a : NULL, l};
        cl_send(cl, PG_CL_JOIN, 4, v);
    } else if (now >= cl->next_renew) {
        snprintf(a, sizeof(a), "%" PRId64, cl->applied);
        const char *v[2] = {cl->id, a};
        cl_send(cl, PG_CL_RENEW, 2, v);
    } else if (cl->fetch_more || cl->applied < cl->latest) {
        snprintf(a, sizeof(a), "%" PRId64, cl->applied);
        const char *v[1] = {a};
        cl_send(cl, PG_CL_FETCH, 1, v);
    } else if (cl->applied > cl->acked) {
        snprintf(a, sizeof(a), "%" PRId64, cl->applied);
        const char *v[2] = {cl->id, a};
        cl->ack_sent = cl->applied;
        cl_send(cl, PG_CL_ACK, 2, v);
    } else if (cl->expire_id[0]) {
        snprintf(b, sizeof(b), "%" PRId64, cl->expire_renewals);
        const char *v[2] = {cl->expire_id, b};
        cl_send(cl, PG_CL_EXPIRE, 2, v);
    }
}

/* Notifications: "<seq>" on patd_changes; "a <seq> <node>", "x <node>",
 * "l <node>" on patd_applied. */
static void cl_notified(pg_cluster_t *cl)
{
    PGnotify *n;
    while ((n = PQnotifies(cl->conn)) != NULL) {
        const char *p = n->extra;
        pthread_mutex_lock(&cl->mu);
        if (strcmp(n->relname, "patd_changes") == 0) {
            int64_t seq = strtoll(p, NULL, 10);
            if (seq > cl->latest) cl->latest = seq;
        } else if (p[0] && p[1] == ' ') {
            char kind = p[0];
            p += 2;
            int64_t seq = 0;
            if (kind == 'a') {
                char *end;
                seq = strtoll(p, &end, 10);
                p = *end == ' ' ? end + 1 : end;
            }
            if (strcmp(p, cl->id) != 0) {
                pg_node_t *nd = cl_node(cl, p);
                if (nd && kind == 'a' && seq > nd->applied) {
                    nd->applied = seq;
                    pthread_cond_broadcast(&cl->cond);
                } else if (nd && (kind == 'x' || kind == 'l')) {
                    if (kind == 'l') nd->in_table = 0;
                    cl_gone(cl, nd);
                }
            }
        }
        pthread_mutex_unlock(&cl->mu);
        PQfreemem(n);
    }
}

static int64_t cl_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? -1 : pg_i64(r, row, col);
}

/* A renewal's answer: every node as it was, whether ours was renewed, and
 * the newest change number. */
static void cl_renewed(pg_cluster_t *cl, PGresult *r, uint64_t recv)
{
    int rows = PQntuples(r);
    int me = rows > 0 && pg_i64(r, 0, 6) == 1;
    int64_t latest = rows > 0 ? pg_i64(r, 0, 7) : 0;
    pthread_mutex_lock(&cl->mu);
    if (latest > cl->latest) cl->latest = latest;
    for (unsigned i = 0; i < cl->n_nodes; i++)
        cl->nodes[i].expiring = cl->nodes[i].in_table; /* cleared for those still listed */
    cl->expire_id[0] = '\0';
    for (int i = 0; i < rows; i++) {
        char id[STORE_NODE_ID_MAX];
        pg_text(r, i, 0, id, sizeof(id));
        if (strcmp(id, cl->id) == 0) continue;
        pg_node_t *n = cl_node(cl, id);
        if (n == NULL) continue;
        pg_text(r, i, 1, n->addr, sizeof(n->addr));
        int64_t renewals = pg_i64(r, i, 2), applied = pg_i64(r, i, 3);
        int expired = pg_bool(r, i, 4);
        n->lease_ns = (uint64_t)pg_i32(r, i, 5) * 1000000ull;
        n->in_table = 1;
        n->expiring = 0;
        if (applied > n->applied) n->applied = applied;
        if (expired && !n->expired) cl_gone(cl, n);
        n->expired = expired;
        if (renewals != n->renewals) {
            /* Every renewal up to this count was sent before now. */
            n->renewals = renewals;
            n->seen_ns = recv;
        } else if (!expired && recv >= n->seen_ns + n->lease_ns && !cl->expire_id[0]) {
            snprintf(cl->expire_id, sizeof(cl->expire_id), "%s", id);
            cl->expire_renewals = renewals;
        }
    }
    for (unsigned i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i].expiring) { /* listed before, gone now: it left */
            cl->nodes[i].in_table = 0;
            cl->nodes[i].expiring = 0;
            cl_gone(cl, &cl->nodes[i]);
        }
    pthread_mutex_unlock(&cl->mu);
    cl->next_renew = cl->sent_at + cl->lease_ns / 3;
    if (latest < cl->applied) {
        cl->fetch_more = 1; /* the log went back: the fetch empties the cache first */
        return;             /* and no lease from this renewal */
    }
    if (me) {
        cl_leased(cl, latest);
    } else {
        /* Another node saw this one's lease run out (a pause, a partition):
         * nobody waits for it any more. Join again, and catch up. */
        store_log(STORE_LOG_WARN, "cluster: this node's lease was expired by another node; "
                                  "joining again");
        cl->joined = 0;
    }
}

/* A fetch's answer: row 0 has the newest number in column 0; columns 1-4
 * are the changes (NULL when there are none). */
static void cl_fetched(pg_cluster_t *cl, PGresult *r)
{
    int rows = PQntuples(r);
    if (rows == 0) return;
    int64_t newest = pg_i64(r, 0, 0);
    int64_t first = cl_i64(r, 0, 1);
    pthread_mutex_lock(&cl->mu);
    if (newest > cl->latest) cl->latest = newest;
    pthread_mutex_unlock(&cl->mu);
    if (newest < cl->applied) {
        /* The log went back: a failover to a standby that had not received
         * the newest changes, or a restored backup. What this cache holds
         * may be newer than the database: forget it all. */
        atomic_fetch_add(&cl->gaps, 1);
        store_log(STORE_LOG_WARN,
                  "cluster: the database's newest change is %" PRId64 ", older than the %" PRId64
                  " applied here (a failover or a restore); emptying the cache",
                  newest, cl->applied);
        store_notify_everything(&cl->g->base);
        cl->applied = newest;
        cl->acked = -1;
        cl->fetch_more = 0;
        return;
    }
    if ((first < 0 && newest > cl->applied) || (first >= 0 && first != cl->applied + 1)) {
        /* Trimmed past this node (it was expired meanwhile): what changed
         * cannot be told, so the cache forgets everything. */
        atomic_fetch_add(&cl->gaps, 1);
        store_log(STORE_LOG_WARN,
                  "cluster: changes %" PRId64 "..%" PRId64 " are no longer in the log; "
                  "emptying the cache",
                  cl->applied + 1, newest);
        store_notify_everything(&cl->g->base);
        cl_applied(cl, newest);
        cl->fetch_more = 0;
        return;
    }
    int64_t last = cl->applied;
    for (int i = 0; i < rows && first >= 0; i++) {
        if (!PQgetisnull(r, i, 3) && PQgetlength(r, i, 3) == STORE_HASH_BYTES)
            store_notify_token(&cl->g->base, (const uint8_t *)PQgetvalue(r, i, 3));
        if (!PQgetisnull(r, i, 4)) {
            char user[STORE_ID_MAX + 1];
            pg_text(r, i, 4, user, sizeof(user));
            store_notify_user(&cl->g->base, user);
        }
        last = pg_i64(r, i, 1);
    }
    cl_applied(cl, last);
    cl->fetch_more = last < newest;
}

static void cl_result(pg_cluster_t *cl, PGresult *r, uint64_t recv)
{
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_TUPLES_OK && es != PGRES_COMMAND_OK) {
        store_log(STORE_LOG_WARN, "cluster: statement %d failed: %s", cl->query,
                  PQresultErrorMessage(r));
        return;
    }
    switch (cl->query) {
    case PG_CL_SETUP:
        cl->set_up = 1;
        cl->next_renew = 0; /* renew (or join) at once: the lease may have run out */
        cl->fetch_more = 1; /* and catch up on what was missed */
        break;
    case PG_CL_JOIN:
        if (PQntuples(r) == 1) {
            int64_t applied = pg_i64(r, 0, 0), latest = pg_i64(r, 0, 1);
            if (cl->applied < 0) cl_applied(cl, applied);
            pthread_mutex_lock(&cl->mu);
            if (latest > cl->latest) cl->latest = latest;
            pthread_mutex_unlock(&cl->mu);
            cl->joined = 1;
            cl->next_renew = cl->sent_at + cl->lease_ns / 3;
            if (latest >= cl->applied) cl_leased(cl, latest); /* else the log went back: fetch */
            cl->fetch_more = 1;
            store_log(STORE_LOG_INFO, "cluster: joined as %s at change %" PRId64, cl->id,
                      cl->applied);
        }
        break;
    case PG_CL_RENEW:
        cl_renewed(cl, r, recv);
        break;
    case PG_CL_FETCH:
        cl_fetched(cl, r);
        break;
    case PG_CL_ACK:
        if (cl->ack_sent > cl->acked) cl->acked = cl->ack_sent;
        break;
    case PG_CL_EXPIRE:
        if (PQntuples(r) == 1) {
            store_log(STORE_LOG_WARN,
                      "cluster: node %s stopped renewing its lease; it is "
                      "expired, and changes no longer wait for it",
                      cl->expire_id);
            pthread_mutex_lock(&cl->mu);
            pg_node_t *n = cl_node(cl, cl->expire_id);
            if (n) cl_gone(cl, n);
            pthread_mutex_unlock(&cl->mu);
        }
        cl->expire_id[0] = '\0';
        break;
    }
}

static void cl_connect(pg_cluster_t *cl)
{
    cl->conn = pg_connect_start(cl->g);
    if (cl->conn == NULL || PQstatus(cl->conn) == CONNECTION_BAD) {
        cl_lost(cl, cl->conn ? PQerrorMessage(cl->conn) : "out of memory");
        return;
    }
    cl->connecting = 1;
    cl->connect_started = cl_now();
    cl->gen++;
}

int pg_cluster_fd(store_t *st, int *want_write, uint64_t *gen)
{
    pg_cluster_t *cl = pg_of(st)->cl;
    if (cl == NULL || cl->conn == NULL) return -1;
    *gen = cl->gen;
    *want_write = cl->connecting == 2 || cl->flushing;
    return PQsocket(cl->conn);
}

/* Drives the link as far as it goes without waiting. */
uint64_t pg_cluster_step(store_t *st)
{
    pg_cluster_t *cl = pg_of(st)->cl;
    if (cl == NULL) return 0;
    uint64_t now = cl_now();
    if (cl->conn == NULL && now >= cl->retry_at) cl_connect(cl);
    if (cl->conn && cl->connecting) {
        PostgresPollingStatusType ps = PQconnectPoll(cl->conn);
        if (ps == PGRES_POLLING_FAILED) {
            cl_lost(cl, PQerrorMessage(cl->conn));
        } else if (ps == PGRES_POLLING_OK) {
            cl->connecting = 0;
            PQsetnonblocking(cl->conn, 1);
            atomic_store(&cl->connected, 1);
            if (cl->logged_down) {
                atomic_fetch_add(&cl->reconnects, 1);
                store_log(STORE_LOG_INFO, "cluster: listening again; catching up");
            }
            cl->logged_down = 0;
            cl->backoff = PG_BACKOFF_MIN_NS;
            pg_database_back(cl->g);
        } else {
            cl->connecting = ps == PGRES_POLLING_WRITING ? 2 : 1;
            if (cl_now() - cl->connect_started > PG_CL_CONNECT_MAX_NS)
                cl_lost(cl, "connecting took longer than 5 s");
        }
    }
    for (int rounds = 0; cl->conn && !cl->connecting && rounds < 64; rounds++) {
        if (!PQconsumeInput(cl->conn)) {
            cl_lost(cl, PQerrorMessage(cl->conn));
            break;
        }
        cl_notified(cl);
        int progressed = 0;
        while (cl->query >= 0 && !PQisBusy(cl->conn)) {
            PGresult *r = PQgetResult(cl->conn);
            if (r == NULL) { /* the statement is done */
                cl->query = -1;
                progressed = 1;
                break;
            }
            cl_result(cl, r, cl_now());
            PQclear(r);
        }
        if (cl->conn == NULL) break;
        /* A statement in flight for a whole lease: the connection is dead
         * in a way TCP has not noticed (a partition). */
        if (cl->query >= 0 && cl_now() - cl->sent_at > cl->lease_ns) {
            cl_lost(cl, "no answer for a whole lease");
            break;
        }
        cl_next(cl);
        int f = cl->conn ? PQflush(cl->conn) : 0;
        if (f < 0) cl_lost(cl, PQerrorMessage(cl->conn));
        cl->flushing = f == 1;
        if (!progressed) break;
    }
    cl_publish(cl);
    /* The earliest of what is due next, at most a second away. */
    now = cl_now();
    uint64_t next = now + 1000000000ull, due[4] = {0, 0, 0, 0};
    if (cl->conn == NULL)
        due[0] = cl->retry_at;
    else if (cl->connecting)
        due[0] = cl->connect_started + PG_CL_CONNECT_MAX_NS;
    else if (cl->query >= 0)
        due[0] = cl->sent_at + cl->lease_ns;
    else
        due[0] = cl->next_renew;
    due[1] = cl->lease_until; /* ready turns off */
    for (int i = 0; i < 2; i++)
        if (due[i] > now && due[i] < next) next = due[i];
    if (due[0] <= now && cl->conn == NULL) next = now + 1000000; /* a retry is due */
    return (next - now + 999999) / 1000000;
}

void pg_cluster_status(store_t *st, store_cluster_t *out)
{
    pg_cluster_t *cl = pg_of(st)->cl;
    if (cl == NULL) return;
    uint64_t now = cl_now();
    out->clustered = 1;
    out->connected = atomic_load(&cl->connected);
    uint64_t until = atomic_load(&cl->lease_until_pub);
    out->lease_left_ms = ((int64_t)until - (int64_t)now) / 1000000;
    out->ready = atomic_load(&cl->ready) && now < until;
    out->lease_ms = cl->lease_ns / 1000000;
    out->fences = atomic_load(&cl->fences);
    out->fence_wait_ms = atomic_load(&cl->fence_wait_ns) / 1000000;
    out->fence_timeouts = atomic_load(&cl->fence_timeouts);
    out->reconnects = atomic_load(&cl->reconnects);
    out->gaps = atomic_load(&cl->gaps);
    pthread_mutex_lock(&cl->mu);
    out->latest = cl->latest;
    store_node_t *self = &out->nodes[out->n_nodes++];
    snprintf(self->node_id, sizeof(self->node_id), "%s", cl->id);
    snprintf(self->addr, sizeof(self->addr), "%s", cl->addr);
    self->self = 1;
    self->lease_left_ms = out->lease_left_ms;
    for (unsigned i = 0; i < cl->n_nodes && out->n_nodes < STORE_NODES_MAX; i++) {
        pg_node_t *n = &cl->nodes[i];
        if (!n->in_table) continue;
        store_node_t *o = &out->nodes[out->n_nodes++];
        snprintf(o->node_id, sizeof(o->node_id), "%s", n->id);
        snprintf(o->addr, sizeof(o->addr), "%s", n->addr);
        o->applied = n->applied;
        o->expired = n->expired;
        o->lease_left_ms =
            n->expired ? 0 : ((int64_t)(n->seen_ns + n->lease_ns) - (int64_t)now) / 1000000;
    }
    pthread_mutex_unlock(&cl->mu);
    /* The loop thread's own numbers: a moment old at most. */
    self->applied = out->applied = __atomic_load_n(&cl->applied, __ATOMIC_RELAXED);
}

/* ---------------------------------------------------------------- changes */

int pg_log_change(pg_t *g, pg_conn_t *c, int fence, const uint8_t (*hashes)[STORE_HASH_BYTES],
                  size_t n, const char *user_id, int64_t *seq, store_status_t *s)
{
    *seq = 0;
    pg_array_t h, u;
    pg_array_init(&h, PG_OID_BYTEA);
    pg_array_init(&u, PG_OID_TEXT);
    for (size_t i = 0; i < n; i++)
        pg_array_bytes(&h, hashes[i], STORE_HASH_BYTES);
    if (user_id) pg_array_text(&u, user_id);
    pg_params_t p = {0};
    pg_p_bool(&p, fence);
    pg_p_array(&p, &h);
    pg_p_array(&p, &u);
    PGresult *r = pg_run(g, c, PG_CHANGE_LOG, &p, s, "log a change");
    pg_array_free(&h);
    pg_array_free(&u);
    if (r == NULL) {
        if (c->conn) pg_rollback(g, c);
        return -1;
    }
    *seq = pg_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

void pg_cluster_fence(pg_t *g, int64_t seq)
{
    pg_cluster_t *cl = g->cl;
    if (cl == NULL || seq <= 0) return;
    uint64_t t0 = cl_now();
    atomic_fetch_add(&cl->fences, 1);
    /* Who may hold an answer older than seq: every node in the table now
     * (read after the commit), unless it is expired. The connection goes
     * back before the wait: waits must not starve the pool. */
    store_status_t s;
    pg_conn_t *c = pg_get(g, &s);
    PGresult *r = c ? pg_run(g, c, PG_NODES, NULL, &s, "read the nodes") : NULL;
    pg_put(g, c);
    uint64_t lease = cl->lease_ns;
    pthread_mutex_lock(&cl->mu);
    for (unsigned i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i].lease_ns > lease) lease = cl->nodes[i].lease_ns;
    uint64_t deadline = t0 + lease;
    int known = r != NULL;
    struct {
        pg_node_t *n;
        uint64_t gen;
    } wait[STORE_NODES_MAX];
    unsigned nw = 0;
    for (int i = 0; r && i < PQntuples(r); i++) {
        char id[STORE_NODE_ID_MAX];
        pg_text(r, i, 0, id, sizeof(id));
        if (strcmp(id, cl->id) == 0 || pg_bool(r, i, 2)) continue;
        if (pg_i64(r, i, 1) >= seq) continue;
        pg_node_t *n = cl_node(cl, id);
        if (n == NULL || nw == STORE_NODES_MAX) {
            known = 0; /* more nodes than the table holds: wait out the lease */
            continue;
        }
        wait[nw].n = n;
        wait[nw].gen = n->gone_gen;
        nw++;
    }
    PQclear(r);
    for (;;) {
        int waiting = !known;
        for (unsigned i = 0; i < nw && !waiting; i++)
            waiting = wait[i].n->applied < seq && wait[i].n->gone_gen == wait[i].gen;
        if (!waiting) break;
        uint64_t now = cl_now();
        if (now >= deadline) {
            atomic_fetch_add(&cl->fence_timeouts, 1);
            break;
        }
        struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000ull),
                              .tv_nsec = (long)(deadline % 1000000000ull)};
        pthread_cond_timedwait(&cl->cond, &cl->mu, &ts);
    }
    pthread_mutex_unlock(&cl->mu);
    atomic_fetch_add(&cl->fence_wait_ns, cl_now() - t0);
}

/* ---------------------------------------------------------------- open, close */

int pg_cluster_new(pg_t *g, const store_options_t *opt, char **errmsg)
{
    pg_cluster_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) abort();
    cl->g = g;
    uint64_t lease_ms = opt->cluster_lease_ms ? opt->cluster_lease_ms : PG_CL_DEFAULT_LEASE_MS;
    uint64_t ppm = opt->cluster_drift_ppm ? opt->cluster_drift_ppm : PG_CL_DEFAULT_DRIFT_PPM;
    uint64_t allow = opt->cluster_allowance_ms ? opt->cluster_allowance_ms : PG_CL_DEFAULT_ALLOW_MS;
    cl->lease_ns = lease_ms * 1000000ull;
    /* docs/cluster.md: another node waits a whole lease by its clock; this
     * one's, by a clock up to ppm faster or slower, must end first. */
    cl->margin_ns = cl->lease_ns * 2 * ppm / 1000000 + allow * 1000000ull;
    if (cl->margin_ns * 2 >= cl->lease_ns) {
        *errmsg = store_errf("--cluster-lease-ms %" PRIu64 " leaves no lease after its margin "
                             "of %" PRIu64 " ms (drift and allowance): make it longer",
                             lease_ms, cl->margin_ns / 1000000);
        free(cl);
        return -1;
    }
    char host[64] = "patd";
    gethostname(host, sizeof(host) - 1);
    uint8_t rnd[STORE_PAGE_KEY] = {0};
    if (store_random_key(rnd) != 0) rnd[0] = (uint8_t)getpid();
    snprintf(cl->id, sizeof(cl->id), "%.60s/%d/%02x%02x%02x%02x", host, (int)getpid(), rnd[0],
             rnd[1], rnd[2], rnd[3]);
    snprintf(cl->addr, sizeof(cl->addr), "%s", opt->node_addr ? opt->node_addr : "");
    cl->query = -1;
    cl->applied = -1;
    cl->acked = -1;
    cl->ack_sent = -1;
    cl->backoff = PG_BACKOFF_MIN_NS;
    pthread_mutex_init(&cl->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cl->cond, &ca);
    pthread_condattr_destroy(&ca);
    g->cl = cl;
    return 0;
}

void pg_cluster_leave(pg_t *g)
{
    pg_cluster_t *cl = g->cl;
    if (cl == NULL) return;
    /* Closed after the loop: nothing answers from the cache any more (and
     * the observer may be gone), so leaving is safe: nobody waits for a
     * node that is not in the table. */
    cl->lease_until = 0;
    store_status_t s;
    pg_conn_t *c = pg_get(g, &s);
    if (c) {
        PGresult *r = PQexecParams(c->conn, pg_cluster_sql[PG_CL_LEAVE], 1, NULL,
                                   (const char *const[]){cl->id}, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            store_log(STORE_LOG_INFO, "cluster: %s left", cl->id);
        PQclear(r);
        pg_put(g, c);
    }
}

void pg_cluster_free(pg_t *g)
{
    pg_cluster_t *cl = g->cl;
    if (cl == NULL) return;
    PQfinish(cl->conn);
    pthread_mutex_destroy(&cl->mu);
    pthread_cond_destroy(&cl->cond);
    free(cl);
    g->cl = NULL;
}
