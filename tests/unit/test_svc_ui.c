/* Unit tests of svc_ui.c, the Access Tokens page's login codes and
 * sessions, over a real store: a code works once and only until its end,
 * a session lives until logout or its lifetime, R14 ends a deactivated
 * user's sessions, and many sessions at once stay findable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "dispatch.h"
#include "svc_fixture.h"

#define KEY SVC_FIXTURE_KEY

static int setup(void **state)
{
    fixture_t *f = svc_fixture_new();
    if (f == NULL) return -1;
    store_user_t u = {.role = STORE_ROLE_MEMBER, .user_type = STORE_USER_HUMAN, .active = 1};
    snprintf(u.user_id, sizeof(u.user_id), "alice");
    u.created = clock_now_ms();
    if (store_user_create(f->st, &u) != STORE_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    return svc_fixture_free(*state);
}

static char link_path[256];

static void keep_link(void *arg, const ProtobufCMessage *m)
{
    (void)arg;
    snprintf(link_path, sizeof(link_path), "%s", ((const Pat__V1__CreateUiLinkResponse *)m)->path);
}

/* CreateUiLink as the platform; the code, or "" with the outcome in *err. */
static const char *make_code(fixture_t *f, const char *user, pat_err_t *err)
{
    disp_method_t m;
    assert_int_equal(disp_find(&f->svc, "pat.v1.TokenService/CreateUiLink", &m), 0);
    Pat__V1__CreateUiLinkRequest in = PAT__V1__CREATE_UI_LINK_REQUEST__INIT;
    in.user_id = (char *)user;
    disp_meta_t meta = {.authorization = "Platform " KEY};
    disp_outcome_t out;
    link_path[0] = '\0';
    disp_call(&f->svc, &m, &meta, &in.base, keep_link, NULL, &out);
    *err = out.err;
    const char *code = strstr(link_path, "code=");
    return code ? code + 5 : "";
}

static void test_a_code_works_once(void **state)
{
    fixture_t *f = *state;
    pat_err_t e;
    char code[SVC_UI_SECRET_LEN + 1], sid[SVC_UI_SECRET_LEN + 1], csrf[SVC_UI_SECRET_LEN + 1];
    snprintf(code, sizeof(code), "%s", make_code(f, "alice", &e));
    assert_int_equal(e, PAT_E_OK);
    assert_int_equal(strlen(code), SVC_UI_SECRET_LEN);
    int64_t end;
    assert_int_equal(svc_ui_redeem(&f->svc, code, sid, csrf, &end), 0);
    assert_int_equal(svc_ui_redeem(&f->svc, code, sid, csrf, &end), -1); /* once */
    char user[SVC_USER_ID_MAX + 1], c2[SVC_UI_SECRET_LEN + 1];
    assert_int_equal(svc_ui_session(&f->svc, sid, user, c2), 0);
    assert_string_equal(user, "alice");
    assert_string_equal(c2, csrf);
    svc_ui_logout(&f->svc, sid);
    assert_int_equal(svc_ui_session(&f->svc, sid, user, c2), -1);
    assert_int_equal(svc_ui_redeem(&f->svc, "short", sid, csrf, &end), -1);
}

static void test_unknown_user_gets_no_code(void **state)
{
    fixture_t *f = *state;
    pat_err_t e;
    make_code(f, "nobody", &e);
    assert_int_equal(e, PAT_E_USER_NOT_FOUND);
}

static void test_R14_deactivation_ends_sessions(void **state)
{
    fixture_t *f = *state;
    pat_err_t e;
    char code[SVC_UI_SECRET_LEN + 1], sid[SVC_UI_SECRET_LEN + 1], csrf[SVC_UI_SECRET_LEN + 1];
    snprintf(code, sizeof(code), "%s", make_code(f, "alice", &e));
    int64_t end;
    assert_int_equal(svc_ui_redeem(&f->svc, code, sid, csrf, &end), 0);
    store_user_t u;
    unsigned n;
    assert_int_equal(store_user_set_active(f->st, "alice", 0, 0, clock_now_ms(), &u, &n), STORE_OK);
    /* A call made with the session finds the user deactivated: refused,
     * and the session is gone for good. */
    disp_method_t m;
    assert_int_equal(disp_find(&f->svc, "pat.v1.TokenService/ListTokens", &m), 0);
    Pat__V1__ListTokensRequest in = PAT__V1__LIST_TOKENS_REQUEST__INIT;
    disp_meta_t meta = {.trusted_user = "alice"};
    disp_outcome_t out;
    disp_call(&f->svc, &m, &meta, &in.base, keep_link, NULL, &out);
    assert_int_equal(out.err, PAT_E_USER_DEACTIVATED);
    char user[SVC_USER_ID_MAX + 1], c2[SVC_UI_SECRET_LEN + 1];
    assert_int_equal(svc_ui_session(&f->svc, sid, user, c2), -1);
    assert_int_equal(store_user_set_active(f->st, "alice", 1, 0, clock_now_ms(), &u, &n), STORE_OK);
    assert_int_equal(svc_ui_session(&f->svc, sid, user, c2), -1);
}

static void test_many_sessions_stay_findable(void **state)
{
    fixture_t *f = *state;
    enum { N = 1000 };
    static char sids[N][SVC_UI_SECRET_LEN + 1];
    for (int i = 0; i < N; i++) {
        pat_err_t e;
        char code[SVC_UI_SECRET_LEN + 1], csrf[SVC_UI_SECRET_LEN + 1];
        snprintf(code, sizeof(code), "%s", make_code(f, "alice", &e));
        int64_t end;
        assert_int_equal(svc_ui_redeem(&f->svc, code, sids[i], csrf, &end), 0);
    }
    int found = 0;
    for (int i = 0; i < N; i++) {
        char user[SVC_USER_ID_MAX + 1], csrf[SVC_UI_SECRET_LEN + 1];
        found += svc_ui_session(&f->svc, sids[i], user, csrf) == 0;
    }
    /* 1000 in 4096 slots: a window of 16 overflows (and evicts) almost never. */
    assert_true(found >= N - 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_code_works_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_user_gets_no_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_R14_deactivation_ends_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_sessions_stay_findable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
