/* net: libuv server loop, connections, backpressure and shutdown. */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "dispatch.h"
#include "frame.h"
#include "log.h"

#define NET_READ_BUF      (64 * 1024)
#define NET_BACKLOG       1024
#define NET_SWEEP_MS      250
#define NET_DRAIN_POLL_MS 20
#define NET_OUT_KEEP      (16 * 1024) /* output buffer kept between writes */

typedef struct net_server net_server_t;

typedef struct net_conn {
    uv_tcp_t tcp; /* first: the handle's data points back here too */
    net_server_t *srv;
    frame_decoder_t dec;
    unsigned refs;
    unsigned inflight; /* on the pool or not yet written */
    unsigned on_pool;  /* of those, still being handled by a worker */
    size_t write_bytes;
    int closing;
    int reading;
    int paused;
    int broken; /* protocol error answered: close once written */
    uint64_t last_active_ms;
    uint8_t *stash; /* unread bytes of the chunk in which we paused */
    size_t stash_len, stash_off;
    /* Responses framed but not yet handed to uv_write: flushed once per
     * loop iteration, so a pipelined batch costs one write, not one each. */
    uint8_t *out;
    size_t out_len, out_cap;
    unsigned out_count;
    int dirty; /* on the server's dirty list (holds a reference) */
    struct net_conn *dnext;
    struct net_conn *prev, *next;
} net_conn_t;

typedef struct {
    uv_work_t work;
    net_conn_t *conn;
    svc_t *svc;
    uint8_t *frame;
    size_t len;
    uint8_t *out;
    size_t out_len;
} net_req_t;

typedef struct {
    uv_write_t req;
    net_conn_t *conn;
    uint8_t *buf; /* count framed responses, len bytes */
    size_t len;
    unsigned count;
} net_write_t;

struct net_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    uv_timer_t sweep, drain;
    uv_check_t writer; /* flushes dirty connections after each poll */
    net_conn_t *dirty;
    const net_config_t *cfg;
    svc_t *svc;
    usage_t *usage;
    net_conn_t *conns;
    unsigned n_conns;
    unsigned queued; /* requests on the pool, whole server */
    int draining;
    uint64_t drain_deadline;
    uint8_t read_buf[NET_READ_BUF];
};

static void net_conn_close(net_conn_t *c);
static void net_conn_resume(net_conn_t *c);
static void net_conn_written(net_conn_t *c);

/* ---------------------------------------------------------------- lifetime */

static void net_conn_unref(net_conn_t *c)
{
    if (--c->refs > 0) return;
    frame_free(&c->dec);
    free(c->stash);
    free(c->out);
    free(c);
}

static void net_on_close(uv_handle_t *h)
{
    net_conn_t *c = h->data;
    net_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->n_conns--;
    atomic_fetch_sub(&srv->svc->stats->connections, 1);
    net_conn_unref(c);
}

static void net_conn_close(net_conn_t *c)
{
    if (c->closing) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, net_on_close);
}

/* ---------------------------------------------------------------- writes */

static void net_on_write(uv_write_t *req, int status)
{
    net_write_t *w = (net_write_t *)req;
    net_conn_t *c = w->conn;
    c->write_bytes -= w->len;
    c->inflight -= w->count;
    explicit_bzero(w->buf, w->len);
    free(w->buf);
    free(w);
    if (status < 0 && !c->closing) {
        log_debug("net: write failed: %s", uv_strerror(status));
        net_conn_close(c);
    } else if (!c->closing) {
        net_conn_written(c);
    }
    net_conn_unref(c);
}

/* After responses reached the socket: close a broken connection once it
 * has said why, or read again if backpressure had paused it. */
static void net_conn_written(net_conn_t *c)
{
    c->last_active_ms = clock_mono_ms();
    if (c->broken && c->inflight == 0)
        net_conn_close(c);
    else
        net_conn_resume(c);
}

/* Empties the output buffer once its bytes are written or handed over.
 * Responses may hold a new token's secret: wiped before reuse; a buffer a
 * burst made large is given back. */
static void net_conn_out_reset(net_conn_t *c)
{
    explicit_bzero(c->out, c->out_len);
    c->out_len = 0;
    c->out_count = 0;
    if (c->out_cap > NET_OUT_KEEP) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
}

/* Writes what a connection has framed. The common case, an empty socket
 * buffer, is one write(2) with no request and no callback (uv_write would
 * also re-arm epoll for every response). What the socket does not take goes
 * to one uv_write, which owns the buffer from then on. */
