/* Unit tests of cache.c: hits and misses, LRU eviction and its bound,
 * invalidation, and the epoch guard that keeps a read which raced with a
 * write from re-inserting the old answer (R13, R14, R16 with a cache). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cache.h"

static store_token_t token(uint64_t id, int active)
{
    store_token_t t = {.id = id, .active = active, .expiration = 123};
    strcpy(t.name, "ci");
    strcpy(t.owner_id, "alice");
    strcpy(t.created_by, "alice");
    return t;
}

/* The cache keys a token by its hash, which the value carries. */
static void put_token(cache_t *c, const uint8_t h[32], store_token_t *t, uint64_t epoch)
{
    memcpy(t->hash, h, 32);
    cache_token_put(c, t, epoch);
}

/* A stand-in digest: the cache hashes a token by its first 8 bytes, as
 * uniform as SHA-256's, so those are a bijective mix of n (splitmix64). */
static void hash_of(uint64_t n, uint8_t h[32])
{
    uint64_t x = n + 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    memset(h, 0, 32);
    for (int i = 0; i < 8; i++) {
        h[i] = (uint8_t)(x >> (8 * i));
        h[8 + i] = (uint8_t)(n >> (8 * i));
    }
}

static void test_miss_then_hit_copies_the_fields(void **state)
{
    (void)state;
    cache_t *c = cache_new(100);
    uint8_t h[32];
    hash_of(1, h);
    store_token_t out;
    uint64_t epoch;
    assert_false(cache_token_get(c, h, &out, &epoch, 1));
    store_token_t t = token(7, 1);
    put_token(c, h, &t, epoch);
    assert_true(cache_token_get(c, h, &out, NULL, 1));
    assert_int_equal(out.id, 7);
    assert_string_equal(out.name, "ci");
    assert_string_equal(out.owner_id, "alice");
    assert_int_equal(out.expiration, 123);
    assert_true(out.active);
    cache_stats_t st;
    cache_stats(c, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.entries, 1);
    cache_free(c);
}

static void test_R16_a_read_that_raced_a_revoke_cannot_insert_the_old_state(void **state)
{
    (void)state;
    cache_t *c = cache_new(100);
    uint8_t h[32];
    hash_of(2, h);
    store_token_t out;
    uint64_t epoch;
    /* A reader misses and reads the active record from storage... */
    assert_false(cache_token_get(c, h, &out, &epoch, 1));
    store_token_t old = token(9, 1);
    /* ...meanwhile a revoke commits and invalidates... */
    cache_token_invalidate(c, h);
    /* ...then the reader tries to cache what it read: refused. */
    put_token(c, h, &old, epoch);
    assert_false(cache_token_get(c, h, &out, &epoch, 1));
    /* A read that starts after the invalidation may insert. */
    store_token_t revoked = token(9, 0);
    put_token(c, h, &revoked, epoch);
    assert_true(cache_token_get(c, h, &out, NULL, 1));
    assert_false(out.active);
    cache_free(c);
}

static void test_R14_user_invalidation_and_epoch(void **state)
{
    (void)state;
    cache_t *c = cache_new(100);
    store_user_t u = {0};
    strcpy(u.user_id, "auth0|x");
    strcpy(u.user_name, "x");
    strcpy(u.email, "x@example.com");
    strcpy(u.name, "X");
    strcpy(u.created_by, "platform");
    u.role = 3;
    u.active = 1;
    store_user_t out;
    uint64_t epoch;
    assert_false(cache_user_get(c, "auth0|x", &out, &epoch, 1));
    cache_user_put(c, &u, epoch);
    assert_true(cache_user_get(c, "auth0|x", &out, NULL, 1));
    assert_int_equal(out.role, 3);
    assert_true(out.active);
    assert_string_equal(out.email, "x@example.com");
    assert_string_equal(out.user_id, "auth0|x");
    /* Deactivation commits and invalidates: the entry is gone. */
    cache_user_invalidate(c, "auth0|x");
    assert_false(cache_user_get(c, "auth0|x", &out, &epoch, 1));
    /* A reader that missed before a second change read the active record;
     * the change invalidates; the reader's insert is refused. */
    uint64_t stale = epoch;
    cache_user_invalidate(c, "auth0|x");
    cache_user_put(c, &u, stale);
    assert_false(cache_user_get(c, "auth0|x", &out, &epoch, 1));
    /* A reader after the change inserts what it read: deactivated. */
    u.active = 0;
    cache_user_put(c, &u, epoch);
    assert_true(cache_user_get(c, "auth0|x", &out, NULL, 1));
    assert_false(out.active);
    cache_free(c);
}

