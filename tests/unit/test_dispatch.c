/* Unit tests of dispatch.c and service.c's pure helpers, over a real store
 * in a temporary directory: method lookup, envelope and payload errors, the
 * error table, path normalization for SCIM (R5) and text validation (R6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "framed.h"
#include "svc_fixture.h"

static int setup(void **state)
{
    fixture_t *f = svc_fixture_new();
    if (f == NULL) return -1;
    svc_add_scim_prefix(&f->svc, "/scim/v2");
    svc_add_scim_prefix(&f->svc, "/api/scim/v2");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    return svc_fixture_free(*state);
}

/* Packs a Request and runs it through framed_handle(). */
static Pat__V1__Response *call(fixture_t *f, uint64_t id, const char *method,
                               const ProtobufCMessage *payload, const char *auth)
{
    Pat__V1__Request r = PAT__V1__REQUEST__INIT;
    r.id = id;
    r.method = (char *)method;
    uint8_t pbuf[4096];
    if (payload) {
        r.payload.len = protobuf_c_message_pack(payload, pbuf);
        r.payload.data = pbuf;
    }
    Pat__V1__Request__MetadataEntry md = PAT__V1__REQUEST__METADATA_ENTRY__INIT, *mdp = &md;
    if (auth) {
        md.key = "Authorization"; /* keys are matched without regard to case */
        md.value = (char *)auth;
        r.n_metadata = 1;
        r.metadata = &mdp;
    }
    uint8_t buf[8192];
    size_t len = pat__v1__request__pack(&r, buf);
    size_t out_len;
    uint8_t *out = framed_handle(&f->svc, buf, len, &out_len);
    Pat__V1__Response *resp = pat__v1__response__unpack(NULL, out_len, out);
    free(out);
    assert_non_null(resp);
    assert_non_null(resp->status);
    return resp;
}

static void test_health_is_found_through_the_descriptor(void **state)
{
    fixture_t *f = *state;
    Pat__V1__HealthRequest h = PAT__V1__HEALTH_REQUEST__INIT;
    Pat__V1__Response *r = call(f, 41, "pat.v1.TokenService/Health", &h.base, NULL);
    assert_int_equal(r->id, 41);
    assert_int_equal(r->status->code, 0);
    assert_int_equal(r->status->http_status, 200);
    Pat__V1__HealthResponse *hr =
        pat__v1__health_response__unpack(NULL, r->payload.len, r->payload.data);
    assert_non_null(hr);
    assert_int_equal(hr->status, PAT__V1__SERVING_STATUS__SERVING_STATUS_SERVING);
    assert_string_equal(hr->version, PATD_VERSION);
    pat__v1__health_response__free_unpacked(hr, NULL);
    pat__v1__response__free_unpacked(r, NULL);
}

static void test_unknown_method_is_unimplemented_501(void **state)
{
    fixture_t *f = *state;
    const char *names[] = {"pat.v1.TokenService/Nope",
                           "pat.v1.Other/Health",
                           "Health",
                           "",
                           "pat.v1.TokenService/",
                           "/Health",
                           "pat.v1.TestingService/AdvanceClock"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        Pat__V1__Response *r = call(f, 7, names[i], NULL, NULL);
        assert_int_equal(r->id, 7);
        assert_int_equal(r->status->code, PAT__V1__CODE__UNIMPLEMENTED);
        assert_int_equal(r->status->http_status, 501);
        assert_string_equal(r->status->reason, "unknown_method");
        pat__v1__response__free_unpacked(r, NULL);
    }
}

