/* Unit tests of conn.c and srv.c over real sockets: a server runs in this
 * process on a thread of its own, with a real store behind its service,
 * and the tests talk to it with plain sockets and libpatclient. The toy
 * line protocol (lineproto.c) is added through the public tables only, on
 * a second listener next to the framed protocol. Every test ends with the
 * loop closed and no handle left (srv_run returns 0), and one shows that
 * check failing on a leaked handle. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "framed.h"
#include "lineproto.h"
#include "patclient.h"
#include "service.h"
#include "srv.h"
#include "store.h"
#include "svc_fixture.h"
#include "tcp.h"
#include "usage.h"

/* ---------------------------------------------------------------- fixture */

static sem_t gate;            /* SLOW waits here */
static _Atomic int slow_runs; /* SLOW calls that started */

static void slow(void)
{
    atomic_fetch_add(&slow_runs, 1);
    sem_wait(&gate);
}

typedef struct {
    fixture_t *s; /* the service over a real store (svc_fixture.h) */
    srv_config_t cfg;
    framed_cfg_t fcfg;
    lineproto_cfg_t lcfg;
    srv_t *srv;
    pthread_t loop;
    int run_rc;
    int framed_port, line_port;
} fx_t;

static void *fx_loop(void *arg)
{
    fx_t *f = arg;
    f->run_rc = srv_run(f->srv);
    return NULL;
}

/* conn_set_batch for the next fx_new, when set. */
static const conn_batch_t *fx_batch;

/* Builds the server with the given limits; fx_go starts its loop. */
static fx_t *fx_new(unsigned max_inflight, uint64_t idle_ms)
{
    fx_t *f = calloc(1, sizeof(*f));
    f->s = svc_fixture_new();
    assert_non_null(f->s);
    f->cfg.limits.max_connections = 64;
    f->cfg.limits.max_inflight = max_inflight;
    f->cfg.limits.max_queue = 1024;
    f->cfg.limits.idle_timeout_ms = idle_ms;
    f->cfg.limits.max_output = 1 << 20;
    f->cfg.limits.max_output_total = 16 << 20;
    f->cfg.drain_timeout_ms = 5000;
    f->fcfg.svc = &f->s->svc;
    f->fcfg.max_frame = 65536;
    f->lcfg.svc = &f->s->svc;
    f->lcfg.slow = slow;
    f->cfg.batch = fx_batch;
    f->srv = srv_new(&f->cfg, &f->s->stats);
    srv_listener_t framed = {.host = "127.0.0.1",
                             .transport = &tcp_transport,
                             .protocol = &framed_protocol,
                             .protocol_cfg = &f->fcfg};
    srv_listener_t line = {.host = "127.0.0.1",
                           .transport = &tcp_transport,
                           .protocol = &lineproto_protocol,
                           .protocol_cfg = &f->lcfg};
    assert_int_equal(srv_listen(f->srv, &framed), 0);
    assert_int_equal(srv_listen(f->srv, &line), 0);
    f->framed_port = srv_port(f->srv, 0);
    f->line_port = srv_port(f->srv, 1);
    atomic_store(&slow_runs, 0);
    return f;
}

static void fx_go(fx_t *f)
{
    assert_int_equal(pthread_create(&f->loop, NULL, fx_loop, f), 0);
}

/* Shuts down, joins the loop and frees; returns srv_run's result. */
static int fx_end(fx_t *f)
{
    srv_shutdown(f->srv, 0);
    pthread_join(f->loop, NULL);
    int rc = f->run_rc;
    srv_free(f->srv);
    assert_int_equal(svc_fixture_free(f->s), 0);
    free(f);
    return rc;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void say(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(write(fd, s, n), (ssize_t)n);
}

/* Reads until `lines` newlines arrived or timeout; returns bytes read, -1
 * on EOF before that. */
static ssize_t hear(int fd, char *buf, size_t cap, int lines, int timeout_ms)
{
    size_t have = 0;
    int seen = 0;
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (seen < lines && now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t n = read(fd, buf + have, cap - 1 - have);
        if (n <= 0) return -1;
        for (ssize_t i = 0; i < n; i++)
            seen += buf[have + (size_t)i] == '\n';
        have += (size_t)n;
    }
    buf[have] = '\0';
    return (ssize_t)have;
}

/* 1 if the peer closes fd within timeout_ms. */
static int closed_within(int fd, int timeout_ms)
{
    char b[256];
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0) continue;
        ssize_t n = read(fd, b, sizeof(b));
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return 1;
    }
    return 0;
}

