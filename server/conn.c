/* conn: connection lifetime, explicit state, backpressure, idle timeout,
 * output and drain (the design is in conn.h). */
#include "conn.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "log.h"

#define CONN_OUT_KEEP (16 * 1024) /* output buffer kept between writes */

struct conn {
    conn_set_t *set;
    const transport_ops_t *tr;
    transport_t *t;
    const protocol_ops_t *proto;
    void *ps; /* the protocol's state */
    conn_state_t state;
    int reading; /* the transport delivers reads; follows state in conn_settle */
    unsigned refs;
    unsigned inflight; /* read and not yet written back */
    unsigned on_pool;  /* of those, held by a worker */
    uint64_t id;
    uint64_t last_active_ms;
    uint8_t *stash; /* input not consumed when the connection paused */
    size_t stash_len;
    /* Answers queued since the last write. */
    uint8_t *out;
    size_t out_len, out_cap;
    size_t out_wipe; /* out[0, out_wipe) may hold a secret: wiped once written */
    unsigned out_count;
    /* The one outstanding transport write: wbuf[woff, woff + wlen). */
    uint8_t *wbuf;
    size_t woff, wlen, wcap;
    size_t wwipe; /* wbuf[0, wwipe) may hold a secret */
    unsigned wcount;
    int writing;
    int dirty; /* on the set's list to flush (holds a reference) */
    conn_t *dnext;
    conn_t *prev, *next;
};

struct conn_set {
    uv_loop_t *loop;
    const conn_limits_t *lim;
    stats_t *stats;
    uv_check_t writer; /* flushes the dirty connections after each poll */
    conn_t *conns;
    conn_t *dirty;
    unsigned n;
    unsigned queued;   /* requests on the pool */
    size_t out_bytes;  /* answers not yet written, every connection */
    uint64_t requests; /* read and not yet answered (published in stats) */
    uint64_t next_id;
    int draining;
    /* The pool's two lanes (conn.h), shared with the workers. */
    pthread_mutex_t lanes_lock;
    conn_work_t *lane_head[2], *lane_tail[2]; /* [0] urgent, [1] the rest */
    /* conn_set_batch: the urgent lane's own thread, and the works it has
     * run, waiting for the loop (guarded by lanes_lock too). */
    conn_batch_t batch;
    int batching, batch_stop;
    pthread_t batch_thread;
    pthread_cond_t batch_wake;
    uv_async_t batch_ready;
    conn_work_t *ran_head, *ran_tail;
};

/* One per submitted work: libuv runs it on a worker, where it takes the
 * first work of the lanes, which need not be the one submitted with it. */
typedef struct {
    uv_work_t uv;
    conn_set_t *set;
    conn_work_t *w;
} conn_runner_t;

static void conn_settle(conn_t *c);

/* ---------------------------------------------------------------- lifetime */

static void conn_unref(conn_t *c)
{
    if (--c->refs > 0) return;
    if (c->proto && c->ps) c->proto->close(c->ps);
    free(c->stash);
    if (c->out) explicit_bzero(c->out, c->out_cap);
    if (c->wbuf) explicit_bzero(c->wbuf, c->wcap);
    free(c->out);
    free(c->wbuf);
    free(c);
}

static void conn_unlink(conn_t *c)
{
    conn_set_t *s = c->set;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->n--;
    atomic_fetch_sub(&s->stats->connections, 1);
}

static void conn_close(conn_t *c)
{
    if (c->state == CONN_CLOSING) return;
    c->state = CONN_CLOSING;
    free(c->stash);
    c->stash = NULL;
    c->reading = 0;
    c->tr->close(c->t);
}

/* ---------------------------------------------------------------- output */

static void conn_mark_dirty(conn_t *c)
{
    if (c->dirty) return;
    conn_set_t *s = c->set;
    c->dirty = 1;
    c->refs++;
    c->dnext = s->dirty;
    s->dirty = c;
}

/* Bytes of answers leaving (written or dropped): out of the budget. */
static void conn_out_gone(conn_t *c, size_t n)
{
    c->set->out_bytes -= n;
}

/* A connection's unwritten answers. */
static size_t conn_pending(const conn_t *c)
{
    return c->out_len + (c->writing ? c->wlen : 0);
}

