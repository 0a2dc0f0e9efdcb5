/* Unit tests of the prepared Verify answers (svc_verify.c, service.h) over
 * a real store, on this thread as the loop thread: a hot Verify answered
 * from a prepared slot has this use's time (R15), and no prepared answer
 * outlives a change that the cache was told of: revoke (R11), expiry
 * (R12), a downgrade or deactivation of the user (R13, R14), SCIM paths and
 * roles (R5), a cluster fence, and a time whose varint is longer. Built
 * with the test clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "clock.h"
#include "framed.h"
#include "svc_fixture.h"

static int setup(void **state)
{
    fixture_t *f = svc_fixture_new();
    if (f == NULL) return -1;
    svc_add_scim_prefix(&f->svc, "/scim/v2");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    return svc_fixture_free(*state);
}

/* Runs a Request through framed_handle (inline_only: as the loop thread
 * would, NULL when it needs a worker) and returns the answer's status and
 * payload. */
static Pat__V1__Response *call(fixture_t *f, const char *method, const ProtobufCMessage *payload,
                               const char *act_as, int inline_only)
{
    Pat__V1__Request r = PAT__V1__REQUEST__INIT;
    r.id = 7;
    r.method = (char *)method;
    uint8_t pbuf[4096];
    r.payload.len = protobuf_c_message_pack(payload, pbuf);
    r.payload.data = pbuf;
    Pat__V1__Request__MetadataEntry md[2] = {PAT__V1__REQUEST__METADATA_ENTRY__INIT,
                                             PAT__V1__REQUEST__METADATA_ENTRY__INIT};
    Pat__V1__Request__MetadataEntry *mdp[2] = {&md[0], &md[1]};
    if (strcmp(method, "pat.v1.TokenService/Verify") != 0) {
        md[0].key = "authorization";
        md[0].value = "Platform " SVC_FIXTURE_KEY;
        md[1].key = "x-act-as-user";
        md[1].value = (char *)act_as;
        r.n_metadata = act_as ? 2 : 1;
        r.metadata = mdp;
    }
    uint8_t buf[8192];
    size_t len = pat__v1__request__pack(&r, buf), out_len;
    uint8_t *out = inline_only ? framed_handle_inline(&f->svc, buf, len, &out_len)
                               : framed_handle(&f->svc, buf, len, &out_len);
    if (out == NULL) return NULL;
    Pat__V1__Response *resp = pat__v1__response__unpack(NULL, out_len, out);
    free(out);
    assert_non_null(resp);
    assert_non_null(resp->status);
    return resp;
}

static void upsert(fixture_t *f, const char *id, Pat__V1__Role role)
{
    Pat__V1__User u = PAT__V1__USER__INIT;
    u.user_id = (char *)id;
    u.user_name = (char *)id;
    u.email = "someone@example.com";
    u.role = role;
    u.active = 1;
    Pat__V1__UpsertUserRequest in = PAT__V1__UPSERT_USER_REQUEST__INIT;
    in.user = &u;
    Pat__V1__Response *r = call(f, "pat.v1.TokenService/UpsertUser", &in.base, NULL, 0);
    assert_int_equal(r->status->code, 0);
    pat__v1__response__free_unpacked(r, NULL);
}

/* A new token of user's: its bearer token in out, its id returned. */
static uint64_t create(fixture_t *f, const char *user, int days, int scim, char *out)
{
    Pat__V1__CreateTokenRequest in = PAT__V1__CREATE_TOKEN_REQUEST__INIT;
    in.name = "ci";
    if (days) {
        in.expiry_case = PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY_EXPIRES_IN_DAYS;
        in.expires_in_days = days;
    }
    in.scim_endpoints_only = scim;
    Pat__V1__Response *r = call(f, "pat.v1.TokenService/CreateToken", &in.base, user, 0);
    assert_int_equal(r->status->code, 0);
    Pat__V1__CreateTokenResponse *c =
        pat__v1__create_token_response__unpack(NULL, r->payload.len, r->payload.data);
    assert_non_null(c);
    strcpy(out, c->bearer_token);
    uint64_t id = c->token->id;
    pat__v1__create_token_response__free_unpacked(c, NULL);
    pat__v1__response__free_unpacked(r, NULL);
    return id;
}

/* A Verify as the loop thread answers it (a worker's if it must read):
 * the reason ("" on success) and, on success, last_used. */