/* A connection to the line listener with one SLOW request a worker holds. */
static int dial_slow(fx_t *f)
{
    int fd = dial(f->line_port);
    say(fd, "SLOW\n");
    while (atomic_load(&slow_runs) < 1)
        sleep_ms(5);
    return fd;
}

/* ---------------------------------------------------------------- tests */

/* A second protocol on a second listener, through the public tables
 * alone: its HEALTH runs the service's Health through dispatch on a
 * worker, ECHO is answered on the loop thread, and the framed listener
 * next to it still answers the same service. */
static void test_a_toy_protocol_on_a_second_listener_uses_the_same_dispatch(void **state)
{
    (void)state;
    fx_t *f = fx_new(16, 60000);
    fx_go(f);
    int fd = dial(f->line_port);
    assert_true(fd >= 0);
    say(fd, "ECHO hello\nHEALTH\nNOPE\n");
    char buf[512];
    assert_true(hear(fd, buf, sizeof(buf), 3, 5000) > 0);
    assert_string_equal(buf, "hello\nSERVING\nERR unknown command\n");
    close(fd);

    char port[32];
    snprintf(port, sizeof(port), "127.0.0.1:%d", f->framed_port);
    char err[256];
    pat_client_t *c = pat_connect(port, 5000, err, sizeof(err));
    assert_non_null(c);
    Pat__V1__HealthRequest hr = PAT__V1__HEALTH_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    pat_status_t st;
    assert_int_equal(pat_call(c, "pat.v1.TokenService/Health", &hr.base,
                              &pat__v1__health_response__descriptor, &out, &st),
                     0);
    assert_int_equal(st.code, 0);
    protobuf_c_message_free_unpacked(out, NULL);
    pat_close(c);
    assert_int_equal(fx_end(f), 0);
}

/* The batch lane (conn_set_batch): the first urgent work's prefetch is
 * held; the five sent meanwhile come to the next prefetch together, in
 * order, with their tokens; answers leave in request order; other work
 * still runs on the pool; a batch whose connection closed is dropped. */
static sem_t batch_gate;
static _Atomic int batch_calls, batch_dones, batch_hold;
static char batch_seen[256];

static void batch_prefetch(void *arg, const char *const *tokens, size_t n)
{
    (void)arg;
    if (atomic_fetch_add(&batch_calls, 1) == 0 || atomic_load(&batch_hold)) sem_wait(&batch_gate);
    char *p = batch_seen + strlen(batch_seen);
    for (size_t i = 0; i < n; i++)
        p += snprintf(p, sizeof(batch_seen) - (size_t)(p - batch_seen), "%s%s", i ? "," : "",
                      tokens[i]);
    snprintf(p, sizeof(batch_seen) - (size_t)(p - batch_seen), ";");
}

static void batch_done(void *arg)
{
    (void)arg;
    atomic_fetch_add(&batch_dones, 1);
}