/* Answers written (or dropped): they no longer count as in flight. */
static void conn_completed(conn_t *c, unsigned n)
{
    c->inflight -= n;
    conn_set_t *s = c->set;
    s->requests -= n;
    atomic_store_explicit(&s->stats->requests, s->requests, memory_order_relaxed);
}

/* Empties the queued output. Answers may hold a new token's secret: wiped
 * before reuse; a buffer that a burst made large is given back. */
static void conn_out_reset(conn_t *c)
{
    explicit_bzero(c->out, c->out_wipe);
    c->out_wipe = 0;
    c->out_len = 0;
    c->out_count = 0;
    if (c->out_cap > CONN_OUT_KEEP) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
}

/* Writes the queued output: one try_write, and what the socket did not
 * take as the one outstanding transport write. */
static void conn_flush(conn_t *c)
{
    if (c->out_len == 0 || c->writing) return;
    if (c->state == CONN_CLOSING) {
        conn_completed(c, c->out_count);
        conn_out_gone(c, c->out_len);
        conn_out_reset(c);
        return;
    }
    int n = c->tr->try_write(c->t, c->out, c->out_len);
    if (n < 0 && n != UV_EAGAIN) {
        log_debug("conn %llu: write failed: %s", (unsigned long long)c->id, uv_strerror(n));
        conn_completed(c, c->out_count);
        conn_out_gone(c, c->out_len);
        conn_out_reset(c);
        conn_close(c);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    conn_out_gone(c, done);
    if (done == c->out_len) {
        conn_completed(c, c->out_count);
        conn_out_reset(c);
        c->last_active_ms = conn_now_ms(c);
        return;
    }
    /* The rest goes out as the outstanding write: the queued buffer
     * becomes the write buffer, and the old write buffer is reused. */
    uint8_t *spare = c->wbuf;
    size_t spare_cap = c->wcap;
    c->wbuf = c->out;
    c->wcap = c->out_cap;
    c->wwipe = c->out_wipe;
    c->out_wipe = 0;
    c->woff = done;
    c->wlen = c->out_len - done;
    c->wcount = c->out_count;
    c->out = spare;
    c->out_cap = spare_cap;
    c->out_len = 0;
    c->out_count = 0;
    c->writing = 1;
    int rc = c->tr->write(c->t, c->wbuf + c->woff, c->wlen);
    if (rc < 0) {
        c->writing = 0;
        conn_completed(c, c->wcount);
        conn_out_gone(c, c->wlen);
        conn_close(c);
    }
}

static void conn_on_written(conn_t *c, int status)
{
    c->writing = 0;
    conn_completed(c, c->wcount);
    conn_out_gone(c, c->wlen);
    explicit_bzero(c->wbuf, c->wwipe);
    c->wwipe = 0;
    c->wlen = c->woff = 0;
    c->wcount = 0;
    if (c->wcap > CONN_OUT_KEEP) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
    }
    if (status < 0) {
        if (c->state != CONN_CLOSING)
            log_debug("conn %llu: write failed: %s", (unsigned long long)c->id,
                      uv_strerror(status));
        conn_close(c);
        return;
    }
    c->last_active_ms = conn_now_ms(c);
    if (c->out_len) conn_mark_dirty(c);
}

static void conn_on_check(uv_check_t *h)
{
    conn_set_t *s = h->data;
    /* Settling can resume a paused connection whose stashed requests are
     * answered at once: go round until nothing is left, or they would wait
     * for the next poll, which might never come. */
    while (s->dirty) {
        conn_t *c = s->dirty;
        s->dirty = NULL;
        while (c) {
            conn_t *next = c->dnext;
            c->dirty = 0;
            c->dnext = NULL;
            conn_flush(c);
            conn_settle(c);
            conn_unref(c);
            c = next;
        }
    }
}

