/* Unit tests of wire.c's hand-made codec for the hot Verify (issue 20):
 * its bytes are protobuf-c's, byte for byte, and its reader either agrees
 * with protobuf-c's unpack and wire_check or declines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pat/v1/pat.pb-c.h"
#include "test_rng.h"
#include "wire.h"

/* A random string: empty a quarter of the time, sometimes multi-byte. */
static char *rnd_str(char *buf, size_t cap)
{
    size_t n = rnd() % 4 == 0 ? 0 : rnd() % (cap / 2);
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 < cap; i++) {
        if (rnd() % 10 == 0) {
            buf[o++] = (char)0xc3; /* é */
            buf[o++] = (char)0xa9;
        } else {
            buf[o++] = (char)('a' + rnd() % 26);
        }
    }
    buf[o] = '\0';
    return buf;
}

/* Zero often (proto3 leaves zero out), sometimes large or negative. */
static int64_t rnd_int(void)
{
    switch (rnd() % 5) {
    case 0:
        return 0;
    case 1:
        return (int64_t)(rnd() % 300);
    case 2:
        return -(int64_t)(rnd() % 1000) - 1;
    default:
        return (int64_t)rnd();
    }
}

typedef struct {
    char s[8][200];
    Pat__V1__User u1, u2;
    Pat__V1__TokenInfo ti;
    Pat__V1__VerifyResponse r;
} answer_t;

static void rnd_user(Pat__V1__User *u, char (*s)[200])
{
    pat__v1__user__init(u);
    u->user_id = rnd_str(s[0], sizeof(s[0]));
    u->user_name = rnd_str(s[1], sizeof(s[1]));
    u->email = rnd_str(s[2], sizeof(s[2]));
    u->name = rnd_str(s[3], sizeof(s[3]));
    u->role = (Pat__V1__Role)(int32_t)rnd_int();
    u->user_type = (Pat__V1__UserType)(int32_t)rnd_int();
    u->active = rnd() % 2;
    u->created = rnd_int();
    u->created_by = rnd_str(s[4], sizeof(s[4]));
}

static void rnd_answer(answer_t *a)
{
    static char us[2][5][200];
    rnd_user(&a->u1, us[0]);
    rnd_user(&a->u2, us[1]);
    pat__v1__token_info__init(&a->ti);
    a->ti.id = (uint64_t)rnd_int();
    a->ti.name = rnd_str(a->s[0], sizeof(a->s[0]));
    a->ti.created = rnd_int();
    a->ti.expiration = rnd_int();
    a->ti.last_used = rnd_int();
    a->ti.active = rnd() % 2;
    a->ti.status = (Pat__V1__TokenStatus)(int32_t)rnd_int();
    a->ti.kind = (Pat__V1__TokenKind)(int32_t)rnd_int();
    a->ti.scim_endpoints_only = rnd() % 2;
    a->ti.created_by = rnd_str(a->s[1], sizeof(a->s[1]));
    pat__v1__verify_response__init(&a->r);
    /* The usual shape (one User in both fields), and the others. */
    switch (rnd() % 5) {
    case 0:
        a->ti.user = &a->u2;
        a->r.user = &a->u1;
        break;
    case 1:
        a->ti.user = NULL;
        a->r.user = &a->u1;
        break;
    case 2:
        a->r.user = NULL;
        a->ti.user = &a->u1;
        break;
    default:
        a->ti.user = a->r.user = &a->u1;
    }
    a->r.token = rnd() % 8 ? &a->ti : NULL;
}

/* Every VerifyResponse shape packs to protobuf-c's bytes. */
static void test_pack_verify_response_is_protobuf_c(void **state)
{
    (void)state;
    static answer_t a;
    static uint8_t mine[16384], theirs[16384];
    for (int k = 0; k < 20000; k++) {
        rnd_answer(&a);
        size_t n = protobuf_c_message_get_packed_size(&a.r.base);
        assert_true(n <= sizeof(theirs));
        protobuf_c_message_pack(&a.r.base, theirs);
        size_t m = wire_pack_answer(&a.r.base, mine, sizeof(mine), NULL);
        assert_int_equal(m, n);
        assert_memory_equal(mine, theirs, n);
    }
    /* The all-default message is empty, as protobuf-c packs it. */
    Pat__V1__VerifyResponse empty = PAT__V1__VERIFY_RESPONSE__INIT;
    assert_int_equal(wire_pack_answer(&empty.base, mine, sizeof(mine), NULL), 0);
}

/* Too small a buffer, or another message, declines (the caller packs with
 * protobuf-c) rather than writing past the end. */
static void test_pack_declines(void **state)
{
    (void)state;
    static answer_t a;
    uint8_t buf[64 + 16];
    memset(buf + 64, 0xaa, 16);
    do {
        rnd_answer(&a);
    } while (protobuf_c_message_get_packed_size(&a.r.base) <= 64);
    assert_int_equal(wire_pack_answer(&a.r.base, buf, 64, NULL), 0);
    for (int i = 64; i < 80; i++)
        assert_int_equal(buf[i], 0xaa);
    Pat__V1__User u = PAT__V1__USER__INIT;
    u.user_id = "x";
    assert_int_equal(wire_pack_answer(&u.base, buf, 64, NULL), 0);
}