static void net_conn_flush(net_conn_t *c)
{
    if (c->out_len == 0) return;
    if (c->closing) {
        c->inflight -= c->out_count;
        net_conn_out_reset(c);
        return;
    }
    size_t done = 0;
    if (c->write_bytes == 0) {
        uv_buf_t all = uv_buf_init((char *)c->out, (unsigned)c->out_len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &all, 1);
        if (n < 0 && n != UV_EAGAIN) {
            log_debug("net: write failed: %s", uv_strerror(n));
            c->inflight -= c->out_count;
            net_conn_out_reset(c);
            net_conn_close(c);
            return;
        }
        done = n > 0 ? (size_t)n : 0;
        if (done == c->out_len) {
            c->inflight -= c->out_count;
            net_conn_out_reset(c);
            net_conn_written(c);
            return;
        }
    }
    net_write_t *w = malloc(sizeof(*w));
    if (w == NULL) abort();
    w->conn = c;
    w->len = c->out_len - done;
    w->buf = malloc(w->len);
    if (w->buf == NULL) abort();
    memcpy(w->buf, c->out + done, w->len);
    w->count = c->out_count;
    net_conn_out_reset(c);
    uv_buf_t b = uv_buf_init((char *)w->buf, (unsigned)w->len);
    c->refs++;
    c->write_bytes += w->len;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, net_on_write) < 0) {
        c->refs--;
        c->write_bytes -= w->len;
        c->inflight -= w->count;
        free(w->buf);
        free(w);
        net_conn_close(c);
    }
}

static void net_on_check(uv_check_t *h)
{
    net_server_t *srv = h->data;
    /* A flush can resume a paused connection whose stashed requests answer
     * at once: flush again until nothing is left, or they would wait for
     * the next poll, which might not come. */
    while (srv->dirty) {
        net_conn_t *c = srv->dirty;
        srv->dirty = NULL;
        while (c) {
            net_conn_t *next = c->dnext;
            c->dirty = 0;
            c->dnext = NULL;
            net_conn_flush(c);
            net_conn_unref(c);
            c = next;
        }
    }
}

/* Queues one response; takes ownership of body. The request it answers
 * stays counted in c->inflight until its write completes. */
static void net_conn_send(net_conn_t *c, uint8_t *body, size_t len)
{
    if (c->closing) {
        free(body);
        c->inflight--;
        return;
    }
    if (c->write_bytes + c->out_len + len > c->srv->cfg->max_output) {
        /* Backpressure keeps this from happening to a client that reads;
         * one that does not read is cut off rather than buffered for. */
        log_warn("net: closing a connection with %zu bytes of unread responses",
                 c->write_bytes + c->out_len);
        free(body);
        c->inflight--;
        net_conn_close(c);
        return;
    }
    size_t need = c->out_len + FRAME_HEADER_BYTES + len;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap * 2 : 4096;
        while (cap < need)
            cap *= 2;
        c->out = realloc(c->out, cap);
        if (c->out == NULL) abort();
        c->out_cap = cap;
    }
    frame_put_header(c->out + c->out_len, (uint32_t)len);
    memcpy(c->out + c->out_len + FRAME_HEADER_BYTES, body, len);
    c->out_len = need;
    c->out_count++;
    explicit_bzero(body, len);
    free(body);
    if (!c->dirty) {
        net_server_t *srv = c->srv;
        c->dirty = 1;
        c->refs++;
        c->dnext = srv->dirty;
        srv->dirty = c;
    }
}

static void net_conn_send_error(net_conn_t *c, uint64_t id, pat_err_t err, const char *msg)
{
    size_t len;
    uint8_t *body = disp_error(id, err, msg, &len);
    c->inflight++;
    net_conn_send(c, body, len);
}

/* ---------------------------------------------------------------- requests */

static void net_work(uv_work_t *work)
{
    net_req_t *r = work->data;
    r->out = disp_handle(r->svc, r->frame, r->len, &r->out_len);
}

static void net_after_work(uv_work_t *work, int status)
{
    net_req_t *r = work->data;
    net_conn_t *c = r->conn;
    (void)status;
    c->srv->queued--;
    c->on_pool--;
    atomic_fetch_sub(&c->srv->svc->stats->in_flight, 1);
    free(r->frame);
    net_conn_send(c, r->out, r->out_len);
    free(r);
    net_conn_unref(c);
}