static void conn_queue(conn_t *c, const uint8_t *head, size_t head_len, const uint8_t *body,
                       size_t body_len, unsigned completes, int secret)
{
    if (c->state == CONN_CLOSING) {
        conn_completed(c, completes);
        return;
    }
    size_t len = head_len + body_len;
    size_t pending = conn_pending(c);
    if (pending + len > c->set->lim->max_output) {
        /* Backpressure keeps this from happening to a client that reads;
         * one that does not is cut off rather than buffered for. */
        log_warn("conn %llu: closing a connection with %zu bytes of unread answers",
                 (unsigned long long)c->id, pending);
        conn_completed(c, completes);
        conn_close(c);
        return;
    }
    size_t need = c->out_len + len;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *grown = malloc(cap);
        if (grown == NULL) abort();
        if (c->out) {
            memcpy(grown, c->out, c->out_len);
            explicit_bzero(c->out, c->out_wipe);
            free(c->out);
        }
        c->out = grown;
        c->out_cap = cap;
    }
    if (head_len) memcpy(c->out + c->out_len, head, head_len);
    if (body_len) memcpy(c->out + c->out_len + head_len, body, body_len);
    c->out_len = need;
    if (secret) c->out_wipe = need;
    c->out_count += completes;
    c->set->out_bytes += len;
    conn_mark_dirty(c);
}

void conn_send2(conn_t *c, const uint8_t *head, size_t head_len, const uint8_t *body,
                size_t body_len, unsigned completes)
{
    conn_queue(c, head, head_len, body, body_len, completes, 1);
}

void conn_send2_public(conn_t *c, const uint8_t *head, size_t head_len, const uint8_t *body,
                       size_t body_len, unsigned completes)
{
    conn_queue(c, head, head_len, body, body_len, completes, 0);
}

void conn_send(conn_t *c, const uint8_t *data, size_t len, unsigned completes)
{
    conn_queue(c, NULL, 0, data, len, completes, 1);
}

/* ---------------------------------------------------------------- input */

/* Feeds bytes to the protocol; keeps what it did not consume. */
static void conn_feed(conn_t *c, const uint8_t *data, size_t len)
{
    size_t used = c->proto->feed(c->ps, data, len);
    if (used >= len || c->state == CONN_CLOSING || c->state == CONN_FAILING) return;
    uint8_t *rest = malloc(len - used);
    if (rest == NULL) abort();
    memcpy(rest, data + used, len - used);
    free(c->stash); /* data may point into it: copied first */
    c->stash = rest;
    c->stash_len = len - used;
}

/* The one place that decides, after any event, whether c reads, resumes
 * from its stash or closes. */
static void conn_settle(conn_t *c)
{
    const conn_limits_t *lim = c->set->lim;
    if (c->state == CONN_CLOSING) return;
    if (c->state == CONN_FAILING && c->inflight == 0 && !c->writing && c->out_len == 0) {
        conn_close(c);
        return;
    }
    while (c->state == CONN_PAUSED && c->inflight <= lim->max_inflight / 2) {
        c->state = CONN_OPEN;
        if (c->stash == NULL) break;
        uint8_t *stash = c->stash;
        size_t len = c->stash_len;
        c->stash = NULL;
        conn_feed(c, stash, len);
        free(stash);
        if (c->state == CONN_CLOSING) return;
    }
    /* A connection holding more than its fair share of the server's budget
     * for unwritten answers is not read until it drains: clients that
     * never read cannot take the memory from those that do. */
    conn_set_t *s = c->set;
    size_t share = s->lim->max_output_total / (s->n ? s->n : 1);
    int want = c->state == CONN_OPEN && conn_pending(c) <= share;
    if (want && !c->reading) {
        if (c->tr->read_start(c->t) == 0) c->reading = 1;
    } else if (!want && c->reading) {
        c->tr->read_stop(c->t);
        c->reading = 0;
    }
}

void conn_io(conn_t *c, conn_io_t ev, const uint8_t *data, ssize_t n)
{
    switch (ev) {
    case CONN_IO_READ:
        if (c->state != CONN_OPEN || n <= 0) return;
        c->last_active_ms = conn_now_ms(c);
        conn_feed(c, data, (size_t)n);
        break;
    case CONN_IO_EOF:
        conn_close(c);
        return;
    case CONN_IO_ERROR:
        if (c->state != CONN_CLOSING)
            log_debug("conn %llu: read failed: %s", (unsigned long long)c->id, uv_strerror((int)n));
        conn_close(c);
        return;
    case CONN_IO_WRITTEN:
        conn_on_written(c, (int)n);
        break;
    case CONN_IO_CLOSED:
        conn_unlink(c);
        conn_unref(c);
        return;
    }
    conn_settle(c);
}

