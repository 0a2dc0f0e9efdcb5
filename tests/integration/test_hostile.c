/* Hostile input over a real socket: zero-length and oversized frames,
 * garbage, undecodable payloads, unknown methods, half frames, stalled and
 * silent clients, too many connections, clients that never read, worker
 * saturation. Throughout each, a well-behaved client on its own connection
 * verifies a real token every few milliseconds and must get the right
 * answer every time; afterwards patd's RSS must be under RSS_BOUND_KIB. */
#include <poll.h>
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
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

#define RSS_BOUND_KIB (128 * 1024) /* the stated bound for every scenario here */
#define MAX_CONNS     8

static const char *const hostile_flags[] = {"--idle-timeout",
                                            "400ms",
                                            "--max-connections",
                                            "8",
                                            "--max-frame-bytes",
                                            "4096",
                                            "--max-queue",
                                            "16",
                                            NULL};

/* The fixture: patd, and a good client that keeps verifying. */
typedef struct {
    patd_t p;
    char *token;
    pthread_t thread;
    _Atomic int stop;
    _Atomic long ok, bad;
    char last_error[320];
} fx_t;

static void *good_client(void *arg)
{
    fx_t *f = arg;
    pat_client_t *c = h_connect(&f->p);
    while (c && !atomic_load(&f->stop)) {
        Pat__V1__VerifyRequest req = PAT__V1__VERIFY_REQUEST__INIT;
        req.bearer_token = f->token;
        req.path = "/api/v1/ok";
        Pat__V1__VerifyResponse *out = NULL;
        pat_status_t st;
        int rc = pat_call(c, "Verify", &req.base, &pat__v1__verify_response__descriptor,
                          (ProtobufCMessage **)&out, &st);
        if (rc == 0 && st.code == 0 && out && strcmp(out->user->user_id, "good") == 0) {
            atomic_fetch_add(&f->ok, 1);
        } else {
            atomic_fetch_add(&f->bad, 1);
            snprintf(f->last_error, sizeof(f->last_error), "rc %d code %d: %s", rc, st.code,
                     st.message);
            if (rc != 0) { /* reconnect, and count the loss */
                pat_close(c);
                c = h_connect(&f->p);
            }
        }
        if (out) protobuf_c_message_free_unpacked(&out->base, NULL);
        usleep(5000);
    }
    pat_close(c);
    return NULL;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (h_start(&f->p, 0, hostile_flags) != 0) return -1;
    if (h_user(&f->p, "good", 1) != 0) return -1;
    f->token = h_create(&f->p, "good", "watchdog", 30, NULL, NULL);
    if (f->token == NULL) return -1;
    pthread_create(&f->thread, NULL, good_client, f);
    usleep(50000);
    *state = f;
    return 0;
}

/* Checked after each scenario: the good client got every answer right,
 * and patd stayed under the memory bound. cmocka fails the test on -1. */
static int teardown(void **state)
{
    fx_t *f = *state;
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    long rss = h_rss_kib(&f->p);
    long ok = atomic_load(&f->ok), bad = atomic_load(&f->bad);
    fprintf(stderr, "good client: %ld right answers, %ld wrong; patd RSS %ld KiB\n", ok, bad, rss);
    if (bad) fprintf(stderr, "good client's last error: %s\n", f->last_error);
    h_cleanup(&f->p);
    free(f->token);
    free(f);
    return bad == 0 && ok > 0 && rss > 0 && rss < RSS_BOUND_KIB ? 0 : -1;
}

/* A fresh connection gets a correct Health answer. */
static void assert_still_serving(const patd_t *p)
{
    pat_client_t *c = h_connect(p);
    assert_non_null(c);
    Pat__V1__HealthRequest h = PAT__V1__HEALTH_REQUEST__INIT;
    Pat__V1__HealthResponse *out = NULL;
    pat_status_t st;
    assert_int_equal(h_call(c, "Health", &h.base, &pat__v1__health_response__descriptor, &out, &st),
                     0);
    assert_int_equal(out->status, PAT__V1__SERVING_STATUS__SERVING_STATUS_SERVING);
    protobuf_c_message_free_unpacked(&out->base, NULL);
    pat_close(c);
}

/* 1 if the server closes the connection within ms (reads and drops data). */
static int closed_within(pat_client_t *c, int ms)
{
    struct pollfd pfd = {.fd = pat_fd(c), .events = POLLIN};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int left = ms - (int)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) return 0;
        if (poll(&pfd, 1, left) <= 0) return 0;
        char buf[4096];
        ssize_t n = recv(pat_fd(c), buf, sizeof(buf), 0);
        if (n <= 0) return 1;
    }
}

