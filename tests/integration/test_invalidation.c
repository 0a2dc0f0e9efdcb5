/* The verification cache against a real patd: exact invalidation under
 * load (R13, R14, R16 with the cache in front), bounded size with
 * eviction, counters in Health, and unknown tokens never filling it.
 * In cluster mode (harness.h; ctest's .cluster3 entry) the hammer verifies
 * on the nodes other than the one that makes the change, and each round
 * after the first makes it on a random node (issue 19). Half the hammer's
 * threads ask over HTTP's /v1/verify, half over the framed port: each has
 * its own prepared answer of the token (issue 20), in one slot. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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
#include "token.h"

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void health1(const patd_t *p, Pat__V1__CacheStats *out)
{
    pat_client_t *c = h_connect(p);
    Pat__V1__HealthRequest req = PAT__V1__HEALTH_REQUEST__INIT;
    Pat__V1__HealthResponse *r = NULL;
    pat_status_t st;
    assert_int_equal(h_call(c, "Health", &req.base, &pat__v1__health_response__descriptor, &r, &st),
                     0);
    assert_non_null(r->cache);
    *out = *r->cache;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    h_close(c);
}

/* The cache counters, summed over every node. */
static void health(const patd_t *p, Pat__V1__CacheStats *out)
{
    health1(p, out);
    for (int i = 1; i < h_nodes(p); i++) {
        Pat__V1__CacheStats o;
        health1(h_node(p, i), &o);
        out->hits += o.hits;
        out->misses += o.misses;
        out->entries += o.entries;
        out->evictions += o.evictions;
    }
}

/* One GET /v1/verify on a kept-alive connection to port (*fd: -1 to dial):
 * 0 with the answer's X-Patd-Reason in reason, or -1. */
