/* Memory amplification by clients that never read (from the security
 * review): a member makes 500 tokens with 255-byte names, so that one
 * 108-byte ListTokens{page_size: 500} asks for ~154 KiB; 100 connections
 * then pipeline 100 such requests each and never read. Before the
 * server-wide budget for unread answers, 10 such connections grew patd's
 * RSS by 223 MiB and 30 by 389 MiB, held until the idle timeout. Now the
 * growth stays within a stated bound, and a well-behaved client on another
 * connection gets a correct answer to every Verify meanwhile. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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

#include "harness.h"
#include "pat/v1/pat.pb-c.h"

#define FLOODERS  100
#define REQUESTS  100
#define BUDGET_MB "32"
/* RSS growth allowed: the 32 MiB budget, a page per connection (15 MiB),
 * buffers, and ASan's quarantine in the sanitizer run. Measured: 58-85 MiB
 * (94 under ASan); without the budget the same flood reached 640 MiB in 4 s. */
#define BOUND_KIB (160 * 1024)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 500 tokens with 255-byte names, pipelined 100 at a time. */
static void make_tokens(patd_t *p)
{
    pat_client_t *c = h_platform(p, "amp");
    char name[256];
    for (int batch = 0; batch < 5; batch++) {
        for (int i = 0; i < 100; i++) {
            memset(name, 'n', 255);
            snprintf(name, 8, "%03d", batch * 100 + i);
            name[3] = 'n';
            name[255] = '\0';
            Pat__V1__CreateTokenRequest r = PAT__V1__CREATE_TOKEN_REQUEST__INIT;
            r.name = name;
            assert_int_equal(pat_send(c, (uint64_t)(batch * 100 + i + 1), "CreateToken", &r.base),
                             0);
        }
        for (int i = 0; i < 100; i++) {
            Pat__V1__Response *resp = NULL;
            assert_int_equal(pat_recv(c, &resp), 0);
            assert_int_equal(resp->status->code, 0);
            pat__v1__response__free_unpacked(resp, NULL);
        }
    }
    pat_close(c);
}

/* One ListTokens{page_size: 500} frame acting as amp, length prefix and all. */
static size_t list_frame(const patd_t *p, uint8_t *out, size_t cap)
{
    Pat__V1__ListTokensRequest lr = PAT__V1__LIST_TOKENS_REQUEST__INIT;
    lr.page_size = 500;
    uint8_t payload[64];
    size_t pl = pat__v1__list_tokens_request__pack(&lr, payload);
    char auth[256];
    snprintf(auth, sizeof(auth), "Platform %s", p->key);
    Pat__V1__Request__MetadataEntry e1 = PAT__V1__REQUEST__METADATA_ENTRY__INIT;
    Pat__V1__Request__MetadataEntry e2 = PAT__V1__REQUEST__METADATA_ENTRY__INIT;
    e1.key = "authorization";
    e1.value = auth;
    e2.key = "x-act-as-user";
    e2.value = "amp";
    Pat__V1__Request__MetadataEntry *md[] = {&e1, &e2};
    Pat__V1__Request r = PAT__V1__REQUEST__INIT;
    r.id = 1;
    r.method = "pat.v1.TokenService/ListTokens";
    r.payload.data = payload;
    r.payload.len = pl;
    r.n_metadata = 2;
    r.metadata = md;
    size_t n = pat__v1__request__get_packed_size(&r);
    assert_true(n + 4 <= cap);
    pat__v1__request__pack(&r, out + 4);
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    return n + 4;
}

static void test_clients_that_never_read_cannot_take_the_memory(void **state)
{
    (void)state;
    patd_t p;
    const char *extra[] = {"--max-unread-mb", BUDGET_MB, NULL};
    assert_int_equal(h_start(&p, 0, extra), 0);
    assert_int_equal(h_user(&p, "amp", 1), 0);
    assert_int_equal(h_user(&p, "good", 1), 0);
    char *good = h_create(&p, "good", "good", 30, NULL, NULL);
    assert_non_null(good);
    make_tokens(&p);

    uint8_t frame[1024];
    size_t fl = list_frame(&p, frame, sizeof(frame));
    static uint8_t blob[REQUESTS * 1024];
    for (int i = 0; i < REQUESTS; i++)
        memcpy(blob + (size_t)i * fl, frame, fl);
    size_t bl = (size_t)REQUESTS * fl;

    long rss0 = h_rss_kib(&p);
    int fds[FLOODERS];
    size_t sent[FLOODERS] = {0};
    for (int i = 0; i < FLOODERS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p.port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof(a)), 0);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    long peak = rss0;
    int verifies = 0, right = 0;
    double t0 = now_s();
    while (now_s() - t0 < 4.0) {
        for (int i = 0; i < FLOODERS; i++) {
            if (sent[i] == bl) continue;
            ssize_t n = write(fds[i], blob + sent[i], bl - sent[i]);
            if (n > 0) sent[i] += (size_t)n;
        }
        pat_status_t st;
        verifies++;
        right += h_verify(&p, good, "/api/x", 0, NULL, &st) == 0;
        long r = h_rss_kib(&p);
        if (r > peak) peak = r;
        usleep(50000);
    }
    size_t total = 0;
    for (int i = 0; i < FLOODERS; i++)
        total += sent[i];
    fprintf(stderr,
            "amplification: %zu bytes of requests sent by %d clients that never read; RSS %ld -> "
            "peak %ld KiB (bound: +%d KiB); %d of %d Verifies right\n",
            total, FLOODERS, rss0, peak, BOUND_KIB, right, verifies);
    assert_true(peak - rss0 < BOUND_KIB);
    assert_int_equal(right, verifies);
    for (int i = 0; i < FLOODERS; i++)
        close(fds[i]);
    pat_status_t st;
    assert_int_equal(h_verify(&p, good, "/api/x", 0, NULL, &st), 0);
    free(good);
    h_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clients_that_never_read_cannot_take_the_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