static void test_undecodable_envelope_and_payload_are_400(void **state)
{
    fixture_t *f = *state;
    /* Envelope: id 9 (field 1 varint), then a truncated length-delimited field. */
    uint8_t bad[] = {0x08, 0x09, 0x12, 0x50, 'x'};
    size_t out_len;
    uint8_t *out = framed_handle(&f->svc, bad, sizeof(bad), &out_len);
    Pat__V1__Response *r = pat__v1__response__unpack(NULL, out_len, out);
    free(out);
    assert_int_equal(r->id, 9);
    assert_int_equal(r->status->code, PAT__V1__CODE__INVALID_ARGUMENT);
    assert_int_equal(r->status->http_status, 400);
    assert_string_equal(r->status->reason, "bad_request");
    pat__v1__response__free_unpacked(r, NULL);

    /* Valid envelope, payload that is not a VerifyRequest. */
    Pat__V1__Request req = PAT__V1__REQUEST__INIT;
    uint8_t junk[] = {0xff, 0xff, 0xff};
    req.id = 12;
    req.method = "pat.v1.TokenService/Verify";
    req.payload.data = junk;
    req.payload.len = sizeof(junk);
    uint8_t buf[256];
    size_t len = pat__v1__request__pack(&req, buf);
    out = framed_handle(&f->svc, buf, len, &out_len);
    r = pat__v1__response__unpack(NULL, out_len, out);
    free(out);
    assert_int_equal(r->id, 12);
    assert_int_equal(r->status->code, PAT__V1__CODE__INVALID_ARGUMENT);
    assert_non_null(strstr(r->status->message, "VerifyRequest"));
    pat__v1__response__free_unpacked(r, NULL);
}

static void test_credentials_are_checked(void **state)
{
    fixture_t *f = *state;
    Pat__V1__ListUsersRequest lu = PAT__V1__LIST_USERS_REQUEST__INIT;
    Pat__V1__Response *r = call(f, 1, "pat.v1.TokenService/ListUsers", &lu.base, NULL);
    assert_int_equal(r->status->code, PAT__V1__CODE__UNAUTHENTICATED);
    assert_string_equal(r->status->reason, "missing_credential");
    pat__v1__response__free_unpacked(r, NULL);
    r = call(f, 1, "pat.v1.TokenService/ListUsers", &lu.base,
             "Platform wrong-key-wrong-key-wrong-key");
    assert_string_equal(r->status->reason, "bad_platform_key");
    assert_null(strstr(r->status->message, "0123456789abcdef"));
    pat__v1__response__free_unpacked(r, NULL);
    r = call(f, 1, "pat.v1.TokenService/ListUsers", &lu.base,
             "platform 0123456789abcdef0123456789abcdef");
    assert_int_equal(r->status->code, 0);
    pat__v1__response__free_unpacked(r, NULL);
    r = call(f, 1, "pat.v1.TokenService/ListUsers", &lu.base, "Bearer patp_nonsense");
    assert_string_equal(r->status->reason, "malformed_token");
    pat__v1__response__free_unpacked(r, NULL);
}

static void test_peek_id(void **state)
{
    (void)state;
    Pat__V1__Request req = PAT__V1__REQUEST__INIT;
    req.id = 300000;
    req.method = "x";
    uint8_t buf[64];
    size_t len = pat__v1__request__pack(&req, buf);
    assert_int_equal(framed_peek_id(buf, len), 300000);
    assert_int_equal(framed_peek_id((const uint8_t *)"\xff\xff", 2), 0);
}

/* The table in docs/semantics.md: each code has its HTTP status. */
static void test_error_table_matches_semantics_R_status_codes(void **state)
{
    (void)state;
    for (int e = 0; e < PAT_E__COUNT; e++) {
        uint32_t code = pat_err_code((pat_err_t)e), http = pat_err_http((pat_err_t)e);
        switch (code) {
        case 0:
            assert_int_equal(http, 200);
            break;
        case 3:
        case 9:
            /* 415: the REST API's body that is not JSON, a malformed
             * request that HTTP has its own status for. */
            assert_int_equal(http, e == PAT_E_UNSUPPORTED_MEDIA_TYPE ? 415 : 400);
            break;
        case 16:
            assert_int_equal(http, 401);
            break;
        case 7:
            assert_int_equal(http, 403);
            break;
        case 5:
            assert_int_equal(http, 404);
            break;
        case 6:
            assert_int_equal(http, 409);
            break;
        case 8:
            assert_true(http == 429 || http == 503 || http == 413);
            break;
        case 12:
            assert_int_equal(http, 501);
            break;
        case 13:
            assert_int_equal(http, 500);
            break;
        case 14:
            assert_int_equal(http, 503);
            break;
        default:
            fail_msg("code %u is not in the semantics table", code);
        }
        if (e != PAT_E_OK) assert_true(strlen(pat_err_reason((pat_err_t)e)) > 0);
    }
}