/* One complete frame from the decoder; returns 1 to pause reading. */
static int net_on_frame(void *arg, const uint8_t *data, size_t len)
{
    net_conn_t *c = arg;
    net_server_t *srv = c->srv;
    uint8_t *inline_out;
    size_t inline_len;
    c->last_active_ms = clock_mono_ms();
    if (srv->draining) {
        net_conn_send_error(c, disp_peek_id(data, len), PAT_E_SHUTTING_DOWN,
                            "server is shutting down; retry on another instance");
    } else if ((inline_out = disp_handle_inline(srv->svc, data, len, &inline_len)) != NULL) {
        /* Answered from the verification cache on this thread: no hop to a
         * worker and back (two context switches on a 2-core machine). */
        c->inflight++;
        net_conn_send(c, inline_out, inline_len);
    } else if (srv->queued >= srv->cfg->max_queue) {
        net_conn_send_error(c, disp_peek_id(data, len), PAT_E_OVERLOADED,
                            "server is overloaded; retry with backoff");
    } else {
        net_req_t *r = malloc(sizeof(*r));
        if (r == NULL) abort();
        r->work.data = r;
        r->conn = c;
        r->svc = srv->svc;
        r->frame = malloc(len);
        if (r->frame == NULL) abort();
        memcpy(r->frame, data, len);
        r->len = len;
        c->refs++;
        c->inflight++;
        c->on_pool++;
        srv->queued++;
        atomic_fetch_add(&srv->svc->stats->in_flight, 1);
        uv_queue_work(srv->loop, &r->work, net_work, net_after_work);
    }
    return c->inflight >= srv->cfg->max_inflight;
}

/* Feeds bytes; on a pause stashes what was not consumed. */
static void net_conn_feed(net_conn_t *c, const uint8_t *data, size_t len)
{
    size_t used = 0;
    frame_status_t st = frame_feed(&c->dec, data, len, net_on_frame, c, &used);
    if (st != FRAME_OK) {
        /* Protocol error: one response with id 0, then close after it. */
        c->broken = 1;
        if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
        if (st == FRAME_EMPTY)
            net_conn_send_error(c, 0, PAT_E_BAD_FRAME, "frame of length 0");
        else
            net_conn_send_error(c, 0, PAT_E_FRAME_TOO_LARGE, "frame longer than the maximum");
        return;
    }
    if (used < len && !c->closing) {
        /* Paused at the in-flight bound: keep the rest for later. */
        uint8_t *rest = malloc(len - used);
        if (rest == NULL) abort();
        memcpy(rest, data + used, len - used);
        free(c->stash);
        c->stash = rest;
        c->stash_len = len - used;
        c->stash_off = 0;
    }
    if (c->inflight >= c->srv->cfg->max_inflight && !c->closing) {
        c->paused = 1;
        if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

static void net_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    net_conn_t *c = h->data;
    (void)suggested;
    /* One buffer for the whole loop: read_cb consumes it before the next
     * read, and the decoder copies only partial frames. */
    *buf = uv_buf_init((char *)c->srv->read_buf, NET_READ_BUF);
}

static void net_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    net_conn_t *c = s->data;
    if (nread < 0) {
        if (nread != UV_EOF) log_debug("net: read failed: %s", uv_strerror((int)nread));
        net_conn_close(c);
        return;
    }
    if (nread == 0 || c->broken) return;
    net_conn_feed(c, (const uint8_t *)buf->base, (size_t)nread);
}

static void net_conn_resume(net_conn_t *c)
{
    net_server_t *srv = c->srv;
    if (!c->paused || c->broken || srv->draining) return;
    if (c->inflight > srv->cfg->max_inflight / 2) return;
    c->paused = 0;
    if (c->stash) {
        uint8_t *stash = c->stash;
        size_t len = c->stash_len - c->stash_off;
        size_t off = c->stash_off;
        c->stash = NULL;
        net_conn_feed(c, stash + off, len);
        free(stash);
        if (c->paused || c->broken || c->closing) return;
    }
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, net_alloc, net_on_read) == 0)
        c->reading = 1;
}

/* ---------------------------------------------------------------- accept */

static void net_on_connection(uv_stream_t *listener, int status)
{
    net_server_t *srv = listener->data;
    if (status < 0) {
        log_warn("net: accept failed: %s", uv_strerror(status));
        return;
    }
    net_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) abort();
    c->srv = srv;
    c->refs = 1;
    frame_init(&c->dec, srv->cfg->max_frame);
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    atomic_fetch_add(&srv->svc->stats->connections, 1);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        net_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->last_active_ms = clock_mono_ms();
    if (srv->n_conns > srv->cfg->max_connections || srv->draining) {
        c->broken = 1;
        net_conn_send_error(c, 0, srv->draining ? PAT_E_SHUTTING_DOWN : PAT_E_TOO_MANY_CONNECTIONS,
                            srv->draining ? "server is shutting down"
                                          : "too many connections; retry later");
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, net_alloc, net_on_read) == 0) c->reading = 1;
}