static void test_urgent_work_runs_in_batches_on_its_own_thread(void **state)
{
    (void)state;
    static const conn_batch_t b = {.prefetch = batch_prefetch, .done = batch_done};
    sem_init(&batch_gate, 0, 0);
    atomic_store(&batch_calls, 0);
    atomic_store(&batch_dones, 0);
    batch_seen[0] = '\0';
    fx_batch = &b;
    fx_t *f = fx_new(16, 60000);
    fx_batch = NULL;
    fx_go(f);
    int fd = dial(f->line_port);
    assert_true(fd >= 0);
    say(fd, "URGENT a\n");
    for (int i = 0; i < 200 && atomic_load(&batch_calls) == 0; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&batch_calls), 1); /* held in its prefetch */
    say(fd, "URGENT b\nURGENT c\nHEALTH\nURGENT d\nURGENT e\nURGENT f\n");
    char buf[512];
    assert_true(hear(fd, buf, sizeof(buf), 0, 300) <= 0); /* a's answer holds the rest */
    usleep(100000);
    sem_post(&batch_gate);
    assert_true(hear(fd, buf, sizeof(buf), 7, 5000) > 0);
    assert_string_equal(buf, "RAN a\nRAN b\nRAN c\nSERVING\nRAN d\nRAN e\nRAN f\n");
    assert_string_equal(batch_seen, "a;b,c,d,e,f;");
    assert_int_equal(atomic_load(&batch_dones), 2);

    /* A connection that closes while its urgent work waits: dropped. */
    atomic_store(&batch_hold, 1);
    say(fd, "URGENT g\n");
    for (int i = 0; i < 200 && atomic_load(&batch_calls) < 3; i++)
        usleep(5000);
    close(fd);
    usleep(100000);
    int dropped = atomic_load(&f->lcfg.dropped);
    atomic_store(&batch_hold, 0);
    sem_post(&batch_gate);
    for (int i = 0; i < 200 && atomic_load(&f->lcfg.dropped) == dropped; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&f->lcfg.dropped), dropped + 1);
    assert_int_equal(fx_end(f), 0);
    sem_destroy(&batch_gate);
}

/* Backpressure: a client pipelines 20 slow requests without reading; the
 * connection takes max_inflight (4) of them and stops reading, while
 * another connection is still served; once the work finishes, every
 * answer arrives, in order. */
static void test_backpressure_stops_reading_at_the_inflight_bound(void **state)
{
    (void)state;
    fx_t *f = fx_new(4, 60000);
    fx_go(f);
    int fd = dial(f->line_port);
    char req[20 * 5 + 16] = "";
    for (int i = 0; i < 20; i++)
        strcat(req, "SLOW\n");
    strcat(req, "ECHO last\n");
    say(fd, req);
    sleep_ms(300);
    assert_int_equal(atomic_load(&slow_runs), 4);

    int other = dial(f->line_port);
    say(other, "ECHO other\n");
    char buf[1024];
    assert_true(hear(other, buf, sizeof(buf), 1, 5000) > 0);
    assert_string_equal(buf, "other\n");
    close(other);

    for (int i = 0; i < 20; i++)
        sem_post(&gate);
    assert_true(hear(fd, buf, sizeof(buf), 21, 10000) > 0);
    char want[21 * 6 + 8] = "";
    for (int i = 0; i < 20; i++)
        strcat(want, "SLEPT\n");
    strcat(want, "last\n");
    assert_string_equal(buf, want);
    assert_int_equal(atomic_load(&slow_runs), 20);
    close(fd);
    assert_int_equal(fx_end(f), 0);
}

/* Idle: a silent connection is closed after the timeout, but not one
 * whose request a worker still holds for longer than the timeout. */
static void test_idle_connections_close_but_not_while_a_worker_holds_one(void **state)
{
    (void)state;
    fx_t *f = fx_new(16, 200);
    fx_go(f);
    int silent = dial(f->line_port);
    int busy = dial(f->line_port);
    say(busy, "SLOW\n");
    uint64_t t0 = now_ms();
    assert_true(closed_within(silent, 3000));
    uint64_t took = now_ms() - t0;
    assert_true(took >= 150);
    sleep_ms(400); /* twice the timeout, with the request still on the pool */
    sem_post(&gate);
    char buf[64];
    assert_true(hear(busy, buf, sizeof(buf), 1, 5000) > 0);
    assert_string_equal(buf, "SLEPT\n");
    close(silent);
    close(busy);
    assert_int_equal(fx_end(f), 0);
}

/* Drain: the request in flight is finished and written, new connections
 * are refused, then the connection closes and the loop ends clean. */
static void test_drain_finishes_work_in_flight_then_closes(void **state)
{
    (void)state;
    fx_t *f = fx_new(16, 60000);
    fx_go(f);
    int fd = dial_slow(f);
    srv_shutdown(f->srv, 0);
    sleep_ms(100);
    assert_true(dial(f->line_port) < 0); /* the listener is closed */
    sem_post(&gate);
    char buf[64];
    assert_true(hear(fd, buf, sizeof(buf), 1, 5000) > 0);
    assert_string_equal(buf, "SLEPT\n");
    assert_true(closed_within(fd, 5000));
    close(fd);
    assert_int_equal(fx_end(f), 0);
}