static int http_verify(int port, int *fd, const char *token, int required_role, char *reason,
                       size_t cap)
{
    if (*fd < 0) {
        *fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (*fd < 0 || connect(*fd, (struct sockaddr *)&a, sizeof(a)) != 0) return -1;
    }
    char req[512], buf[4096];
    int n = snprintf(req, sizeof(req),
                     "GET /v1/verify/api/v1/x HTTP/1.1\r\nHost: patd\r\nAuthorization: Bearer "
                     "%s\r\n%s\r\n",
                     token, required_role == 3 ? "X-Patd-Required-Role: admin\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof(req) || write(*fd, req, (size_t)n) != n) return -1;
    size_t have = 0; /* a /v1/verify answer is headers only (Content-Length: 0) */
    buf[0] = '\0';
    while (strstr(buf, "\r\n\r\n") == NULL) {
        ssize_t r = read(*fd, buf + have, sizeof(buf) - 1 - have);
        if (r <= 0) return -1;
        have += (size_t)r;
        buf[have] = '\0';
    }
    const char *v = strstr(buf, "\r\nX-Patd-Reason: ");
    if (v == NULL) return -1;
    v += strlen("\r\nX-Patd-Reason: ");
    snprintf(reason, cap, "%.*s", (int)strcspn(v, "\r"), v);
    return 0;
}

/* Hammer: threads verify one token in a loop, each result stamped with the
 * time its request was sent. */
typedef struct {
    const patd_t *p;
    const char *token;
    int required_role;
    int http; /* over /v1/verify instead of the framed port */
    _Atomic int *stop;
    _Atomic uint64_t *cut; /* ack time of the change; 0 until acknowledged */
    const char *want;      /* after the cut every answer has this reason (NULL: any no) */
    uint64_t late_successes, total, after_cut;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *h = arg;
    pat_client_t *c = h->http ? NULL : h_connect(h->p);
    int fd = -1;
    if (c == NULL && !h->http) return NULL;
    while (!atomic_load(h->stop)) {
        Pat__V1__VerifyRequest req = PAT__V1__VERIFY_REQUEST__INIT;
        req.bearer_token = (char *)h->token;
        req.path = "/api/v1/x";
        req.required_role = h->required_role;
        uint64_t sent = mono_ns();
        pat_status_t st;
        char reason[64];
        if (h->http) {
            if (http_verify(h->p->http_port, &fd, h->token, h->required_role, reason,
                            sizeof(reason)) != 0)
                break;
        } else {
            if (pat_call(c, "Verify", &req.base, NULL, NULL, &st) != 0) break;
            snprintf(reason, sizeof(reason), "%s", st.code == 0 ? "ok" : st.reason);
        }
        uint64_t cut = atomic_load(h->cut);
        h->total++;
        if (cut && sent > cut) {
            h->after_cut++;
            if (strcmp(reason, "ok") == 0 || (h->want && strcmp(reason, h->want) != 0))
                h->late_successes++;
        }
    }
    if (fd >= 0) close(fd);
    if (c) h_close(c);
    return NULL;
}

enum { CHANGE_REVOKE, CHANGE_DEACTIVATE, CHANGE_DOWNGRADE, CHANGE_DELETE };

static void run_hammer(int change)
{
    patd_t p;
    assert_int_equal(h_start(&p, 0, NULL), 0);
    assert_int_equal(h_user(&p, "u", PAT__V1__ROLE__ROLE_ADMIN), 0);
    int n = h_nodes(&p);
    srand((unsigned)mono_ns());
    for (int round = 0; round < 5; round++) {
        int w = round == 0 ? 0 : rand() % n; /* the node that makes the change */
        patd_t *wp = h_node(&p, w);
        uint64_t id;
        char name[16];
        snprintf(name, sizeof(name), "t%d", round);
        char *tok = h_create(&p, "u", name, 30, &id, NULL);
        assert_non_null(tok);
        if (change == CHANGE_DELETE) { /* R19: only a revoked token may go */
            pat_client_t *c = h_platform(&p, "u");
            assert_int_equal(h_update(c, id, 1, NULL, NULL), 0);
            h_close(c);
        }
        _Atomic int stop = 0;
        _Atomic uint64_t cut = 0;
        enum { N = 4 };
        pthread_t th[N];
        hammer_t hs[N];
        for (int i = 0; i < N; i++) {
            hs[i] = (hammer_t){.p = n == 1 ? &p : h_node(&p, (w + 1 + i % (n - 1)) % n),
                               .token = tok,
                               .stop = &stop,
                               .cut = &cut,
                               .required_role = change == CHANGE_DOWNGRADE ? 3 : 0,
                               .http = i >= N / 2, /* each port on every node */
                               .want = change == CHANGE_DELETE ? "unknown_token" : NULL};
            pthread_create(&th[i], NULL, hammer, &hs[i]);
        }
        usleep(100 * 1000); /* warm: the token (revoked, for a delete) is in the cache */
        pat_status_t st;
        if (change == CHANGE_REVOKE || change == CHANGE_DELETE) {
            pat_client_t *c = h_platform(wp, "u");
            if (change == CHANGE_REVOKE)
                assert_int_equal(h_update(c, id, 1, NULL, &st), 0);
            else
                assert_int_equal(h_delete(c, id, &st), 0);
            h_close(c);
        } else if (change == CHANGE_DEACTIVATE) {
            assert_int_equal(h_set_active(wp, "u", 0, &st), 0);
        } else {
            assert_int_equal(h_user(wp, "u", PAT__V1__ROLE__ROLE_MEMBER), 0);
        }
        atomic_store(&cut, mono_ns());
        usleep(150 * 1000);
        atomic_store(&stop, 1);
        uint64_t late = 0, total = 0, after[2] = {0, 0};
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            late += hs[i].late_successes;
            total += hs[i].total;
            after[hs[i].http] += hs[i].after_cut;
        }
        fprintf(stderr,
                "change %d round %d on node %d of %d: %llu verifies, %llu + %llu (framed + "
                "HTTP) after the ack, %llu succeeded\n",
                change, round, w, n, (unsigned long long)total, (unsigned long long)after[0],
                (unsigned long long)after[1], (unsigned long long)late);
        /* The test really raced the change, on both ports. */
        assert_true(after[0] > 5 && after[1] > 5);
        assert_int_equal(late, 0);
        /* Undo for the next round. */
        if (change == CHANGE_DEACTIVATE) assert_int_equal(h_set_active(wp, "u", 1, &st), 0);
        if (change == CHANGE_DOWNGRADE)
            assert_int_equal(h_user(wp, "u", PAT__V1__ROLE__ROLE_ADMIN), 0);
        free(tok);
    }
    Pat__V1__CacheStats cs;
    health(&p, &cs);
    assert_true(cs.hits > 100); /* the hammer really went through the cache */
    h_cleanup(&p);
}