int conn_begin_request(conn_t *c)
{
    c->inflight++;
    conn_set_t *s = c->set;
    /* Only the loop thread writes it: a plain store, no locked add. */
    atomic_store_explicit(&s->stats->requests, ++s->requests, memory_order_relaxed);
    if (c->inflight < c->set->lim->max_inflight) return 0;
    if (c->state == CONN_OPEN) c->state = CONN_PAUSED;
    return 1;
}

void conn_fail(conn_t *c)
{
    if (c->state == CONN_CLOSING) return;
    c->state = CONN_FAILING;
    free(c->stash);
    c->stash = NULL;
}

/* ---------------------------------------------------------------- work */

static void conn_work_run(uv_work_t *uv)
{
    static __thread int named; /* libuv's pool threads, named on their first work */
    if (!named) {
        prctl(PR_SET_NAME, "patd-worker");
        named = 1;
    }
    conn_runner_t *r = uv->data;
    conn_set_t *s = r->set;
    pthread_mutex_lock(&s->lanes_lock);
    int lane = s->lane_head[0] && !s->batching ? 0 : 1;
    conn_work_t *w = s->lane_head[lane]; /* never NULL: one runner per work */
    s->lane_head[lane] = w->next;
    if (w->next == NULL) s->lane_tail[lane] = NULL;
    pthread_mutex_unlock(&s->lanes_lock);
    r->w = w;
    w->run(w);
}

/* On the loop: a work has run; its answer goes out (or is dropped). */
static void conn_work_finish(conn_work_t *w)
{
    conn_t *c = w->conn;
    conn_set_t *s = c->set;
    s->queued--;
    c->on_pool--;
    atomic_fetch_sub(&s->stats->in_flight, 1);
    int alive = c->state != CONN_CLOSING;
    w->done(w, alive); /* may free w */
    if (alive) conn_settle(c);
    conn_unref(c);
}

static void conn_work_done(uv_work_t *uv, int status)
{
    conn_runner_t *r = uv->data;
    conn_work_t *w = r->w;
    free(r);
    (void)status; /* only UV_ECANCELED, and nothing cancels */
    conn_work_finish(w);
}

/* ---------------------------------------------------------------- batches */

#define CONN_BATCH_MAX 256

static void *conn_batch_main(void *arg)
{
    conn_set_t *s = arg;
    prctl(PR_SET_NAME, "patd-batch"); /* threads are named for top -H and /proc */
    conn_work_t *items[CONN_BATCH_MAX];
    const char *tokens[CONN_BATCH_MAX];
    pthread_mutex_lock(&s->lanes_lock);
    for (;;) {
        while (!s->lane_head[0] && !s->batch_stop)
            pthread_cond_wait(&s->batch_wake, &s->lanes_lock);
        if (!s->lane_head[0]) break; /* stopping, and nothing left */
        size_t n = 0;
        while (s->lane_head[0] && n < CONN_BATCH_MAX) {
            conn_work_t *w = s->lane_head[0];
            s->lane_head[0] = w->next;
            w->next = NULL;
            items[n] = w;
            tokens[n++] = w->token ? w->token : "";
        }
        if (!s->lane_head[0]) s->lane_tail[0] = NULL;
        pthread_mutex_unlock(&s->lanes_lock);
        s->batch.prefetch(s->batch.arg, tokens, n);
        for (size_t i = 0; i < n; i++)
            items[i]->run(items[i]);
        if (s->batch.done) s->batch.done(s->batch.arg);
        pthread_mutex_lock(&s->lanes_lock);
        for (size_t i = 0; i < n; i++) {
            if (s->ran_tail)
                s->ran_tail->next = items[i];
            else
                s->ran_head = items[i];
            s->ran_tail = items[i];
        }
        uv_async_send(&s->batch_ready);
    }
    pthread_mutex_unlock(&s->lanes_lock);
    return NULL;
}

/* On the loop: every work the batch thread has run. */
static void conn_batch_finish(uv_async_t *a)
{
    conn_set_t *s = a->data;
    pthread_mutex_lock(&s->lanes_lock);
    conn_work_t *w = s->ran_head;
    s->ran_head = s->ran_tail = NULL;
    pthread_mutex_unlock(&s->lanes_lock);
    for (conn_work_t *next; w; w = next) {
        next = w->next;
        conn_work_finish(w);
    }
}