static void expect_error_then_close(pat_client_t *c, int code, const char *reason)
{
    Pat__V1__Response *r;
    assert_int_equal(pat_recv(c, &r), 0);
    assert_int_equal(r->id, 0);
    assert_int_equal(r->status->code, code);
    assert_string_equal(r->status->reason, reason);
    pat__v1__response__free_unpacked(r, NULL);
    assert_true(closed_within(c, 2000));
}

static void test_zero_length_frame(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    pat_client_t *c = h_connect(p);
    assert_int_equal(pat_send_raw(c, "\0\0\0\0", 4), 0);
    expect_error_then_close(c, PAT__V1__CODE__INVALID_ARGUMENT, "bad_frame");
    pat_close(c);
    assert_still_serving(p);
}

static void test_frame_over_the_limit(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    pat_client_t *c = h_connect(p);
    /* 4097 > --max-frame-bytes 4096; nothing else is sent. */
    assert_int_equal(pat_send_raw(c, "\x00\x00\x10\x01", 4), 0);
    expect_error_then_close(c, PAT__V1__CODE__RESOURCE_EXHAUSTED, "frame_too_large");
    pat_close(c);
    /* The largest length a header can carry. */
    c = h_connect(p);
    assert_int_equal(pat_send_raw(c, "\xff\xff\xff\xff", 4), 0);
    expect_error_then_close(c, PAT__V1__CODE__RESOURCE_EXHAUSTED, "frame_too_large");
    pat_close(c);
    assert_still_serving(p);
}

static void test_garbage_bytes(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    srand(12345);
    for (int round = 0; round < 20; round++) {
        pat_client_t *c = h_connect(p);
        uint8_t junk[512];
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)rand();
        /* A plausible small length so the junk reaches the decoder too. */
        if (round % 2) {
            junk[0] = junk[1] = 0;
            junk[2] = 0;
            junk[3] = 100;
        }
        pat_send_raw(c, junk, sizeof(junk));
        /* Random 4-byte lengths are beyond --max-frame-bytes (the seed is
         * fixed: every round's junk reaches such a header), so whatever
         * it answered before, the server closes the connection. */
        assert_true(closed_within(c, 2000));
        pat_close(c);
    }
    assert_still_serving(p);
}

static void test_undecodable_payload_keeps_the_connection(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    pat_client_t *c = h_connect(p);
    /* A valid Request for Verify whose payload is not a VerifyRequest. */
    Pat__V1__Request req = PAT__V1__REQUEST__INIT;
    uint8_t junk[] = {0x0a, 0xff, 0x01};
    req.id = 77;
    req.method = "pat.v1.TokenService/Verify";
    req.payload.data = junk;
    req.payload.len = sizeof(junk);
    uint8_t buf[256];
    size_t len = pat__v1__request__pack(&req, buf + 4);
    buf[0] = buf[1] = buf[2] = 0;
    buf[3] = (uint8_t)len;
    assert_int_equal(pat_send_raw(c, buf, len + 4), 0);
    Pat__V1__Response *r;
    assert_int_equal(pat_recv(c, &r), 0);
    assert_int_equal(r->id, 77);
    assert_int_equal(r->status->code, PAT__V1__CODE__INVALID_ARGUMENT);
    assert_int_equal(r->status->http_status, 400);
    pat__v1__response__free_unpacked(r, NULL);
    /* Not a Request at all, but a well-formed frame: 400, connection kept. */
    assert_int_equal(pat_send_raw(c, "\x00\x00\x00\x02\xff\xff", 6), 0);
    assert_int_equal(pat_recv(c, &r), 0);
    assert_int_equal(r->status->code, PAT__V1__CODE__INVALID_ARGUMENT);
    assert_string_equal(r->status->reason, "bad_request");
    pat__v1__response__free_unpacked(r, NULL);
    /* Same connection still answers. */
    Pat__V1__HealthRequest h = PAT__V1__HEALTH_REQUEST__INIT;
    pat_status_t st;
    assert_int_equal(h_call(c, "Health", &h.base, NULL, NULL, &st), 0);
    pat_close(c);
}

static void test_unknown_method(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    pat_client_t *c = h_connect(p);
    Pat__V1__HealthRequest h = PAT__V1__HEALTH_REQUEST__INIT;
    pat_status_t st;
    assert_int_equal(h_call(c, "pat.v1.TokenService/DropAllTables", &h.base, NULL, NULL, &st),
                     PAT__V1__CODE__UNIMPLEMENTED);
    assert_int_equal(st.http, 501);
    /* The normal build has no test clock to move. */
    assert_int_equal(h_call(c, "pat.v1.TestingService/AdvanceClock", &h.base, NULL, NULL, &st),
                     PAT__V1__CODE__UNIMPLEMENTED);
    assert_int_equal(h_call(c, "Health", &h.base, NULL, NULL, &st), 0);
    pat_close(c);
}

