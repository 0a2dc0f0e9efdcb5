/* Unit tests of token.c: format, prefixes, checksum, hashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "token.h"

static void test_generated_tokens_parse_with_their_prefix(void **state)
{
    (void)state;
    const char *prefixes[] = {"patp_", "pats_", "patscim_"};
    for (int k = 0; k < 3; k++) {
        char t[TOKEN_MAX_LEN + 1];
        assert_int_equal(token_generate((token_prefix_t)k, t), 0);
        assert_true(strncmp(t, prefixes[k], strlen(prefixes[k])) == 0);
        assert_int_equal(strlen(t),
                         strlen(prefixes[k]) + TOKEN_RANDOM_CHARS + TOKEN_CHECKSUM_CHARS);
        token_prefix_t got;
        assert_int_equal(token_parse(t, strlen(t), &got), 0);
        assert_int_equal(got, k);
    }
}

static void test_any_single_typo_is_rejected_by_the_checksum(void **state)
{
    (void)state;
    char t[TOKEN_MAX_LEN + 1];
    assert_int_equal(token_generate(TOKEN_PREFIX_PERSONAL, t), 0);
    size_t len = strlen(t);
    for (size_t i = 0; i < len; i++) {
        char saved = t[i];
        t[i] = saved == 'x' ? 'y' : 'x';
        assert_int_not_equal(token_parse(t, len, NULL), 0);
        t[i] = saved;
    }
    /* Swapping two different adjacent characters is caught too. */
    for (size_t i = 5; i + 1 < len; i++) {
        if (t[i] == t[i + 1]) continue;
        char a = t[i];
        t[i] = t[i + 1];
        t[i + 1] = a;
        assert_int_not_equal(token_parse(t, len, NULL), 0);
        t[i + 1] = t[i];
        t[i] = a;
    }
    assert_int_equal(token_parse(t, len, NULL), 0);
}

static void test_malformed_inputs(void **state)
{
    (void)state;
    char t[TOKEN_MAX_LEN + 1];
    assert_int_equal(token_generate(TOKEN_PREFIX_SERVICE, t), 0);
    size_t len = strlen(t);
    assert_int_not_equal(token_parse(t, len - 1, NULL), 0);
    assert_int_not_equal(token_parse("", 0, NULL), 0);
    assert_int_not_equal(token_parse("ghp_abc", 7, NULL), 0);
    char u[TOKEN_MAX_LEN + 2];
    memcpy(u, t, len);
    u[len] = 'A';
    assert_int_not_equal(token_parse(u, len + 1, NULL), 0);
    memcpy(u, t, len);
    u[7] = '-'; /* not base62 */
    assert_int_not_equal(token_parse(u, len, NULL), 0);
    /* Right prefix and length but a personal token relabelled as service. */
    memcpy(u, t, len);
    u[3] = 'p';
    assert_int_not_equal(token_parse(u, len, NULL), 0);
}

static void test_tokens_are_unique_and_hashes_stable(void **state)
{
    (void)state;
    enum { N = 2000 };
    char(*toks)[TOKEN_MAX_LEN + 1] = malloc(N * sizeof(*toks));
    for (int i = 0; i < N; i++)
        assert_int_equal(token_generate(TOKEN_PREFIX_PERSONAL, toks[i]), 0);
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            assert_string_not_equal(toks[i], toks[j]);
    uint8_t h1[TOKEN_HASH_BYTES], h2[TOKEN_HASH_BYTES];
    token_hash(toks[0], strlen(toks[0]), h1);
    token_hash(toks[0], strlen(toks[0]), h2);
    assert_memory_equal(h1, h2, sizeof(h1));
    token_hash(toks[1], strlen(toks[1]), h2);
    assert_memory_not_equal(h1, h2, sizeof(h1));
    /* Known answer: SHA-256("abc"). */
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    token_hash("abc", 3, h1);
    assert_memory_equal(h1, abc, 32);
    free(toks);
}

static void test_secret_equal(void **state)
{
    (void)state;
    assert_true(token_secret_equal("key-one", 7, "key-one", 7));
    assert_false(token_secret_equal("key-one", 7, "key-two", 7));
    assert_false(token_secret_equal("key", 3, "key-one", 7));
    assert_false(token_secret_equal("", 0, "x", 1));
}

/* Sealed values (page tokens, issue 13): opaque, and any change to the
 * text, its context or its key is refused. */
