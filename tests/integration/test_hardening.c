/* Regression tests from the security review, over a real socket against a
 * real patd, with frames encoded by hand where a C string cannot carry the
 * attack (a NUL byte inside a field):
 *  - a NUL in a name, a user id, a bearer token or a metadata key once cut
 *    the string short (abc\0def was stored as abc; alice\0evil changed
 *    alice's role; a token followed by \0garbage verified);
 *  - invalid UTF-8 in Verify.path was stored and made activity answers
 *    undecodable by Google's protobuf;
 *  - two x-act-as-user entries acted as whichever came first;
 *  - names with bidirectional overrides, zero-width characters, C1
 *    controls and line separators passed for other names (CVE-2021-42574);
 *  - a SCIM-only token passed for ..;/ parameters, overlong UTF-8 escapes
 *    and %u escapes, which another decoder reads as "..";
 *  - a duplicate_name reply cut a name in the middle of a character (R6);
 *  - a member learnt which user ids exist from ActivateUser's answers;
 *  - a revoked token of a deactivated service user could be restored;
 *  - a SCIM token kept working after its owner was downgraded (R1, R13);
 *  - the platform could act as a service user. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "pat/v1/pat.pb-c.h"

static patd_t p;

static int setup(void **state)
{
    (void)state;
    if (h_start(&p, 0, NULL) != 0) return -1;
    if (h_user(&p, "alice", 1) != 0 || h_user(&p, "root", 3) != 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_cleanup(&p);
    return 0;
}

/* ---------------------------------------------------------------- encoding */

typedef struct {
    uint8_t b[8192];
    size_t n;
} buf_t;