static void test_half_a_frame_then_disconnect(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    for (int i = 0; i < 5; i++) {
        pat_client_t *c = h_connect(p);
        assert_int_equal(pat_send_raw(c, "\x00\x00\x01\x00partial", 11), 0);
        pat_close(c);
    }
    assert_still_serving(p);
}

static void test_stalled_and_silent_clients_are_closed_after_idle_timeout(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    pat_client_t *half = h_connect(p);
    pat_client_t *silent = h_connect(p);
    assert_int_equal(pat_send_raw(half, "\x00\x00\x01\x00partial", 11), 0);
    /* --idle-timeout 400ms: both are cut well within 3 s. */
    assert_true(closed_within(half, 3000));
    assert_true(closed_within(silent, 3000));
    pat_close(half);
    pat_close(silent);
    assert_still_serving(p);
}

static void test_too_many_connections(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    /* The good client holds one of the MAX_CONNS; fill the rest. */
    enum { HELD = MAX_CONNS - 1 };
    pat_client_t *held[HELD];
    for (int i = 0; i < HELD; i++)
        held[i] = h_connect(p);
    /* Let the server accept all of them before the extra one. */
    Pat__V1__HealthRequest h = PAT__V1__HEALTH_REQUEST__INIT;
    pat_status_t st;
    for (int i = 0; i < HELD; i++)
        assert_int_equal(h_call(held[i], "Health", &h.base, NULL, NULL, &st), 0);
    pat_client_t *extra = h_connect(p);
    expect_error_then_close(extra, PAT__V1__CODE__RESOURCE_EXHAUSTED, "too_many_connections");
    pat_close(extra);
    /* Existing clients are unaffected. */
    for (int i = 0; i < HELD; i++)
        assert_int_equal(h_call(held[i], "Health", &h.base, NULL, NULL, &st), 0);
    for (int i = 0; i < HELD; i++)
        pat_close(held[i]);
    usleep(100000);
    assert_still_serving(p);
}

static void test_client_that_never_reads_is_held_back_with_bounded_memory(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    long rss0 = h_rss_kib(p);
    pat_client_t *flood = h_connect(p);
    /* Keep pipelining ~3 KiB requests until the socket refuses: 200000 of
     * them is 600 MiB, far beyond what kernel buffers absorb. */
    static char path[3001];
    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    Pat__V1__VerifyRequest h = PAT__V1__VERIFY_REQUEST__INIT;
    h.bearer_token = "patp_bad";
    h.path = path;
    int sent = 0;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(pat_fd(flood), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    for (int i = 0; i < 200000; i++) {
        if (pat_send(flood, (uint64_t)i + 1, "Verify", &h.base) != 0) break;
        sent++;
    }
    /* The server stopped reading (backpressure) long before 200000. */
    assert_true(sent < 200000);
    long rss1 = h_rss_kib(p);
    fprintf(stderr, "flood: %d requests sent before backpressure, RSS %ld -> %ld KiB\n", sent, rss0,
            rss1);
    assert_true(rss1 - rss0 < 64 * 1024);
    assert_still_serving(p);
    /* It never reads, so it makes no progress: after the idle timeout the
     * server cuts it off (what is left in our buffer, then EOF). */
    usleep(1500 * 1000);
    assert_true(closed_within(flood, 5000));
    pat_close(flood);
    assert_still_serving(p);
}

static void test_worker_saturation_answers_overloaded_quickly(void **state)
{
    patd_t *p = &((fx_t *)*state)->p;
    assert_int_equal(h_user(p, "busy", 1), 0);
    pat_client_t *c = h_platform(p, "busy");
    /* 300 synced creates at once against --max-queue 16. */
    enum { N = 300 };
    int ok, over;
    assert_int_equal(h_create_burst(c, N, "b", &ok, &over), 0);
    fprintf(stderr, "saturation: %d created, %d answered overloaded\n", ok, over);
    assert_int_equal(ok + over, N);
    assert_true(over > 0);
    assert_true(ok > 0);
    pat_close(c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_zero_length_frame),
        T(test_frame_over_the_limit),
        T(test_garbage_bytes),
        T(test_undecodable_payload_keeps_the_connection),
        T(test_unknown_method),
        T(test_half_a_frame_then_disconnect),
        T(test_stalled_and_silent_clients_are_closed_after_idle_timeout),
        T(test_too_many_connections),
        T(test_client_that_never_reads_is_held_back_with_bounded_memory),
        T(test_worker_saturation_answers_overloaded_quickly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