static const char *verify(fixture_t *f, const char *tok, const char *path, Pat__V1__Role role,
                          int64_t *last_used)
{
    static char reason[64];
    Pat__V1__VerifyRequest in = PAT__V1__VERIFY_REQUEST__INIT;
    in.bearer_token = (char *)tok;
    in.path = (char *)path;
    in.required_role = role;
    Pat__V1__Response *r = call(f, "pat.v1.TokenService/Verify", &in.base, NULL, 1);
    if (r == NULL) r = call(f, "pat.v1.TokenService/Verify", &in.base, NULL, 0);
    snprintf(reason, sizeof(reason), "%s", r->status->reason);
    if (r->status->code == 0) {
        Pat__V1__VerifyResponse *v =
            pat__v1__verify_response__unpack(NULL, r->payload.len, r->payload.data);
        assert_non_null(v);
        assert_non_null(v->token);
        assert_non_null(v->user);
        assert_non_null(v->token->user);
        assert_string_equal(v->user->user_id, v->token->user->user_id);
        if (last_used) *last_used = v->token->last_used;
        pat__v1__verify_response__free_unpacked(v, NULL);
    }
    pat__v1__response__free_unpacked(r, NULL);
    return reason;
}

/* 1 if the service has a prepared answer for this Verify now. */
static int prepared(fixture_t *f, const char *tok, const char *path, Pat__V1__Role role)
{
    Pat__V1__VerifyRequest in = PAT__V1__VERIFY_REQUEST__INIT;
    in.bearer_token = (char *)tok;
    in.path = (char *)path;
    in.required_role = role;
    svc_prepared_t p;
    return svc_verify_prepared(&f->svc, &in, SVC_FORM_FRAMED, &p);
}

/* Verifies until the answer is prepared (the first reads, the next comes
 * from the cache and prepares): fails if it never is. */
static void warm(fixture_t *f, const char *tok, const char *path)
{
    for (int i = 0; i < 3 && !prepared(f, tok, path, 0); i++)
        assert_string_equal(verify(f, tok, path, 0, NULL), "");
    assert_true(prepared(f, tok, path, 0));
}

/* A user, a token of theirs (its bearer token in tok) and its answer
 * prepared on path: the token's id. */
static uint64_t fresh(fixture_t *f, const char *user, Pat__V1__Role role, int days, int scim,
                      const char *path, char *tok)
{
    upsert(f, user, role);
    uint64_t id = create(f, user, days, scim, tok);
    warm(f, tok, path);
    return id;
}

static void test_R15_a_prepared_answer_carries_this_uses_time(void **state)
{
    fixture_t *f = *state;
    char tok[128];
    fresh(f, "alice", PAT__V1__ROLE__ROLE_MEMBER, 0, 0, "/api/x", tok);
    for (int i = 0; i < 3; i++) {
        clock_advance(5);
        int64_t lu = 0, t0 = clock_now_ms();
        assert_true(prepared(f, tok, "/api/x", 0));
        assert_string_equal(verify(f, tok, "/api/x", 0, &lu), "");
        /* The time of this use: read between the clock before and after. */
        assert_in_range(lu, t0, clock_now_ms());
    }
    /* A time one varint byte longer (after 2109) is not written over the
     * old one: the answer is packed again, and prepared again. */
    clock_advance((INT64_C(1) << 42) - clock_now_ms() + 1000);
    assert_false(prepared(f, tok, "/api/x", 0));
    int64_t lu = 0, t0 = clock_now_ms();
    assert_string_equal(verify(f, tok, "/api/x", 0, &lu), "");
    assert_in_range(lu, t0, clock_now_ms());
    assert_true(prepared(f, tok, "/api/x", 0));
}

static void test_R11_revoke_ends_a_prepared_answer(void **state)
{
    fixture_t *f = *state;
    char tok[128];
    uint64_t id = fresh(f, "bob", PAT__V1__ROLE__ROLE_MEMBER, 0, 0, "", tok);
    Pat__V1__UpdateTokenRequest up = PAT__V1__UPDATE_TOKEN_REQUEST__INIT;
    up.id = id;
    up.revoke = 1;
    Pat__V1__Response *r = call(f, "pat.v1.TokenService/UpdateToken", &up.base, "bob", 0);
    assert_int_equal(r->status->code, 0);
    pat__v1__response__free_unpacked(r, NULL);
    assert_false(prepared(f, tok, "", 0));
    assert_string_equal(verify(f, tok, "", 0, NULL), "revoked");
    assert_string_equal(verify(f, tok, "", 0, NULL), "revoked");
    assert_false(prepared(f, tok, "", 0));
}

static void test_R12_expiry_ends_a_prepared_answer(void **state)
{
    fixture_t *f = *state;
    char tok[128];
    fresh(f, "carol", PAT__V1__ROLE__ROLE_MEMBER, 1, 0, "", tok);
    clock_advance(86400 * 1000 - 1000); /* the test clock runs too: a margin */
    assert_true(prepared(f, tok, "", 0));
    clock_advance(1000);
    assert_false(prepared(f, tok, "", 0));
    assert_string_equal(verify(f, tok, "", 0, NULL), "expired");
}

