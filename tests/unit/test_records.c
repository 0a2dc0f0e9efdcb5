/* Unit tests of the RocksDB backend's token records read by hand
 * (rdb_token_decode, storage/rocksdb/rocksdb.c) against protobuf-c's
 * generic unpack followed by rdb_token_from_rec, the way they were read
 * before (issue 20: a cold Verify's decode without the descriptor-driven
 * unpacker). Both must give the same token for every record protobuf-c
 * accepts, and the hand decoder must refuse whatever protobuf-c refuses:
 * records as patd writes them, records with every field at its edge,
 * unknown fields, and random truncations, byte flips and garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rocksdb/internal.h"
#include "test_rng.h"

/* The reference: protobuf-c, then the domain value. -1 if it refuses. */
static int reference(const uint8_t *p, size_t len, store_token_t *out)
{
    rdb_token_rec_t *rec = patd__store__token_record__unpack(NULL, len, p);
    if (rec == NULL) return -1;
    memset(out, 0, sizeof(*out));
    rdb_token_from_rec(rec, out);
    patd__store__token_record__free_unpacked(rec, NULL);
    return 0;
}

/* Both decoders on the same bytes: the same verdict, and the same token. */
static int agree(const uint8_t *p, size_t len)
{
    store_token_t a, b;
    memset(&b, 0x5a, sizeof(b));
    int ra = reference(p, len, &a);
    int rb = rdb_token_decode(p, len, &b);
    if (rb != ra) { /* the bytes, to make a case of them */
        fprintf(stderr, "protobuf-c %d, by hand %d:", ra, rb);
        for (size_t i = 0; i < len; i++)
            fprintf(stderr, " %02x", p[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(rb, ra);
    if (ra == 0) {
        assert_int_equal(b.id, a.id);
        assert_memory_equal(b.hash, a.hash, sizeof(a.hash));
        assert_string_equal(b.name, a.name);
        assert_string_equal(b.owner_id, a.owner_id);
        assert_string_equal(b.created_by, a.created_by);
        assert_int_equal(b.kind, a.kind);
        assert_int_equal(b.scim, a.scim);
        assert_int_equal(b.active, a.active);
        assert_int_equal(b.created, a.created);
        assert_int_equal(b.expiration, a.expiration);
    }
    return ra;
}

static void random_text(char *buf, size_t max)
{
    size_t n = rnd() % max;
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        /* ASCII mostly, some UTF-8 sequences, now and then a NUL */
        unsigned c = r % 13 == 0   ? 0x80u | (unsigned)(r >> 8 & 0x3f)
                     : r % 97 == 0 ? 0u
                                   : 'a' + (unsigned)(r % 26);
        buf[i] = (char)c;
    }
    buf[n] = '\0';
}

/* A record as patd packs it, with random values (edges included). */
static size_t random_record(uint8_t *out, char *name, char *owner, char *by, uint8_t *hash)
{
    rdb_token_rec_t rec = PATD__STORE__TOKEN_RECORD__INIT;
    static const uint64_t edges[] = {0,     1,          127,       128,       16383,
                                     16384, UINT32_MAX, INT64_MAX, UINT64_MAX};
    rec.schema = (uint32_t)rnd();
    rec.id = rnd() % 3 ? rnd() >> (rnd() % 64) : edges[rnd() % 9];
    random_text(name, 300); /* past STORE_NAME_MAX: cut */
    random_text(owner, 300);
    random_text(by, 40);
    /* protobuf-c packs a string up to its NUL */
    rec.name = name;
    rec.owner_id = owner;
    rec.created_by = by;
    rec.kind = (int32_t)rnd();
    rec.scim = rnd() & 1;
    rec.created = (int64_t)(rnd() % 3 ? rnd() >> 20 : edges[rnd() % 9]);
    rec.expiration = (int64_t)(rnd() % 2 ? 0 : rnd());
    rec.active = rnd() & 1;
    size_t hl = rnd() % 4 ? STORE_HASH_BYTES : rnd() % 40; /* a wrong length is no hash */
    for (size_t i = 0; i < hl; i++)
        hash[i] = (uint8_t)rnd();
    rec.hash.data = hash;
    rec.hash.len = hl;
    return patd__store__token_record__pack(&rec, out);
}

static void test_records_as_written_decode_as_protobuf_c_does(void **state)
{
    (void)state;
    uint8_t buf[2048], hash[64];
    char name[301], owner[301], by[41];
    for (int i = 0; i < 20000; i++) {
        size_t n = random_record(buf, name, owner, by, hash);
        assert_int_equal(agree(buf, n), 0);
    }
    /* The empty record: every field at its default. */
    assert_int_equal(agree(buf, 0), 0);
}

static void test_unknown_fields_and_repeats(void **state)
{
    (void)state;
    /* id 7, then an unknown varint (field 20), fixed64 (21), bytes (22),
     * fixed32 (23), then id again: the last one wins. */
    const uint8_t rec[] = {0x10, 0x07, 0xa0, 0x01, 0x05, 0xa9, 0x01, 1,    2,    3,    4,  5,
                           6,    7,    8,    0xb2, 0x01, 0x02, 'h',  'i',  0xbd, 0x01, 1,  2,
                           3,    4,    0x10, 0x09, 0x1a, 0x01, 'x',  0x1a, 0x02, 'y',  'z'};
    assert_int_equal(agree(rec, sizeof(rec)), 0);
    store_token_t t;
    assert_int_equal(rdb_token_decode(rec, sizeof(rec), &t), 0);
    assert_int_equal(t.id, 9);
    assert_string_equal(t.name, "yz");
    /* A bool whose only set bit is past the 64th still reads true, as in
     * protobuf-c; a 10-byte negative kind is cut to 32 bits. */
    const uint8_t edge[] = {0x30, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
                            0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    agree(edge, sizeof(edge));
    /* protobuf-c reads a bool from any wire type, its length byte
     * included: active set, then active with a length and a zero byte,
     * stays true (found by the random cases below). */
    const uint8_t bools[] = {0x48, 0x01, 0x4a, 0x01, 0x00, 0x35, 0, 0, 0, 0};
    assert_int_equal(agree(bools, sizeof(bools)), 0);
    assert_int_equal(rdb_token_decode(bools, sizeof(bools), &t), 0);
    assert_int_equal(t.active, 1);
    assert_int_equal(t.scim, 0);
    /* A tag of 5 bytes (an overlong field 1) is read; a length of 5
     * overlong bytes too, of 6 not. */
    const uint8_t longs[] = {0x88, 0x80, 0x80, 0x80, 0x00, 0x01,
                             0x1a, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(agree(longs, sizeof(longs)), 0);
    const uint8_t len6[] = {0x1a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    assert_int_equal(agree(len6, sizeof(len6)), -1);
    /* Field 0 is refused in a one-byte tag, but in a longer one it is an
     * unknown field (found by fuzz_record). */
    const uint8_t zero2[] = {0x10, 0x08, 0x80, 0x00, 0x6e, 0x82, 0x00, 0x01, 0x00};
    assert_int_equal(agree(zero2, sizeof(zero2)), 0);
}

static void test_broken_records_are_refused_as_protobuf_c_refuses_them(void **state)
{
    (void)state;
    static const uint8_t bad[][6] = {
        {0x10},                         /* a tag without its value */
        {0x10, 0x80},                   /* a truncated varint */
        {0x1a, 0x05, 'a'},              /* a length past the end */
        {0x12, 0x01, 0x00},             /* id (a number) with a length */
        {0x18, 0x01},                   /* name (text) as a number */
        {0x00, 0x01},                   /* field 0 */
        {0x13},                         /* a group */
        {0x16, 0x00},                   /* wire type 6 */
        {0x11, 1, 2, 3},                /* id as a fixed64, cut short */
        {0x80, 0x80, 0x80, 0x80, 0x80}, /* a tag longer than 5 bytes */
    };
    static const size_t lens[] = {1, 2, 3, 3, 2, 2, 1, 2, 4, 5};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
        agree(bad[i], lens[i]);
    store_token_t t;
    assert_int_equal(rdb_token_decode(bad[2], lens[2], &t), -1);

    /* Records as written, then cut, flipped or overwritten at random. */
    uint8_t buf[2048], hash[64];
    char name[301], owner[301], by[41];
    int refused = 0;
    for (int i = 0; i < 50000; i++) {
        size_t n = random_record(buf, name, owner, by, hash);
        switch (rnd() % 3) {
        case 0:
            n = n ? rnd() % n : 0;
            break;
        case 1:
            for (int k = 0; k < 3 && n; k++)
                buf[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        default:
            for (size_t k = rnd() % (n + 1); k < n; k++)
                buf[k] = (uint8_t)rnd();
        }
        refused += agree(buf, n) != 0;
    }
    assert_true(refused > 1000); /* the broken ones were broken enough */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_as_written_decode_as_protobuf_c_does),
        cmocka_unit_test(test_unknown_fields_and_repeats),
        cmocka_unit_test(test_broken_records_are_refused_as_protobuf_c_refuses_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
