/* srv: the loop, listeners, signals and phased shutdown (design in srv.h). */
#include "srv.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define SRV_BACKLOG       1024
#define SRV_SWEEP_MS      250
#define SRV_DRAIN_POLL_MS 20

typedef enum {
    SRV_RUNNING = 0,
    SRV_UNREADY,  /* phase 1: serving, but not ready */
    SRV_DRAINING, /* phase 2 */
    SRV_CLOSED,   /* phase 3 */
} srv_phase_t;

typedef struct {
    uv_tcp_t tcp;
    srv_t *srv;
    srv_listener_t cfg;
    int port;
} srv_lsn_t;

struct srv {
    uv_loop_t loop;
    const srv_config_t *cfg;
    stats_t *stats;
    conn_set_t *conns;
    srv_lsn_t lsn[SRV_MAX_LISTENERS];
    int n_lsn;
    uv_signal_t sigint, sigterm, sighup;
    uv_async_t wake;           /* srv_shutdown from another thread */
    pthread_mutex_t wake_lock; /* wake is not sent once it is closed */
    int wake_closed;
    _Atomic int wake_grace;
    uv_timer_t sweep, grace, drain;
    srv_phase_t phase;
    uint64_t drain_deadline;
};

static void srv_on_connection(uv_stream_t *listener, int status)
{
    srv_lsn_t *l = listener->data;
    srv_t *srv = l->srv;
    if (status < 0) {
        log_warn("srv: accept failed: %s", uv_strerror(status));
        return;
    }
    conn_set_accept(srv->conns, listener, l->cfg.transport, l->cfg.transport_cfg, l->cfg.protocol,
                    l->cfg.protocol_cfg, srv->phase >= SRV_DRAINING);
}

static int srv_write_port_file(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

int srv_listen(srv_t *srv, const srv_listener_t *cfg)
{
    if (srv->n_lsn == SRV_MAX_LISTENERS) {
        log_error("srv: more than %d listeners", SRV_MAX_LISTENERS);
        return -1;
    }
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        log_error("srv: listen host '%s' is not an IP address", cfg->host);
        return -1;
    }
    srv_lsn_t *l = &srv->lsn[srv->n_lsn];
    memset(l, 0, sizeof(*l));
    l->srv = srv;
    l->cfg = *cfg;
    uv_tcp_init(&srv->loop, &l->tcp);
    l->tcp.data = l;
    rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&l->tcp, SRV_BACKLOG, srv_on_connection);
    if (rc != 0) {
        log_error("srv: cannot listen on %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, NULL);
        uv_run(&srv->loop, UV_RUN_NOWAIT); /* runs the close callback */
        return -1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &blen);
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    if (cfg->port_file && srv_write_port_file(cfg->port_file, l->port) != 0)
        log_warn("srv: cannot write port file %s: %s", cfg->port_file, strerror(errno));
    log_info("event=listening address=%s:%d protocol=%s transport=%s max_connections=%u", cfg->host,
             l->port, cfg->protocol->name, cfg->transport->name, srv->cfg->limits.max_connections);
    srv->n_lsn++;
    return 0;
}

uv_loop_t *srv_loop(srv_t *srv)
{
    return &srv->loop;
}

int srv_port(const srv_t *srv, int i)
{
    return i < srv->n_lsn ? srv->lsn[i].port : -1;
}

/* ---------------------------------------------------------------- shutdown */

static void srv_on_sweep(uv_timer_t *t)
{
    srv_t *srv = t->data;
    conn_set_sweep(srv->conns);
}

/* Phase 3: closes everything; uv_run returns once the callbacks ran. */
static void srv_close_all(srv_t *srv)
{
    srv->phase = SRV_CLOSED;
    conn_set_close(srv->conns);
    if (srv->cfg->on_close) srv->cfg->on_close(srv->cfg->close_arg);
    uv_close((uv_handle_t *)&srv->sweep, NULL);
    uv_close((uv_handle_t *)&srv->grace, NULL);
    uv_close((uv_handle_t *)&srv->drain, NULL);
    pthread_mutex_lock(&srv->wake_lock);
    srv->wake_closed = 1;
    uv_close((uv_handle_t *)&srv->wake, NULL);
    pthread_mutex_unlock(&srv->wake_lock);
    if (srv->cfg->handle_signals) {
        uv_close((uv_handle_t *)&srv->sigint, NULL);
        uv_close((uv_handle_t *)&srv->sigterm, NULL);
        uv_close((uv_handle_t *)&srv->sighup, NULL);
        /* Closing the handles gave the signals their default action back:
         * a second SIGTERM would now kill the process while it writes its
         * last data. The drain is over and it exits in moments: ignore. */
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
    }
}

static void srv_on_drain(uv_timer_t *t)
{
    srv_t *srv = t->data;
    int idle = conn_set_idle(srv->conns);
    if (!idle && clock_mono_ms() < srv->drain_deadline) return;
    if (!idle)
        log_warn("srv: drain timeout with %u requests still running", conn_set_queued(srv->conns));
    srv_close_all(srv);
}