int conn_set_batch(conn_set_t *s, const conn_batch_t *b)
{
    if (b->prefetch == NULL || s->batching) return 0;
    s->batch = *b;
    pthread_cond_init(&s->batch_wake, NULL);
    uv_async_init(s->loop, &s->batch_ready, conn_batch_finish);
    s->batch_ready.data = s;
    /* One thread: measured, a second one (a batch read while the one
     * before runs) made cold Verifies on PostgreSQL 10% slower. */
    if (pthread_create(&s->batch_thread, NULL, conn_batch_main, s) != 0) {
        uv_close((uv_handle_t *)&s->batch_ready, NULL);
        pthread_cond_destroy(&s->batch_wake);
        return -1;
    }
    s->batching = 1;
    return 0;
}

/* At close: the thread runs what is queued, stops, and the loop finishes
 * every work it ran (their connections are closing: answers dropped). */
static void conn_batch_stop(conn_set_t *s)
{
    if (!s->batching) return;
    pthread_mutex_lock(&s->lanes_lock);
    s->batch_stop = 1;
    pthread_cond_signal(&s->batch_wake);
    pthread_mutex_unlock(&s->lanes_lock);
    pthread_join(s->batch_thread, NULL);
    conn_batch_finish(&s->batch_ready);
    uv_close((uv_handle_t *)&s->batch_ready, NULL);
    pthread_cond_destroy(&s->batch_wake);
    s->batching = 0;
}

int conn_submit(conn_t *c, conn_work_t *w)
{
    conn_set_t *s = c->set;
    /* An eighth of the queue is kept for the urgent lane: a flood of other
     * work cannot refuse a Verify. */
    unsigned bound = s->lim->max_queue;
    if (!w->urgent) bound -= bound / 8;
    if (s->queued >= bound) return -1;
    w->conn = c;
    w->next = NULL;
    int lane = w->urgent ? 0 : 1;
    c->refs++;
    c->on_pool++;
    s->queued++;
    atomic_fetch_add(&s->stats->in_flight, 1);
    pthread_mutex_lock(&s->lanes_lock);
    if (s->lane_tail[lane])
        s->lane_tail[lane]->next = w;
    else
        s->lane_head[lane] = w;
    s->lane_tail[lane] = w;
    if (lane == 0 && s->batching) {
        pthread_cond_signal(&s->batch_wake);
        pthread_mutex_unlock(&s->lanes_lock);
        return 0;
    }
    pthread_mutex_unlock(&s->lanes_lock);
    conn_runner_t *r = malloc(sizeof(*r));
    if (r == NULL) abort();
    r->set = s;
    r->uv.data = r;
    uv_queue_work(s->loop, &r->uv, conn_work_run, conn_work_done);
    return 0;
}

/* ---------------------------------------------------------------- queries */

int conn_budget_spent(const conn_t *c)
{
    /* Only a connection that is itself behind on reading is refused: a
     * client that reads its answers is served while others flood. */
    return c->set->out_bytes >= c->set->lim->max_output_total && conn_pending(c) > 0;
}

int conn_budget_ok(const conn_t *c, size_t len)
{
    return c->set->out_bytes + len <= c->set->lim->max_output_total;
}

int conn_draining(const conn_t *c)
{
    return c->set->draining;
}

conn_state_t conn_state(const conn_t *c)
{
    return c->state;
}

uint64_t conn_id(const conn_t *c)
{
    return c->id;
}

int conn_peer(const conn_t *c, struct sockaddr_storage *out)
{
    return c->tr->peer(c->t, out);
}

int conn_is_tls(const conn_t *c)
{
    return strcmp(c->tr->name, "tls") == 0;
}

int conn_peer_verified(const conn_t *c)
{
    return c->tr->peer_verified ? c->tr->peer_verified(c->t) : 0;
}

void conn_addr_text(const struct sockaddr_storage *a, char *out, size_t cap)
{
    const void *bytes = NULL;
    int family = a->ss_family;
    if (family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)a)->sin6_addr;
        bytes = a6;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;
            bytes = a6->s6_addr + 12;
        }
    } else if (family == AF_INET) {
        bytes = &((const struct sockaddr_in *)a)->sin_addr;
    }
    if (bytes == NULL || inet_ntop(family, bytes, out, (socklen_t)cap) == NULL)
        snprintf(out, cap, "unknown");
}

void *conn_protocol_state(const conn_t *c)
{
    return c->ps;
}

/* ---------------------------------------------------------------- the set */