/* A successful call's envelope is protobuf-c's Response. */
static void test_pack_ok_is_protobuf_c(void **state)
{
    (void)state;
    static uint8_t payload[400], mine[512], theirs[512];
    for (int k = 0; k < 5000; k++) {
        uint64_t id = k % 3 == 0 ? 0 : rnd() >> (rnd() % 64);
        size_t n = rnd() % 3 == 0 ? 0 : rnd() % sizeof(payload);
        for (size_t i = 0; i < n; i++)
            payload[i] = (uint8_t)rnd();
        Pat__V1__Status st = PAT__V1__STATUS__INIT;
        st.http_status = 200;
        Pat__V1__Response r = PAT__V1__RESPONSE__INIT;
        r.id = id;
        r.status = &st;
        r.payload.data = payload;
        r.payload.len = n;
        size_t want = pat__v1__response__pack(&r, theirs);
        size_t got = wire_pack_ok(id, payload, n, mine);
        assert_true(got <= WIRE_OK_OVERHEAD + n);
        assert_int_equal(got, want);
        assert_memory_equal(mine, theirs, want);
    }
}

/* A packed Request for method with req as its payload and optional extras. */
static size_t make_request(uint64_t id, const char *method, const Pat__V1__VerifyRequest *req,
                           int with_metadata, uint8_t *out)
{
    uint8_t payload[2048];
    size_t pn = pat__v1__verify_request__pack(req, payload);
    Pat__V1__Request r = PAT__V1__REQUEST__INIT;
    r.id = id;
    r.method = (char *)method;
    r.payload.data = payload;
    r.payload.len = pn;
    Pat__V1__Request__MetadataEntry e = PAT__V1__REQUEST__METADATA_ENTRY__INIT, *ep = &e;
    if (with_metadata) {
        e.key = "authorization";
        e.value = "Bearer x";
        r.n_metadata = 1;
        r.metadata = &ep;
    }
    return pat__v1__request__pack(&r, out);
}

static const char verify[] = "pat.v1.TokenService/Verify";

/* What the reader takes agrees with protobuf-c's unpack, field by field. */
static void expect_same(const uint8_t *frame, size_t len, const wire_verify_t *w)
{
    char why[256];
    assert_int_equal(wire_check(&pat__v1__request__descriptor, frame, len, why, sizeof(why)), 0);
    Pat__V1__Request *r = pat__v1__request__unpack(NULL, len, frame);
    assert_non_null(r);
    assert_int_equal(r->id, w->id);
    assert_string_equal(r->method, verify);
    assert_int_equal(r->n_metadata, 0);
    assert_int_equal(wire_check(&pat__v1__verify_request__descriptor, r->payload.data,
                                r->payload.len, why, sizeof(why)),
                     0);
    Pat__V1__VerifyRequest *v =
        pat__v1__verify_request__unpack(NULL, r->payload.len, r->payload.data);
    assert_non_null(v);
    assert_string_equal(v->bearer_token, w->bearer_token);
    assert_string_equal(v->path, w->path);
    assert_string_equal(v->client_ip, w->client_ip);
    assert_int_equal((int32_t)v->required_role, w->required_role);
    assert_int_equal(v->base.n_unknown_fields, 0);
    pat__v1__verify_request__free_unpacked(v, NULL);
    pat__v1__request__free_unpacked(r, NULL);
}

static void test_read_verify_agrees_with_protobuf_c(void **state)
{
    (void)state;
    static uint8_t frame[4096];
    static wire_verify_t w;
    char s[3][200];
    for (int k = 0; k < 20000; k++) {
        Pat__V1__VerifyRequest q = PAT__V1__VERIFY_REQUEST__INIT;
        q.bearer_token = rnd_str(s[0], sizeof(s[0]));
        q.path = rnd_str(s[1], sizeof(s[1]));
        q.client_ip = rnd_str(s[2], sizeof(s[2]));
        q.required_role = (Pat__V1__Role)(int32_t)rnd_int();
        uint64_t id = rnd() % 4 ? rnd() >> (rnd() % 64) : 0;
        size_t n = make_request(id, verify, &q, 0, frame);
        assert_int_equal(wire_read_verify(frame, n, &w), 1);
        expect_same(frame, n, &w);
    }
}

/* What it declines: metadata, another method, unknown fields, strings that
 * wire_check refuses, truncated or oversized frames. Each goes to the
 * generic path, which answers it as before. */