/* A client that leaves while its request is on the pool: the connection
 * closes at once, the work finishes later and drops its answer, and
 * nothing freed is touched (ASan runs this too). */
static void test_close_during_work_keeps_the_connection_until_the_work_is_done(void **state)
{
    (void)state;
    fx_t *f = fx_new(16, 60000);
    fx_go(f);
    int fd = dial_slow(f);
    close(fd);
    for (int i = 0; i < 200 && atomic_load(&f->s->stats.connections) > 0; i++)
        sleep_ms(5);
    assert_int_equal(atomic_load(&f->s->stats.connections), 0);
    assert_int_equal(atomic_load(&f->s->stats.in_flight), 1);
    sem_post(&gate);
    for (int i = 0; i < 200 && atomic_load(&f->lcfg.dropped) == 0; i++)
        sleep_ms(5);
    assert_int_equal(atomic_load(&f->lcfg.dropped), 1);
    assert_int_equal(atomic_load(&f->s->stats.in_flight), 0);
    assert_int_equal(atomic_load(&f->s->stats.requests), 0); /* the dropped one left the count */
    assert_int_equal(fx_end(f), 0);
}

/* A protocol error: one answer, then the connection closes after it. */
static void test_a_protocol_error_is_answered_then_closed(void **state)
{
    (void)state;
    fx_t *f = fx_new(16, 60000);
    fx_go(f);
    int fd = dial(f->line_port);
    char big[LINEPROTO_MAX + 10];
    memset(big, 'x', sizeof(big));
    assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
    char buf[128];
    assert_true(hear(fd, buf, sizeof(buf), 1, 5000) > 0);
    assert_string_equal(buf, "ERR line too long\n");
    assert_true(closed_within(fd, 5000));
    close(fd);
    int ok = dial(f->line_port); /* the server goes on */
    say(ok, "ECHO fine\n");
    assert_true(hear(ok, buf, sizeof(buf), 1, 5000) > 0);
    assert_string_equal(buf, "fine\n");
    close(ok);
    assert_int_equal(fx_end(f), 0);
}

/* The loop-close check fails on a leaked handle: a timer initialised on
 * the server's loop and never closed makes srv_run report -1. */
static void test_loop_close_check_fails_on_a_leaked_handle(void **state)
{
    (void)state;
    fx_t *f = fx_new(16, 60000);
    uv_timer_t leaked;
    uv_timer_init(srv_loop(f->srv), &leaked);
    fx_go(f);
    srv_shutdown(f->srv, 0);
    pthread_join(f->loop, NULL);
    assert_int_equal(f->run_rc, -1);
    /* Close it now so the fixture can end, and check the loop closes. */
    uv_close((uv_handle_t *)&leaked, NULL);
    uv_run(srv_loop(f->srv), UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(srv_loop(f->srv)), 0);
    f->loop = pthread_self();
    srv_free(f->srv);
    assert_int_equal(svc_fixture_free(f->s), 0);
    free(f);
}

int main(void)
{
    /* SLOW blocks workers: enough of them for 4 blocked and more to spare. */
    setenv("UV_THREADPOOL_SIZE", "8", 1);
    sem_init(&gate, 0, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_toy_protocol_on_a_second_listener_uses_the_same_dispatch),
        cmocka_unit_test(test_urgent_work_runs_in_batches_on_its_own_thread),
        cmocka_unit_test(test_backpressure_stops_reading_at_the_inflight_bound),
        cmocka_unit_test(test_idle_connections_close_but_not_while_a_worker_holds_one),
        cmocka_unit_test(test_drain_finishes_work_in_flight_then_closes),
        cmocka_unit_test(test_close_during_work_keeps_the_connection_until_the_work_is_done),
        cmocka_unit_test(test_a_protocol_error_is_answered_then_closed),
        cmocka_unit_test(test_loop_close_check_fails_on_a_leaked_handle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