conn_set_t *conn_set_new(uv_loop_t *loop, const conn_limits_t *limits, stats_t *stats)
{
    conn_set_t *s = calloc(1, sizeof(*s));
    if (s == NULL) abort();
    s->loop = loop;
    s->lim = limits;
    s->stats = stats;
    pthread_mutex_init(&s->lanes_lock, NULL);
    uv_check_init(loop, &s->writer);
    s->writer.data = s;
    uv_check_start(&s->writer, conn_on_check);
    return s;
}

void conn_set_accept(conn_set_t *s, uv_stream_t *listener, const transport_ops_t *tr,
                     const void *tr_cfg, const protocol_ops_t *proto, const void *cfg,
                     int refuse_all)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) abort();
    c->set = s;
    c->refs = 1;
    c->id = ++s->next_id;
    c->tr = tr;
    c->t = tr->accept(listener, c, tr_cfg);
    if (c->t == NULL) {
        free(c);
        return;
    }
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->n++;
    atomic_fetch_add(&s->stats->connections, 1);
    atomic_fetch_add_explicit(&s->stats->accepted, 1, memory_order_relaxed);
    c->last_active_ms = conn_now_ms(c);
    c->proto = proto;
    c->ps = proto->open(c, cfg);
    if (c->ps == NULL) {
        conn_close(c);
        return;
    }
    if (refuse_all || s->draining) {
        c->state = CONN_FAILING;
        proto->refuse(c->ps, PAT_E_SHUTTING_DOWN, "server is shutting down");
    } else if (s->n > s->lim->max_connections) {
        c->state = CONN_FAILING;
        proto->refuse(c->ps, PAT_E_TOO_MANY_CONNECTIONS, "too many connections; retry later");
    }
    conn_settle(c);
}

/* libuv's monotonic ms, read once per loop iteration: a clock read per
 * request and per write less than clock_mono_ms(). */
uint64_t conn_now_ms(const conn_t *c)
{
    return uv_now(c->set->loop);
}

void conn_set_sweep(conn_set_t *s)
{
    uint64_t now = uv_now(s->loop); /* conn_now_ms's clock */
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        /* No progress for the timeout: nothing read, no answer written.
         * That is a silent client, one stalled in the middle of a request,
         * or one that pipelines without reading its answers (its write
         * stays outstanding). Work still on the pool is waited for. */
        if (c->state == CONN_CLOSING || c->on_pool > 0) continue;
        if (c->proto->expired && c->proto->expired(c->ps, now)) {
            log_debug("conn %llu: closing: the %s protocol's deadline passed",
                      (unsigned long long)c->id, c->proto->name);
            conn_close(c);
            continue;
        }
        if (now - c->last_active_ms <= s->lim->idle_timeout_ms) continue;
        const char *note = c->proto->idle_note ? c->proto->idle_note(c->ps) : NULL;
        log_debug("conn %llu: closing a connection without progress for %llu ms%s%s%s",
                  (unsigned long long)c->id, (unsigned long long)(now - c->last_active_ms),
                  note ? " (" : "", note ? note : "", note ? ")" : "");
        if (c->inflight) log_debug("conn %llu: answers not read", (unsigned long long)c->id);
        conn_close(c);
    }
}

void conn_set_drain(conn_set_t *s)
{
    s->draining = 1;
    for (conn_t *c = s->conns; c; c = c->next) {
        if (c->state == CONN_OPEN || c->state == CONN_PAUSED) {
            c->state = CONN_DRAINING;
            free(c->stash);
            c->stash = NULL;
        }
        conn_settle(c);
    }
}

int conn_set_idle(const conn_set_t *s)
{
    if (s->queued > 0) return 0;
    for (const conn_t *c = s->conns; c; c = c->next)
        if (c->inflight > 0 && c->state != CONN_CLOSING) return 0;
    return 1;
}

unsigned conn_set_queued(const conn_set_t *s)
{
    return s->queued;
}

unsigned conn_set_count(const conn_set_t *s)
{
    return s->n;
}

void conn_set_close(conn_set_t *s)
{
    for (conn_t *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_close(c);
    }
    conn_batch_stop(s);
    uv_close((uv_handle_t *)&s->writer, NULL);
}

void conn_set_free(conn_set_t *s)
{
    if (s) pthread_mutex_destroy(&s->lanes_lock);
    free(s);
}