static void test_sealed_values_open_only_unchanged(void **state)
{
    (void)state;
    uint8_t key[32], other[32], data[300] = {0}, back[300];
    for (int i = 0; i < 32; i++) {
        key[i] = (uint8_t)i;
        other[i] = (uint8_t)(i + 1);
    }
    for (size_t len = 0; len <= sizeof(data); len += 37) {
        for (size_t i = 0; i < len; i++)
            data[i] = (uint8_t)('a' + i % 26);
        char text[TOKEN_SEALED_LEN(300) + 1], again[TOKEN_SEALED_LEN(300) + 1];
        size_t n = token_seal(key, "tokens:1:alice", data, len, text);
        assert_int_equal(n, TOKEN_SEALED_LEN(len));
        assert_int_equal(strlen(text), n);
        assert_int_equal(token_open(key, "tokens:1:alice", text, back, sizeof(back)), (long)len);
        assert_memory_equal(back, data, len);
        if (len >= 8) assert_null(strstr(text, "abcdefgh")); /* nothing shows */
        /* A fresh IV each time: the same value never seals the same twice. */
        token_seal(key, "tokens:1:alice", data, len, again);
        assert_string_not_equal(text, again);
        assert_int_equal(token_open(key, "tokens:1:bob", text, back, sizeof(back)), -1);
        assert_int_equal(token_open(other, "tokens:1:alice", text, back, sizeof(back)), -1);
        for (size_t i = 0; i < n; i++) { /* every character, to another of the alphabet */
            char bad[sizeof(text)];
            memcpy(bad, text, n + 1);
            bad[i] = bad[i] == 'A' ? 'B' : 'A';
            assert_int_equal(token_open(key, "tokens:1:alice", bad, back, sizeof(back)), -1);
        }
        text[n - 1] = '\0'; /* truncated */
        assert_int_equal(token_open(key, "tokens:1:alice", text, back, sizeof(back)), -1);
    }
    assert_int_equal(token_open(key, "c", "", back, sizeof(back)), -1);
    assert_int_equal(token_open(key, "c", "not base64url!", back, sizeof(back)), -1);
    assert_int_equal(token_open(key, "c", "AAAA====", back, sizeof(back)), -1);
    char small[TOKEN_SEALED_LEN(10) + 1];
    token_seal(key, "c", data, 10, small);
    assert_int_equal(token_open(key, "c", small, back, 9), -1); /* no room: refused, not cut */
}

/* The memo's SipHash-2-4-128 is OpenSSL's, for the reference key and
 * message of the SipHash paper (bytes 00 01 02 ...) at every length up to
 * 100, and for random keys. */
static void test_siphash128_is_openssls(void **state)
{
    (void)state;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
    assert_non_null(mac);
    uint8_t key[16], msg[100], mine[16], theirs[16];
    for (int k = 0; k < 16; k++)
        key[k] = (uint8_t)k;
    for (int k = 0; k < 100; k++)
        msg[k] = (uint8_t)k;
    for (int round = 0; round < 50; round++) {
        if (round > 0) assert_int_equal(token_random(key, sizeof(key)), 0);
        for (size_t len = 0; len <= sizeof(msg); len++) {
            EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
            size_t size = 16, n = 0;
            OSSL_PARAM ps[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                               OSSL_PARAM_END};
            assert_int_equal(EVP_MAC_init(ctx, key, sizeof(key), ps), 1);
            assert_int_equal(EVP_MAC_update(ctx, msg, len), 1);
            assert_int_equal(EVP_MAC_final(ctx, theirs, &n, sizeof(theirs)), 1);
            assert_int_equal(n, 16);
            EVP_MAC_CTX_free(ctx);
            token_siphash128(key, msg, len, mine);
            assert_memory_equal(mine, theirs, 16);
        }
    }
    /* The paper's first 128-bit vector: the empty message. */
    static const uint8_t v0[16] = {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6,
                                   0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93};
    for (int k = 0; k < 16; k++)
        key[k] = (uint8_t)k;
    token_siphash128(key, msg, 0, mine);
    assert_memory_equal(mine, v0, 16);
    EVP_MAC_free(mac);
}

/* token_check_hash, remembered or not, answers as token_parse and
 * token_hash do: for more tokens than the memo has slots (so slots are
 * shared and overwritten), for each of them again, and for malformed ones
 * (a typo of a remembered token is not remembered with it). */
static void test_check_hash_memo_is_exact(void **state)
{
    (void)state;
    enum { N = 3 * TOKEN_MEMO_SLOTS / 2 };
    char(*toks)[TOKEN_MAX_LEN + 1] = malloc((size_t)N * sizeof(*toks));
    assert_non_null(toks);
    for (int i = 0; i < N; i++)
        assert_int_equal(token_generate((token_prefix_t)(i % 3), toks[i]), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < N; i++) {
            uint8_t want[TOKEN_HASH_BYTES], got[TOKEN_HASH_BYTES];
            size_t len = strlen(toks[i]);
            token_hash(toks[i], len, want);
            assert_int_equal(token_check_hash(toks[i], len, pass, got), 0);
            assert_memory_equal(got, want, sizeof(want));
            assert_int_equal(token_check_hash(toks[i], len, 1, got), 0);
            assert_memory_equal(got, want, sizeof(want));
            char typo[TOKEN_MAX_LEN + 1];
            memcpy(typo, toks[i], len + 1);
            typo[len - 1] = typo[len - 1] == 'a' ? 'b' : 'a';
            assert_int_equal(token_check_hash(typo, len, 1, got), -1);
            assert_int_equal(token_check_hash(toks[i], len - 1, 1, got), -1);
        }
    }
    uint8_t h[TOKEN_HASH_BYTES];
    assert_int_equal(token_check_hash("", 0, 1, h), -1);
    free(toks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_tokens_parse_with_their_prefix),
        cmocka_unit_test(test_any_single_typo_is_rejected_by_the_checksum),
        cmocka_unit_test(test_malformed_inputs),
        cmocka_unit_test(test_tokens_are_unique_and_hashes_stable),
        cmocka_unit_test(test_secret_equal),
        cmocka_unit_test(test_sealed_values_open_only_unchanged),
        cmocka_unit_test(test_siphash128_is_openssls),
        cmocka_unit_test(test_check_hash_memo_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