static void test_R5_path_normalization(void **state)
{
    fixture_t *f = *state;
    struct {
        const char *in;
        const char *out; /* NULL: refused */
        int scim;
    } cases[] = {
        {"/scim/v2/Users", "/scim/v2/Users", 1},
        {"/scim/v2", "/scim/v2", 1},
        {"/scim/v2/", "/scim/v2", 1},
        {"/api/scim/v2/Groups?filter=x", "/api/scim/v2/Groups", 1},
        {"/scim/v2x", "/scim/v2x", 0},
        {"/scim/v2x/Users", "/scim/v2x/Users", 0},
        {"/scim/v2/../../api/admin", "/api/admin", 0},
        {"/scim/v2/%2e%2e/%2E%2E/api/admin", "/api/admin", 0},
        {"/scim//v2/./Users", "/scim/v2/Users", 1},
        {"/x/../scim/v2/Users", "/scim/v2/Users", 1},
        {"/scim/v2%2fUsers", NULL, 0},
        {"/scim/v2\\..\\admin", NULL, 0},
        {"/..", NULL, 0},
        {"scim/v2/Users", NULL, 0},
        {"/api/scim/v1/Users", "/api/scim/v1/Users", 0},
        {"/#/scim/v2", "/", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[SVC_PATH_MAX + 1];
        int rc = svc_normalize_path(cases[i].in, out, sizeof(out));
        if (cases[i].out == NULL) {
            assert_int_equal(rc, -1);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_string_equal(out, cases[i].out);
        assert_int_equal(svc_path_is_scim(&f->svc, out), cases[i].scim);
    }
}

/* R5: the shortcut for paths that are already normal answers as the
 * general loop does, for random paths over the bytes that matter to it
 * (dots, slashes, escapes, parameters, query, non-ASCII, controls). */
static void test_R5_path_shortcut_is_the_general_rule(void **state)
{
    (void)state;
    static const char *parts[] = {"a", "b",  ".",        "/",    "%2e", "%2F", "%41", ";",  "?",
                                  "#", "\\", "\xc3\xa9", "\x01", "~",   "2.0", "..",  "-_", "%"};
    uint64_t x = 88172645463325252ull;
    char in[64], a[SVC_PATH_MAX + 1], b[SVC_PATH_MAX + 1];
    for (int k = 0; k < 200000; k++) {
        size_t o = 0;
        in[o++] = '/';
        int n = (int)(x % 9);
        for (int j = 0; j < n; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            const char *p = parts[x % (sizeof(parts) / sizeof(parts[0]))];
            size_t l = strlen(p);
            if (o + l >= sizeof(in)) break;
            memcpy(in + o, p, l);
            o += l;
        }
        in[o] = '\0';
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t cap = x % 8 == 0 ? o : sizeof(a); /* sometimes one byte short */
        int ra = svc_normalize_path(in, a, cap), rb = svc_normalize_path_general(in, b, cap);
        assert_int_equal(ra, rb);
        if (ra == 0) assert_string_equal(a, b);
    }
}

static void test_R6_name_text_validation(void **state)
{
    (void)state;
    assert_true(svc_valid_text("ci-token", 8));
    assert_true(svc_valid_text("caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x94\x91", 14));
    assert_false(svc_valid_text("a\nb", 3));
    assert_false(svc_valid_text("a\x7f", 2));
    assert_false(svc_valid_text("\xc3", 1));             /* truncated */
    assert_false(svc_valid_text("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(svc_valid_text("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(svc_valid_text("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(svc_valid_text("\xff", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_is_found_through_the_descriptor, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method_is_unimplemented_501, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_envelope_and_payload_are_400, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_credentials_are_checked, setup, teardown),
        cmocka_unit_test(test_peek_id),
        cmocka_unit_test(test_error_table_matches_semantics_R_status_codes),
        cmocka_unit_test_setup_teardown(test_R5_path_normalization, setup, teardown),
        cmocka_unit_test(test_R5_path_shortcut_is_the_general_rule),
        cmocka_unit_test(test_R6_name_text_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