/* ---------------------------------------------------------------- timers */

static void net_on_sweep(uv_timer_t *t)
{
    net_server_t *srv = t->data;
    uint64_t now = clock_mono_ms();
    for (net_conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        /* No progress for the timeout: nothing read, no response written.
         * That is a silent client, one stalled in the middle of a frame, or
         * one that pipelines without reading its answers (its writes stay
         * pending). Work still on the pool is waited for. */
        if (!c->closing && c->on_pool == 0 && now - c->last_active_ms > srv->cfg->idle_timeout_ms) {
            log_debug("net: closing a connection without progress for %llu ms%s%s",
                      (unsigned long long)(now - c->last_active_ms),
                      frame_partial(&c->dec) ? " (half a frame sent)" : "",
                      c->inflight ? " (responses not read)" : "");
            net_conn_close(c);
        }
    }
}

static void net_on_drain(uv_timer_t *t)
{
    net_server_t *srv = t->data;
    int pending_writes = 0;
    for (net_conn_t *c = srv->conns; c; c = c->next)
        pending_writes += c->inflight > 0;
    if ((srv->queued > 0 || pending_writes) && clock_mono_ms() < srv->drain_deadline) return;
    if (srv->queued > 0) log_warn("net: drain timeout with %u requests still running", srv->queued);
    for (net_conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        net_conn_close(c);
    }
    uv_close((uv_handle_t *)&srv->writer, NULL);
    uv_close((uv_handle_t *)&srv->sweep, NULL);
    uv_close((uv_handle_t *)&srv->drain, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
}

static void net_on_signal(uv_signal_t *s, int signum)
{
    net_server_t *srv = s->data;
    if (srv->draining) return;
    log_info("event=shutdown signal=%d in_flight=%u connections=%u", signum, srv->queued,
             srv->n_conns);
    srv->draining = 1;
    atomic_store(&srv->svc->stats->draining, 1);
    uv_close((uv_handle_t *)&srv->listener, NULL);
    /* No new requests: stop reading everywhere; answers still get written. */
    for (net_conn_t *c = srv->conns; c; c = c->next) {
        if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    srv->drain_deadline = clock_mono_ms() + srv->cfg->drain_timeout_ms;
    uv_timer_start(&srv->drain, net_on_drain, 0, NET_DRAIN_POLL_MS);
}

/* ---------------------------------------------------------------- run */

static int net_write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

int net_run(const net_config_t *cfg, svc_t *svc, usage_t *usage)
{
    net_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) abort();
    srv->loop = uv_default_loop();
    srv->cfg = cfg;
    srv->svc = svc;
    srv->usage = usage;

    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        log_error("net: --listen host '%s' is not an IP address", cfg->host);
        free(srv);
        return -1;
    }
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, NET_BACKLOG, net_on_connection);
    if (rc != 0) {
        log_error("net: cannot listen on %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
        uv_close((uv_handle_t *)&srv->listener, NULL);
        uv_run(srv->loop, UV_RUN_DEFAULT);
        free(srv);
        return -1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen);
    int port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    if (cfg->port_file && net_write_port_file(cfg->port_file, port) != 0)
        log_warn("net: cannot write port file %s: %s", cfg->port_file, strerror(errno));

    uv_check_init(srv->loop, &srv->writer);
    srv->writer.data = srv;
    uv_check_start(&srv->writer, net_on_check);
    uv_timer_init(srv->loop, &srv->sweep);
    uv_timer_init(srv->loop, &srv->drain);
    srv->sweep.data = srv->drain.data = srv;
    uint64_t sweep = cfg->idle_timeout_ms / 4;
    if (sweep > NET_SWEEP_MS) sweep = NET_SWEEP_MS;
    if (sweep < 10) sweep = 10;
    uv_timer_start(&srv->sweep, net_on_sweep, sweep, sweep);
    uv_signal_init(srv->loop, &srv->sigint);
    uv_signal_init(srv->loop, &srv->sigterm);
    srv->sigint.data = srv->sigterm.data = srv;
    uv_signal_start(&srv->sigint, net_on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, net_on_signal, SIGTERM);

    log_info("event=listening address=%s:%d max_connections=%u max_frame_bytes=%u", cfg->host, port,
             cfg->max_connections, cfg->max_frame);
    uv_run(srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(srv->loop);
    free(srv);
    return 0;
}