static void test_read_verify_declines(void **state)
{
    (void)state;
    static uint8_t frame[4096];
    static wire_verify_t w;
    Pat__V1__VerifyRequest q = PAT__V1__VERIFY_REQUEST__INIT;
    q.bearer_token = "patp_abc";
    q.path = "/api/x";
    size_t n = make_request(7, verify, &q, 0, frame);
    assert_int_equal(wire_read_verify(frame, n, &w), 1);
    assert_int_equal(w.id, 7);
    for (size_t cut = 0; cut < n; cut++) /* a truncated frame, wherever it is cut */
        if (cut != 0 && wire_read_verify(frame, cut, &w)) expect_same(frame, cut, &w);
    assert_int_equal(wire_read_verify(frame, make_request(7, verify, &q, 1, frame), &w), 0);
    assert_int_equal(
        wire_read_verify(frame, make_request(7, "pat.v1.TokenService/Health", &q, 0, frame), &w),
        0);
    assert_int_equal(
        wire_read_verify(frame, make_request(7, "pat.v1.TokenService/Verify2", &q, 0, frame), &w),
        0);
    /* An unknown field in the envelope, and in the payload. */
    n = make_request(7, verify, &q, 0, frame);
    frame[n] = 9 << 3 | 0;
    frame[n + 1] = 1;
    assert_int_equal(wire_read_verify(frame, n + 2, &w), 0);
    uint8_t req[] = {
        0x12, 0x1a, 'p', 'a', 't',  '.', 'v',  '1', '.', 'T',  'o', 'k',
        'e',  'n',  'S', 'e', 'r',  'v', 'i',  'c', 'e', '/',  'V', 'e',
        'r',  'i',  'f', 'y', 0x1a, 5,   0x0a, 1,   'a', 0x28, 1}; /* payload {1: "a", 5: 1} */
    assert_int_equal(wire_read_verify(req, sizeof(req), &w), 0);
    req[33] = 3 << 3 | 0; /* {1: "a", 3: 1}: a field it knows */
    assert_int_equal(wire_read_verify(req, sizeof(req), &w), 1);
    assert_int_equal(w.required_role, 1);
    expect_same(req, sizeof(req), &w);
    /* A NUL and invalid UTF-8 in the token: wire_check's refusals. */
    q.bearer_token = "pat\xff";
    assert_int_equal(wire_read_verify(frame, make_request(7, verify, &q, 0, frame), &w), 0);
    uint8_t nul[] = {0x12, 0x1a, 'p', 'a', 't',  '.', 'v',  '1', '.', 'T', 'o', 'k',
                     'e',  'n',  'S', 'e', 'r',  'v', 'i',  'c', 'e', '/', 'V', 'e',
                     'r',  'i',  'f', 'y', 0x1a, 4,   0x0a, 2,   'a', 0};
    assert_int_equal(wire_read_verify(nul, sizeof(nul), &w), 0);
    nul[33] = 'b';
    assert_int_equal(wire_read_verify(nul, sizeof(nul), &w), 1);
    assert_string_equal(w.bearer_token, "ab");
    /* A method with a NUL replaced by a later Verify method: wire_check
     * refuses the first, so the reader must too (found by fuzz_dispatch). */
    static const uint8_t two[] = {0x12, 3,   'a', 0,    'b', 0x12, 0x1a, 'p', 'a', 't',
                                  '.',  'v', '1', '.',  'T', 'o',  'k',  'e', 'n', 'S',
                                  'e',  'r', 'v', 'i',  'c', 'e',  '/',  'V', 'e', 'r',
                                  'i',  'f', 'y', 0x1a, 3,   0x0a, 1,    'a'};
    assert_int_equal(wire_read_verify(two, sizeof(two), &w), 0);
    assert_int_equal(wire_read_verify(two + 5, sizeof(two) - 5, &w), 1);
    /* A payload longer than the reader takes. */
    static char big[WIRE_VERIFY_MAX + 10];
    memset(big, 'a', sizeof(big) - 1);
    q.bearer_token = big;
    assert_int_equal(wire_read_verify(frame, make_request(7, verify, &q, 0, frame), &w), 0);
    /* An id whose tenth varint byte carries more than 64 bits. */
    uint8_t id[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    assert_int_equal(wire_read_verify(id, sizeof(id), &w), 0);
}

/* Random bytes and mutated frames: whenever the reader takes one,
 * protobuf-c and wire_check agree with everything it read. */
static void test_read_verify_mutations(void **state)
{
    (void)state;
    static uint8_t frame[4096];
    static wire_verify_t w;
    int taken = 0;
    for (int k = 0; k < 200000; k++) {
        Pat__V1__VerifyRequest q = PAT__V1__VERIFY_REQUEST__INIT;
        q.bearer_token = "patp_0123456789abcdefghij";
        q.path = "/api/2.0/clusters";
        q.required_role = (Pat__V1__Role)(rnd() % 4);
        size_t n = make_request(rnd() % 1000, verify, &q, 0, frame);
        int flips = 1 + (int)(rnd() % 3);
        for (int f = 0; f < flips; f++)
            frame[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
        if (rnd() % 4 == 0) n -= rnd() % n;
        if (wire_read_verify(frame, n, &w)) {
            expect_same(frame, n, &w);
            taken++;
        }
    }
    assert_true(taken > 1000); /* the property was checked on many frames */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_verify_response_is_protobuf_c),
        cmocka_unit_test(test_pack_declines),
        cmocka_unit_test(test_pack_ok_is_protobuf_c),
        cmocka_unit_test(test_read_verify_agrees_with_protobuf_c),
        cmocka_unit_test(test_read_verify_declines),
        cmocka_unit_test(test_read_verify_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