static void test_R16_no_verify_after_revoke_ack_succeeds_under_load(void **state)
{
    (void)state;
    run_hammer(CHANGE_REVOKE);
}

static void test_R14_no_verify_after_deactivate_ack_succeeds_under_load(void **state)
{
    (void)state;
    run_hammer(CHANGE_DEACTIVATE);
}

static void test_R13_no_admin_verify_after_downgrade_ack_under_load(void **state)
{
    (void)state;
    run_hammer(CHANGE_DOWNGRADE);
}

/* R19: after a delete is acknowledged, every node says unknown_token, none
 * still "revoked" from a cached entry. */
static void test_R19_no_revoked_answer_after_delete_ack_under_load(void **state)
{
    (void)state;
    run_hammer(CHANGE_DELETE);
}

static void test_cache_is_bounded_and_counts(void **state)
{
    (void)state;
    static const char *const flags[] = {"--cache-entries", "64", NULL};
    patd_t p;
    assert_int_equal(h_start(&p, 0, flags), 0);
    assert_int_equal(h_user(&p, "u", 1), 0);
    enum { N = 200 };
    char *toks[N];
    pat_client_t *c = h_platform(&p, "u");
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "t%d", i);
        toks[i] = h_create_with(c, name, 30, 0, 0, NULL, NULL, NULL);
        assert_non_null(toks[i]);
    }
    h_close(c);
    /* One node's cache (in cluster mode, the last node's: reads only). */
    const patd_t *r = h_node(&p, h_nodes(&p) - 1);
    pat_status_t st;
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++)
            assert_int_equal(h_verify(r, toks[i], "/", 0, NULL, &st), 0);
    Pat__V1__CacheStats cs;
    health1(r, &cs);
    assert_int_equal(cs.capacity, 64);
    assert_true(cs.entries <= 64 + 64); /* per-shard rounding: at most one more per shard */
    assert_true(cs.evictions >= N - 128);
    assert_true(cs.misses >= N);
    /* A hot set that fits is all hits. */
    uint64_t hits0 = cs.hits;
    for (int k = 0; k < 50; k++)
        assert_int_equal(h_verify(r, toks[0], "/", 0, NULL, &st), 0);
    health1(r, &cs);
    assert_true(cs.hits - hits0 >= 98); /* token and user, 49 of 50 times at least */
    for (int i = 0; i < N; i++)
        free(toks[i]);
    h_cleanup(&p);
}

static void test_unknown_tokens_never_fill_the_cache(void **state)
{
    (void)state;
    patd_t p;
    assert_int_equal(h_start(&p, 0, NULL), 0);
    Pat__V1__CacheStats before, after;
    health(&p, &before);
    pat_status_t st;
    for (int i = 0; i < 500; i++) {
        char t[TOKEN_MAX_LEN + 1];
        assert_int_equal(token_generate(TOKEN_PREFIX_PERSONAL, t), 0);
        assert_int_equal(h_verify(&p, t, "/", 0, NULL, &st), PAT__V1__CODE__UNAUTHENTICATED);
        assert_string_equal(st.reason, "unknown_token");
        t[8] = t[8] == 'A' ? 'B' : 'A'; /* bad checksum: not even a lookup */
        assert_int_equal(h_verify(&p, t, "/", 0, NULL, &st), PAT__V1__CODE__UNAUTHENTICATED);
        assert_string_equal(st.reason, "malformed_token");
    }
    health(&p, &after);
    assert_int_equal(after.entries, before.entries);
    assert_int_equal(after.misses - before.misses, 500); /* malformed ones never looked */
    h_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_R16_no_verify_after_revoke_ack_succeeds_under_load),
        cmocka_unit_test(test_R14_no_verify_after_deactivate_ack_succeeds_under_load),
        cmocka_unit_test(test_R13_no_admin_verify_after_downgrade_ack_under_load),
        cmocka_unit_test(test_R19_no_revoked_answer_after_delete_ack_under_load),
        cmocka_unit_test(test_cache_is_bounded_and_counts),
        cmocka_unit_test(test_unknown_tokens_never_fill_the_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