static void test_lru_evicts_the_least_recently_used_and_stays_bounded(void **state)
{
    (void)state;
    enum { CAP = 640, N = 5000 };
    cache_t *c = cache_new(CAP);
    uint8_t h[32];
    store_token_t out;
    uint64_t epoch;
    for (uint64_t i = 0; i < N; i++) {
        hash_of(i, h);
        cache_token_get(c, h, &out, &epoch, 1);
        store_token_t t = token(i, 1);
        put_token(c, h, &t, epoch);
        /* Keep token 0 hot: it must survive every eviction. */
        hash_of(0, h);
        assert_true(cache_token_get(c, h, &out, NULL, 1));
    }
    cache_stats_t st;
    cache_stats(c, &st);
    assert_true(st.entries <= CAP + CACHE_SHARDS); /* per-shard rounding */
    assert_int_equal(st.entries + st.evictions, N);
    cache_free(c);
}

/* Buckets start few and double as a shard fills: every entry must still be
 * found after each doubling, and invalidation must find them too. */
static void test_buckets_grow_and_every_entry_stays_found(void **state)
{
    (void)state;
    enum { N = 20000 }; /* ~1250 a shard: five doublings from 64 buckets */
    cache_t *c = cache_new(100000);
    uint8_t h[32];
    store_token_t out;
    uint64_t epoch;
    for (uint64_t i = 0; i < N; i++) {
        hash_of(i, h);
        assert_false(cache_token_get(c, h, &out, &epoch, 1));
        store_token_t t = token(i, 1);
        put_token(c, h, &t, epoch);
    }
    for (uint64_t i = 0; i < N; i++) {
        hash_of(i, h);
        assert_true(cache_token_get(c, h, &out, NULL, 1));
        assert_int_equal(out.id, i);
    }
    for (uint64_t i = 0; i < N; i += 2) {
        hash_of(i, h);
        cache_token_invalidate(c, h);
    }
    for (uint64_t i = 0; i < N; i++) {
        hash_of(i, h);
        assert_int_equal(cache_token_get(c, h, &out, NULL, 1), (int)(i & 1));
    }
    cache_stats_t st;
    cache_stats(c, &st);
    assert_int_equal(st.entries, N / 2);
    assert_int_equal(st.evictions, 0);
    cache_free(c);
}

static void test_capacity_zero_disables(void **state)
{
    (void)state;
    cache_t *c = cache_new(0);
    uint8_t h[32];
    hash_of(3, h);
    store_token_t out;
    uint64_t epoch;
    assert_false(cache_token_get(c, h, &out, &epoch, 1));
    store_token_t t = token(3, 1);
    put_token(c, h, &t, epoch);
    assert_false(cache_token_get(c, h, &out, &epoch, 1));
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_then_hit_copies_the_fields),
        cmocka_unit_test(test_R16_a_read_that_raced_a_revoke_cannot_insert_the_old_state),
        cmocka_unit_test(test_R14_user_invalidation_and_epoch),
        cmocka_unit_test(test_lru_evicts_the_least_recently_used_and_stays_bounded),
        cmocka_unit_test(test_buckets_grow_and_every_entry_stays_found),
        cmocka_unit_test(test_capacity_zero_disables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