/* Phase 2: no new connections or requests; answers still get written. */
static void srv_drain(srv_t *srv)
{
    if (srv->phase >= SRV_DRAINING) return;
    srv->phase = SRV_DRAINING;
    uv_timer_stop(&srv->grace);
    for (int i = 0; i < srv->n_lsn; i++)
        uv_close((uv_handle_t *)&srv->lsn[i].tcp, NULL);
    conn_set_drain(srv->conns);
    srv->drain_deadline = clock_mono_ms() + srv->cfg->drain_timeout_ms;
    uv_timer_start(&srv->drain, srv_on_drain, 0, SRV_DRAIN_POLL_MS);
}

static void srv_on_grace(uv_timer_t *t)
{
    srv_drain(t->data);
}

/* Phase 1 (with grace), or straight to phase 2. */
static void srv_begin_shutdown(srv_t *srv, int signum, int with_grace)
{
    if (srv->phase == SRV_UNREADY) {
        srv_drain(srv); /* asked twice: no more grace */
        return;
    }
    if (srv->phase != SRV_RUNNING) return;
    log_info("event=shutdown signal=%d in_flight=%u connections=%u grace_ms=%llu", signum,
             conn_set_queued(srv->conns), conn_set_count(srv->conns),
             (unsigned long long)(with_grace ? srv->cfg->drain_grace_ms : 0));
    srv->phase = SRV_UNREADY;
    atomic_store(&srv->stats->draining, 1);
    if (with_grace && srv->cfg->drain_grace_ms > 0)
        uv_timer_start(&srv->grace, srv_on_grace, srv->cfg->drain_grace_ms, 0);
    else
        srv_drain(srv);
}

static void srv_on_hup(uv_signal_t *s, int signum)
{
    srv_t *srv = s->data;
    (void)signum;
    log_info("event=reload signal=SIGHUP");
    if (srv->cfg->on_reload) srv->cfg->on_reload(srv->cfg->reload_arg);
}

static void srv_on_signal(uv_signal_t *s, int signum)
{
    srv_begin_shutdown(s->data, signum, signum == SIGTERM);
}

static void srv_on_wake(uv_async_t *a)
{
    srv_t *srv = a->data;
    srv_begin_shutdown(srv, 0, atomic_load(&srv->wake_grace));
}

void srv_shutdown(srv_t *srv, int with_grace)
{
    atomic_store(&srv->wake_grace, with_grace);
    pthread_mutex_lock(&srv->wake_lock);
    if (!srv->wake_closed) uv_async_send(&srv->wake);
    pthread_mutex_unlock(&srv->wake_lock);
}

/* ---------------------------------------------------------------- run */

srv_t *srv_new(const srv_config_t *cfg, stats_t *stats)
{
    srv_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) abort();
    /* libuv writes with write(2), so a peer that has reset its end raises
     * SIGPIPE, whose default kills the process: a TLS client that closed
     * right after its handshake, while patd sent it session tickets, did
     * (test_tls). The write fails with EPIPE instead, and the connection
     * closes. */
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&srv->loop) != 0) abort();
    srv->cfg = cfg;
    srv->stats = stats;
    srv->conns = conn_set_new(&srv->loop, &cfg->limits, stats);
    if (cfg->batch && conn_set_batch(srv->conns, cfg->batch) != 0)
        log_warn("cannot start the batch thread: urgent work goes to the pool");
    uv_timer_init(&srv->loop, &srv->sweep);
    uv_timer_init(&srv->loop, &srv->grace);
    uv_timer_init(&srv->loop, &srv->drain);
    srv->sweep.data = srv->grace.data = srv->drain.data = srv;
    pthread_mutex_init(&srv->wake_lock, NULL);
    uv_async_init(&srv->loop, &srv->wake, srv_on_wake);
    srv->wake.data = srv;
    if (cfg->handle_signals) {
        uv_signal_init(&srv->loop, &srv->sigint);
        uv_signal_init(&srv->loop, &srv->sigterm);
        srv->sigint.data = srv->sigterm.data = srv;
        uv_signal_start(&srv->sigint, srv_on_signal, SIGINT);
        uv_signal_start(&srv->sigterm, srv_on_signal, SIGTERM);
        uv_signal_init(&srv->loop, &srv->sighup);
        srv->sighup.data = srv;
        uv_signal_start(&srv->sighup, srv_on_hup, SIGHUP);
    }
    return srv;
}

int srv_run(srv_t *srv)
{
    uint64_t sweep = srv->cfg->limits.idle_timeout_ms / 4;
    if (sweep > SRV_SWEEP_MS) sweep = SRV_SWEEP_MS;
    if (sweep < 10) sweep = 10;
    uv_timer_start(&srv->sweep, srv_on_sweep, sweep, sweep);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&srv->loop);
    if (rc != 0) {
        log_error("srv: the loop did not close (%s): a handle was left open", uv_strerror(rc));
        return -1;
    }
    return 0;
}

void srv_free(srv_t *srv)
{
    if (srv == NULL) return;
    if (srv->phase != SRV_CLOSED) {
        /* Never ran (start-up failed after srv_new): close what was made. */
        for (int i = 0; i < srv->n_lsn; i++)
            uv_close((uv_handle_t *)&srv->lsn[i].tcp, NULL);
        srv->n_lsn = 0;
        srv_close_all(srv);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        uv_loop_close(&srv->loop);
    }
    conn_set_free(srv->conns);
    pthread_mutex_destroy(&srv->wake_lock);
    free(srv);
}