static void test_R13_R14_user_changes_end_a_prepared_answer(void **state)
{
    fixture_t *f = *state;
    char tok[128];
    fresh(f, "dave", PAT__V1__ROLE__ROLE_ADMIN, 0, 0, "", tok);
    assert_true(prepared(f, tok, "", PAT__V1__ROLE__ROLE_ADMIN));
    upsert(f, "dave", PAT__V1__ROLE__ROLE_MEMBER); /* downgraded */
    assert_false(prepared(f, tok, "", 0));
    assert_string_equal(verify(f, tok, "", PAT__V1__ROLE__ROLE_ADMIN, NULL), "insufficient_role");
    warm(f, tok, "");
    /* A role the prepared answer's user lacks is left to the full path. */
    assert_false(prepared(f, tok, "", PAT__V1__ROLE__ROLE_MANAGER));
    assert_string_equal(verify(f, tok, "", PAT__V1__ROLE__ROLE_MANAGER, NULL), "insufficient_role");
    Pat__V1__DeactivateUserRequest de = PAT__V1__DEACTIVATE_USER_REQUEST__INIT;
    de.user_id = "dave";
    Pat__V1__Response *r = call(f, "pat.v1.TokenService/DeactivateUser", &de.base, NULL, 0);
    assert_int_equal(r->status->code, 0);
    pat__v1__response__free_unpacked(r, NULL);
    assert_false(prepared(f, tok, "", 0));
    assert_string_equal(verify(f, tok, "", 0, NULL), "user_deactivated");
}

static void test_R5_scim_paths_of_a_prepared_answer(void **state)
{
    fixture_t *f = *state;
    char tok[128];
    fresh(f, "erin", PAT__V1__ROLE__ROLE_ADMIN, 0, 1, "/scim/v2/Users", tok);
    assert_false(prepared(f, tok, "/api/tokens", 0));
    assert_string_equal(verify(f, tok, "/api/tokens", 0, NULL), "scim_only");
    assert_false(prepared(f, tok, "/scim/v2/../../api", 0));
    assert_true(prepared(f, tok, "/scim/v2/Groups", 0));
}

/* Tokens whose tags share a set of slots keep their answers side by side
 * (direct-mapped, two of them took one slot from each other: 10k tokens
 * drawn at random were answered from a slot 29% of the time). When the set
 * is full, the one used least recently gives its slot up, and is answered
 * in full again. */
static void test_a_set_of_slots_keeps_four_answers_and_gives_up_the_oldest(void **state)
{
    fixture_t *f = *state;
    svc_prep_narrow(1); /* every tag in one set */
    char tok[5][128];
    for (int i = 0; i < 5; i++) {
        char user[16];
        snprintf(user, sizeof(user), "set-user-%d", i);
        upsert(f, user, PAT__V1__ROLE__ROLE_MEMBER);
        create(f, user, 0, 0, tok[i]);
        /* Read into the cache first: a cache put moves its shard's epoch,
         * which would end other answers for a reason of its own. */
        assert_string_equal(verify(f, tok[i], "/api", 0, NULL), "");
    }
    for (int i = 0; i < 4; i++)
        warm(f, tok[i], "/api");
    for (int i = 0; i < 4; i++) /* each one used: 0 is now the oldest */
        assert_true(prepared(f, tok[i], "/api", 0));
    assert_string_equal(verify(f, tok[0], "/api", 0, NULL), ""); /* now 1 is */
    warm(f, tok[4], "/api");
    assert_false(prepared(f, tok[1], "/api", 0));
    assert_true(prepared(f, tok[0], "/api", 0));
    assert_true(prepared(f, tok[2], "/api", 0));
    assert_true(prepared(f, tok[3], "/api", 0));
    assert_true(prepared(f, tok[4], "/api", 0));
    /* The one that gave its slot up is still answered, in full. */
    int64_t used = 0;
    assert_string_equal(verify(f, tok[1], "/api", 0, &used), "");
    assert_true(used > 0);
    svc_prep_narrow(0);
}

static void test_fence_and_clear_end_prepared_answers(void **state)
{
    fixture_t *f = *state;
    char tok[128];
    fresh(f, "frank", PAT__V1__ROLE__ROLE_MEMBER, 0, 0, "", tok);
    cache_serve_until(f->cache, 0); /* a clustered store's lease ran out */
    assert_false(prepared(f, tok, "", 0));
    cache_serve_until(f->cache, UINT64_MAX);
    assert_true(prepared(f, tok, "", 0));
    cache_clear(f->cache);
    assert_false(prepared(f, tok, "", 0));
    warm(f, tok, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_R15_a_prepared_answer_carries_this_uses_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_R11_revoke_ends_a_prepared_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_R12_expiry_ends_a_prepared_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_R13_R14_user_changes_end_a_prepared_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_R5_scim_paths_of_a_prepared_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_set_of_slots_keeps_four_answers_and_gives_up_the_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence_and_clear_end_prepared_answers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