static void put_varint(buf_t *o, uint64_t v)
{
    while (v >= 0x80) {
        o->b[o->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o->b[o->n++] = (uint8_t)v;
}

static void put_bytes(buf_t *o, unsigned field, const void *data, size_t len)
{
    put_varint(o, (uint64_t)field << 3 | 2);
    put_varint(o, len);
    memcpy(o->b + o->n, data, len);
    o->n += len;
}

static void put_entry(buf_t *o, const char *k, size_t kl, const char *v)
{
    buf_t e = {.n = 0};
    put_bytes(&e, 1, k, kl);
    put_bytes(&e, 2, v, strlen(v));
    put_bytes(o, 4, e.b, e.n);
}

/* Sends one hand-encoded Request and returns the Response (caller frees). */
static Pat__V1__Response *send_raw(const char *method, const buf_t *payload, const buf_t *meta)
{
    buf_t r = {.n = 0};
    put_varint(&r, 1 << 3);
    put_varint(&r, 7);
    put_bytes(&r, 2, method, strlen(method));
    put_bytes(&r, 3, payload->b, payload->n);
    if (meta) {
        memcpy(r.b + r.n, meta->b, meta->n);
        r.n += meta->n;
    }
    pat_client_t *c = h_connect(&p);
    assert_non_null(c);
    uint8_t frame[8200];
    frame[0] = (uint8_t)(r.n >> 24);
    frame[1] = (uint8_t)(r.n >> 16);
    frame[2] = (uint8_t)(r.n >> 8);
    frame[3] = (uint8_t)r.n;
    memcpy(frame + 4, r.b, r.n);
    assert_int_equal(pat_send_raw(c, frame, r.n + 4), 0);
    Pat__V1__Response *resp = NULL;
    assert_int_equal(pat_recv(c, &resp), 0);
    pat_close(c);
    return resp;
}

static void platform_meta(buf_t *m, const char *act_as)
{
    char auth[256];
    snprintf(auth, sizeof(auth), "Platform %s", p.key);
    put_entry(m, "authorization", 13, auth);
    if (act_as) put_entry(m, "x-act-as-user", 13, act_as);
}

static void assert_invalid_field(Pat__V1__Response *r, const char *mentions)
{
    assert_non_null(r);
    assert_int_equal(r->status->code, PAT__V1__CODE__INVALID_ARGUMENT);
    assert_string_equal(r->status->reason, "invalid_field");
    if (mentions && strstr(r->status->message, mentions) == NULL)
        fail_msg("message '%s' does not mention '%s'", r->status->message, mentions);
    pat__v1__response__free_unpacked(r, NULL);
}

/* ---------------------------------------------------------------- NUL bytes */

static void test_nul_in_a_token_name_is_refused_not_cut(void **state)
{
    (void)state;
    buf_t pl = {.n = 0}, m = {.n = 0};
    put_bytes(&pl, 1, "abc\0def", 7);
    platform_meta(&m, "alice");
    assert_invalid_field(send_raw("pat.v1.TokenService/CreateToken", &pl, &m),
                         "name contains a NUL byte");
}

static void test_nul_in_a_user_id_does_not_reach_another_user(void **state)
{
    (void)state;
    buf_t u = {.n = 0}, pl = {.n = 0}, m = {.n = 0};
    put_bytes(&u, 1, "alice\0evil", 10);
    put_varint(&u, 5 << 3);
    put_varint(&u, 3); /* ROLE_ADMIN */
    put_bytes(&pl, 1, u.b, u.n);
    platform_meta(&m, NULL);
    assert_invalid_field(send_raw("pat.v1.TokenService/UpsertUser", &pl, &m),
                         "user.user_id contains a NUL byte");
    /* alice is still a member */
    pat_client_t *c = h_platform(&p, NULL);
    Pat__V1__GetUserRequest g = PAT__V1__GET_USER_REQUEST__INIT;
    g.user_id = "alice";
    Pat__V1__User *out = NULL;
    pat_status_t st;
    assert_int_equal(h_call(c, "GetUser", &g.base, &pat__v1__user__descriptor, &out, &st), 0);
    assert_int_equal(out->role, PAT__V1__ROLE__ROLE_MEMBER);
    protobuf_c_message_free_unpacked(&out->base, NULL);
    pat_close(c);
}

static void test_nul_after_a_valid_token_does_not_verify(void **state)
{
    (void)state;
    char *tok = h_create(&p, "alice", "nul-after", 30, NULL, NULL);
    assert_non_null(tok);
    char bearer[512];
    size_t tl = strlen(tok);
    memcpy(bearer, tok, tl);
    memcpy(bearer + tl, "\0garbage", 8);
    buf_t pl = {.n = 0};
    put_bytes(&pl, 1, bearer, tl + 8);
    assert_invalid_field(send_raw("pat.v1.TokenService/Verify", &pl, NULL),
                         "bearer_token contains a NUL byte");
    free(tok);
}

static void test_nul_in_a_metadata_key_is_refused(void **state)
{
    (void)state;
    buf_t pl = {.n = 0}, m = {.n = 0}; /* an empty ListUsersRequest */
    char auth[256];
    snprintf(auth, sizeof(auth), "Platform %s", p.key);
    put_entry(&m, "authorization\0", 14, auth);
    assert_invalid_field(send_raw("pat.v1.TokenService/ListUsers", &pl, &m),
                         "metadata.key contains a NUL byte");
    buf_t m2 = {.n = 0};
    platform_meta(&m2, NULL);
    put_entry(&m2, "x-act-as-user\0junk", 18, "alice");
    assert_invalid_field(send_raw("pat.v1.TokenService/ListUsers", &pl, &m2),
                         "metadata.key contains a NUL byte");
}

/* ---------------------------------------------------------------- UTF-8 */

static void test_invalid_utf8_in_verify_path_and_client_ip_is_refused(void **state)
{
    (void)state;
    char *tok = h_create(&p, "alice", "utf8", 30, NULL, NULL);
    buf_t pl = {.n = 0};
    put_bytes(&pl, 1, tok, strlen(tok));
    put_bytes(&pl, 2, "/api/aaa\xc3", 9);
    assert_invalid_field(send_raw("pat.v1.TokenService/Verify", &pl, NULL),
                         "path is not valid UTF-8");
    buf_t pl2 = {.n = 0};
    put_bytes(&pl2, 1, tok, strlen(tok));
    put_bytes(&pl2, 4, "10.0.0.\xff", 8);
    assert_invalid_field(send_raw("pat.v1.TokenService/Verify", &pl2, NULL),
                         "client_ip is not valid UTF-8");
    free(tok);
}

static void test_two_act_as_entries_are_refused_whatever_their_order(void **state)
{
    (void)state;
    buf_t pl = {.n = 0}; /* an empty ListTokensRequest */
    const char *orders[2][2] = {{"X-Act-As-User", "x-act-as-user"},
                                {"x-act-as-user", "X-ACT-AS-USER"}};
    for (int i = 0; i < 2; i++) {
        buf_t m = {.n = 0};
        char auth[256];
        snprintf(auth, sizeof(auth), "Platform %s", p.key);
        put_entry(&m, "authorization", 13, auth);
        put_entry(&m, orders[i][0], 13, "alice");
        put_entry(&m, orders[i][1], 13, "root");
        assert_invalid_field(send_raw("pat.v1.TokenService/ListTokens", &pl, &m),
                             "more than one x-act-as-user");
    }
    buf_t m = {.n = 0};
    put_entry(&m, "authorization", 13, "Bearer a");
    put_entry(&m, "Authorization", 13, "Bearer b");
    assert_invalid_field(send_raw("pat.v1.TokenService/ListTokens", &pl, &m),
                         "more than one authorization");
}

static void test_names_that_pass_for_other_names_are_refused(void **state)
{
    (void)state;
    pat_client_t *c = h_platform(&p, "alice");
    const char *names[] = {
        "invoice\xe2\x80\xae"
        "fdp.exe",             /* U+202E right-to-left override */
        "deploy\xe2\x81\xa6x", /* U+2066 left-to-right isolate */
        "ci\xe2\x80\x8b",      /* U+200B zero-width space */
        "ci\xef\xbb\xbf",      /* U+FEFF */
        "ci\xc2\x85next",      /* U+0085 next line (C1) */
        "ci\xc2\x9b",          /* U+009B (C1 CSI) */
        "a\xe2\x80\xa8"
        "b", /* U+2028 line separator */
        "a\xe2\x80\xa9"
        "b", /* U+2029 paragraph separator */
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        pat_status_t st;
        char *t = h_create_with(c, names[i], 30, 0, 0, NULL, NULL, &st);
        if (t != NULL) fail_msg("name %zu was accepted", i);
        assert_string_equal(st.reason, "invalid_field");
    }
    pat_status_t st;
    char *ok = h_create_with(c, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", 30, 0, 0, NULL, NULL, &st);
    assert_non_null(ok); /* ordinary non-ASCII names still work */
    free(ok);
    pat_close(c);
}

/* ---------------------------------------------------------------- SCIM paths */

static void test_R5_scim_path_forms_that_decode_to_dot_dot_are_refused(void **state)
{
    (void)state;
    pat_client_t *c = h_platform(&p, "root");
    pat_status_t st;
    char *scim = h_create_with(c, "scim-forms", 30, 1, 0, NULL, NULL, &st);
    assert_non_null(scim);
    pat_close(c);
    const char *bad[] = {
        "/scim/v2/..;/..;/admin",
        "/scim/v2/.;x/admin",
        "/scim/v2/%c0%ae%c0%ae/admin",
        "/scim/v2/%u002e%u002e/admin",
        "/scim/v2/%252e%252e/admin",
        "/scim/v2/Users%zz",
        ("/scim/v2/Us\x01" /* split: \x01e would be one escape */
         "ers"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        Pat__V1__VerifyResponse *out = NULL;
        int code = h_verify(&p, scim, bad[i], 0, &out, &st);
        if (code == 0) fail_msg("SCIM token accepted on %s", bad[i]);
        assert_string_equal(st.reason, "invalid_field");
    }
    buf_t pl = {.n = 0};
    put_bytes(&pl, 1, scim, strlen(scim));
    put_bytes(&pl, 2, "/scim/v2/Users\0/../../../admin", 30);
    assert_invalid_field(send_raw("pat.v1.TokenService/Verify", &pl, NULL),
                         "path contains a NUL byte");
    assert_int_equal(h_verify(&p, scim, "/scim/v2/Users;charset=x", 0, NULL, &st), 0);
    assert_int_equal(h_verify(&p, scim, "/scim/v2/Us%65rs", 0, NULL, &st), 0);
    free(scim);
}

/* ---------------------------------------------------------------- messages */

static void test_R6_duplicate_name_reply_is_cut_between_characters(void **state)
{
    (void)state;
    char name[80];
    memset(name, 'a', 63);
    memcpy(name + 63, "\xc3\xa9", 3); /* byte 64 starts a two-byte character */
    pat_client_t *c = h_platform(&p, "alice");
    pat_status_t st;
    char *t = h_create_with(c, name, 30, 0, 0, NULL, NULL, &st);
    assert_non_null(t);
    free(t);
    assert_null(h_create_with(c, name, 30, 0, 0, NULL, NULL, &st));
    assert_string_equal(st.reason, "duplicate_name");
    const unsigned char *m = (const unsigned char *)st.message;
    for (size_t i = 0; m[i]; i++)
        if (m[i] == 0xc3) assert_int_equal(m[i + 1], 0xa9); /* never a lone lead byte */
    assert_null(strstr(st.message, "\xc3'"));
    pat_close(c);
}

/* ---------------------------------------------------------------- authorization */

static char *service_user(const char *name)
{
    pat_client_t *c = h_platform(&p, "root");
    Pat__V1__CreateServiceUserRequest r = PAT__V1__CREATE_SERVICE_USER_REQUEST__INIT;
    r.user_name = (char *)name;
    Pat__V1__User *u = NULL;
    pat_status_t st;
    assert_int_equal(h_call(c, "CreateServiceUser", &r.base, &pat__v1__user__descriptor, &u, &st),
                     0);
    char *id = strdup(u->user_id);
    protobuf_c_message_free_unpacked(&u->base, NULL);
    pat_close(c);
    return id;
}

static void set_active(pat_client_t *c, const char *user_id, int active, pat_status_t *st)
{
    Pat__V1__DeactivateUserRequest r = PAT__V1__DEACTIVATE_USER_REQUEST__INIT;
    r.user_id = (char *)user_id;
    h_call(c, active ? "ActivateUser" : "DeactivateUser", &r.base, &pat__v1__user__descriptor, NULL,
           st);
}

static void test_activate_answers_the_same_whether_or_not_the_user_exists(void **state)
{
    (void)state;
    char *tok = h_create(&p, "alice", "oracle", 30, NULL, NULL);
    pat_client_t *member = h_bearer(&p, tok);
    pat_status_t a, b;
    for (int active = 0; active < 2; active++) {
        set_active(member, "root", active, &a);
        set_active(member, "no-such-user", active, &b);
        assert_int_equal(a.code, b.code);
        assert_string_equal(a.reason, b.reason);
        assert_string_equal(a.message, b.message);
        assert_string_equal(a.reason, "admin_only");
    }
    pat_close(member);
    char *rtok = h_create(&p, "root", "oracle-admin", 30, NULL, NULL);
    pat_client_t *admin = h_bearer(&p, rtok);
    set_active(admin, "alice", 0, &a); /* a human: not an Admin's to manage */
    set_active(admin, "no-such-user", 0, &b);
    assert_string_equal(a.reason, "user_not_found");
    assert_string_equal(b.reason, "user_not_found");
    pat_close(admin);
    free(tok);
    free(rtok);
}

static void test_a_revoked_token_is_not_restored_while_its_user_is_deactivated(void **state)
{
    (void)state;
    char *bot = service_user("restore-bot");
    pat_client_t *admin = h_platform(&p, "root");
    pat_status_t st;
    uint64_t id;
    char *t = h_create_with(admin, "deploy", 30, 0, PAT__V1__TOKEN_KIND__TOKEN_KIND_SERVICE, bot,
                            &id, &st);
    assert_non_null(t);
    assert_int_equal(h_update(admin, id, 1, NULL, &st), 0);
    set_active(admin, bot, 0, &st);
    assert_int_equal(st.code, 0);
    assert_int_not_equal(h_update(admin, id, 0, NULL, &st), 0);
    assert_string_equal(st.reason, "user_inactive");
    set_active(admin, bot, 1, &st);
    assert_int_equal(h_update(admin, id, 0, NULL, &st), 0); /* once active again, it may */
    assert_int_equal(h_verify(&p, t, "/api", 0, NULL, &st), 0);
    pat_close(admin);
    free(t);
    free(bot);
}

static void test_R13_a_scim_token_stops_when_its_user_is_no_longer_an_admin(void **state)
{
    (void)state;
    pat_client_t *admin = h_platform(&p, "root");
    pat_status_t st;
    char *scim = h_create_with(admin, "scim-downgrade", 30, 1, 0, NULL, NULL, &st);
    assert_non_null(scim);
    pat_close(admin);
    assert_int_equal(h_verify(&p, scim, "/scim/v2/Users", 0, NULL, &st), 0);
    assert_int_equal(h_user(&p, "root", 1), 0); /* downgraded to member */
    assert_int_not_equal(h_verify(&p, scim, "/scim/v2/Users", 0, NULL, &st), 0);
    assert_string_equal(st.reason, "insufficient_role");
    assert_int_equal(h_user(&p, "root", 3), 0);
    assert_int_equal(h_verify(&p, scim, "/scim/v2/Users", 0, NULL, &st), 0);
    free(scim);
}

static void test_the_platform_acts_for_humans_only(void **state)
{
    (void)state;
    char *bot = service_user("act-bot");
    pat_client_t *c = h_platform(&p, bot);
    pat_status_t st;
    char *t = h_create_with(c, "made-as-bot", 30, 0, 0, NULL, NULL, &st);
    assert_null(t);
    assert_string_equal(st.reason, "service_user_caller");
    pat_close(c);
    free(bot);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_in_a_token_name_is_refused_not_cut),
        cmocka_unit_test(test_nul_in_a_user_id_does_not_reach_another_user),
        cmocka_unit_test(test_nul_after_a_valid_token_does_not_verify),
        cmocka_unit_test(test_nul_in_a_metadata_key_is_refused),
        cmocka_unit_test(test_invalid_utf8_in_verify_path_and_client_ip_is_refused),
        cmocka_unit_test(test_two_act_as_entries_are_refused_whatever_their_order),
        cmocka_unit_test(test_names_that_pass_for_other_names_are_refused),
        cmocka_unit_test(test_R5_scim_path_forms_that_decode_to_dot_dot_are_refused),
        cmocka_unit_test(test_R6_duplicate_name_reply_is_cut_between_characters),
        cmocka_unit_test(test_activate_answers_the_same_whether_or_not_the_user_exists),
        cmocka_unit_test(test_a_revoked_token_is_not_restored_while_its_user_is_deactivated),
        cmocka_unit_test(test_R13_a_scim_token_stops_when_its_user_is_no_longer_an_admin),
        cmocka_unit_test(test_the_platform_acts_for_humans_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
