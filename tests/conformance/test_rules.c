/* Conformance: every rule R1-R22 of docs/semantics.md, over TCP against a
 * real patd-testclock (a patd whose clock tests can move). Each test is
 * named after the rule it checks; docs/semantics.md maps rules to tests.
 * The negative paths produce every status code of the semantics table with
 * its reason. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define DAY_MS       86400000LL
#define ROLE_MEMBER  PAT__V1__ROLE__ROLE_MEMBER
#define ROLE_MANAGER PAT__V1__ROLE__ROLE_MANAGER
#define ROLE_ADMIN   PAT__V1__ROLE__ROLE_ADMIN
#define KIND_SERVICE PAT__V1__TOKEN_KIND__TOKEN_KIND_SERVICE
#define ST_ACTIVE    PAT__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE
#define ST_REVOKED   PAT__V1__TOKEN_STATUS__TOKEN_STATUS_REVOKED
#define ST_EXPIRED   PAT__V1__TOKEN_STATUS__TOKEN_STATUS_EXPIRED

/* Fixture: a fresh patd with users alice (member), bob (member) and root
 * (admin), each with a personal token usable as a Bearer credential. */
typedef struct {
    patd_t p;
    char *alice_tok, *bob_tok, *root_tok;
    pat_client_t *alice, *bob, *root;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (h_start(&f->p, 1, NULL) != 0) return -1;
    if (h_user(&f->p, "alice", ROLE_MEMBER) || h_user(&f->p, "bob", ROLE_MEMBER) ||
        h_user(&f->p, "root", ROLE_ADMIN))
        return -1;
    f->alice_tok = h_create(&f->p, "alice", "session", -1, NULL, NULL);
    f->bob_tok = h_create(&f->p, "bob", "session", -1, NULL, NULL);
    f->root_tok = h_create(&f->p, "root", "session", -1, NULL, NULL);
    if (!f->alice_tok || !f->bob_tok || !f->root_tok) return -1;
    f->alice = h_bearer(&f->p, f->alice_tok);
    f->bob = h_bearer(&f->p, f->bob_tok);
    f->root = h_bearer(&f->p, f->root_tok);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    h_close(f->alice);
    h_close(f->bob);
    h_close(f->root);
    free(f->alice_tok);
    free(f->bob_tok);
    free(f->root_tok);
    h_cleanup(&f->p);
    free(f);
    return 0;
}

static char *create(pat_client_t *c, const char *name, int days, uint64_t *id, pat_status_t *st)
{
    return h_create_with(c, name, days, 0, 0, NULL, id, st);
}

static void expect(const pat_status_t *st, int code, unsigned http, const char *reason)
{
    if (st->code != code || st->http != http || strcmp(st->reason, reason) != 0)
        fail_msg("expected %s %u %s, got %s %u %s (%s)", pat_code_name(code), http, reason,
                 pat_code_name(st->code), st->http, st->reason, st->message);
}

static int verify(fx_t *f, const char *tok, const char *path, int role, pat_status_t *st)
{
    return h_verify(&f->p, tok, path, role, NULL, st);
}

/* A service user made by root; returns its user_id (malloc'd). */
static char *service_user(fx_t *f, const char *name, int role)
{
    Pat__V1__CreateServiceUserRequest req = PAT__V1__CREATE_SERVICE_USER_REQUEST__INIT;
    req.user_name = (char *)name;
    req.role = role;
    Pat__V1__User *u = NULL;
    pat_status_t st;
    assert_int_equal(
        h_call(f->root, "CreateServiceUser", &req.base, &pat__v1__user__descriptor, &u, &st), 0);
    assert_int_equal(u->user_type, PAT__V1__USER_TYPE__USER_TYPE_SERVICE);
    assert_string_equal(u->created_by, "root");
    char *id = strdup(u->user_id);
    protobuf_c_message_free_unpacked(&u->base, NULL);
    return id;
}

static int set_role(fx_t *f, const char *user_id, int role)
{
    return h_user(&f->p, user_id, role);
}

static Pat__V1__TokenInfo *find(Pat__V1__TokenInfo **list, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (list[i]->id == id) return list[i];
    return NULL;
}

/* ---------------------------------------------------------------- kinds */

static void test_R1_personal_token_authenticates_as_its_user_with_current_role(void **state)
{
    fx_t *f = *state;
    Pat__V1__VerifyResponse *vr = NULL;
    pat_status_t st;
    assert_int_equal(h_verify(&f->p, f->alice_tok, "/api/v1/x", 0, &vr, &st), 0);
    assert_string_equal(vr->user->user_id, "alice");
    assert_int_equal(vr->user->role, ROLE_MEMBER);
    assert_int_equal(vr->token->kind, PAT__V1__TOKEN_KIND__TOKEN_KIND_PERSONAL);
    protobuf_c_message_free_unpacked(&vr->base, NULL);
    /* Promote alice: the same token now carries the new role. */
    assert_int_equal(set_role(f, "alice", ROLE_MANAGER), 0);
    assert_int_equal(h_verify(&f->p, f->alice_tok, "/", 0, &vr, &st), 0);
    assert_int_equal(vr->user->role, ROLE_MANAGER);
    assert_int_equal(vr->token->user->role, ROLE_MANAGER);
    protobuf_c_message_free_unpacked(&vr->base, NULL);
    assert_int_equal(verify(f, f->alice_tok, "/", ROLE_MANAGER, &st), 0);
}

static void test_R2_member_manages_own_tokens_without_an_admin(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "ci", 30, &id, &st);
    assert_non_null(t);
    size_t n;
    Pat__V1__TokenInfo **list = h_list(f->alice, 0, NULL, &n, &st);
    assert_int_equal(n, 2);
    assert_non_null(find(list, n, id));
    h_list_free(list, n);
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
    assert_int_equal(h_update(f->alice, id, 0, NULL, &st), 0);
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
    assert_int_equal(h_delete(f->alice, id, &st), 0);
    free(t);
    /* A deactivated user cannot act at all. */
    assert_int_equal(h_set_active(&f->p, "alice", 0, &st), 0);
    assert_null(create(f->alice, "nope", 30, NULL, &st));
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "user_deactivated");
}

static void test_R3_others_tokens_are_invisible_even_to_admins(void **state)
{
    fx_t *f = *state;
    pat_status_t st, missing;
    uint64_t id;
    char *t = create(f->alice, "private", 30, &id, &st);
    /* What an id that does not exist answers... */
    assert_int_equal(h_update(f->root, 999999, 1, NULL, &missing), PAT__V1__CODE__NOT_FOUND);
    expect(&missing, PAT__V1__CODE__NOT_FOUND, 404, "token_not_found");
    /* ...is what every attempt on alice's token answers, for bob and root. */
    pat_client_t *others[2] = {f->bob, f->root};
    for (int i = 0; i < 2; i++) {
        pat_client_t *c = others[i];
        assert_int_equal(h_update(c, id, 1, NULL, &st), PAT__V1__CODE__NOT_FOUND);
        expect(&st, PAT__V1__CODE__NOT_FOUND, 404, "token_not_found");
        assert_int_equal(h_update(c, id, 0, NULL, &st), PAT__V1__CODE__NOT_FOUND);
        assert_int_equal(h_delete(c, id, &st), PAT__V1__CODE__NOT_FOUND);
        expect(&st, PAT__V1__CODE__NOT_FOUND, 404, "token_not_found");
        Pat__V1__ListTokenActivityRequest ar = PAT__V1__LIST_TOKEN_ACTIVITY_REQUEST__INIT;
        ar.id = id;
        assert_int_equal(h_call(c, "ListTokenActivity", &ar.base, NULL, NULL, &st),
                         PAT__V1__CODE__NOT_FOUND);
        size_t n;
        Pat__V1__TokenInfo **list = h_list(c, 0, NULL, &n, &st);
        assert_null(find(list, n, id));
        h_list_free(list, n);
        /* An admin's service-token listing does not include it either. */
        list = h_list(f->root, KIND_SERVICE, NULL, &n, &st);
        assert_null(find(list, n, id));
        h_list_free(list, n);
    }
    assert_int_equal(verify(f, t, "/", 0, &st), 0);
    free(t);
}

static void test_R4_service_users_and_tokens_are_admin_only(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    Pat__V1__CreateServiceUserRequest req = PAT__V1__CREATE_SERVICE_USER_REQUEST__INIT;
    req.user_name = "deploy-bot";
    assert_int_equal(h_call(f->alice, "CreateServiceUser", &req.base, NULL, NULL, &st),
                     PAT__V1__CODE__PERMISSION_DENIED);
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "admin_only");
    char *bot = service_user(f, "deploy-bot", ROLE_MANAGER);
    char *bot2 = service_user(f, "backup-bot", ROLE_MEMBER);

    /* Members cannot create or list service tokens. */
    assert_null(h_create_with(f->alice, "deploy", 30, 0, KIND_SERVICE, bot, NULL, &st));
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "admin_only");
    size_t n;
    assert_null(h_list(f->alice, KIND_SERVICE, NULL, &n, &st));
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "admin_only");
    /* A service token needs a service user. */
    assert_null(h_create_with(f->root, "deploy", 30, 0, KIND_SERVICE, NULL, NULL, &st));
    expect(&st, PAT__V1__CODE__INVALID_ARGUMENT, 400, "invalid_field");
    assert_null(h_create_with(f->root, "deploy", 30, 0, KIND_SERVICE, "alice", NULL, &st));
    expect(&st, PAT__V1__CODE__NOT_FOUND, 404, "user_not_found");

    uint64_t id1, id2;
    char *t1 = h_create_with(f->root, "deploy", 30, 0, KIND_SERVICE, bot, &id1, &st);
    char *t2 = h_create_with(f->root, "backup", -1, 0, KIND_SERVICE, bot2, &id2, &st);
    assert_non_null(t1);
    assert_non_null(t2);
    assert_true(strncmp(t1, "pats_", 5) == 0);
    /* The token carries the service user's own role. */
    Pat__V1__VerifyResponse *vr = NULL;
    assert_int_equal(h_verify(&f->p, t1, "/", 0, &vr, &st), 0);
    assert_string_equal(vr->user->user_id, bot);
    assert_int_equal(vr->user->role, ROLE_MANAGER);
    protobuf_c_message_free_unpacked(&vr->base, NULL);
    assert_int_equal(verify(f, t1, "/", ROLE_ADMIN, &st), PAT__V1__CODE__PERMISSION_DENIED);

    /* An admin lists the service tokens of all service users at once, or of one. */
    Pat__V1__TokenInfo **list = h_list(f->root, KIND_SERVICE, NULL, &n, &st);
    assert_int_equal(n, 2);
    h_list_free(list, n);
    list = h_list(f->root, KIND_SERVICE, bot2, &n, &st);
    assert_int_equal(n, 1);
    assert_int_equal(list[0]->id, id2);
    h_list_free(list, n);

    /* Another admin manages them; the creating admin's departure changes nothing. */
    assert_int_equal(h_user(&f->p, "root2", ROLE_ADMIN), 0);
    char *r2tok = h_create(&f->p, "root2", "s", -1, NULL, &st);
    pat_client_t *root2 = h_bearer(&f->p, r2tok);
    assert_int_equal(h_set_active(&f->p, "root", 0, &st), 0);
    assert_int_equal(verify(f, t1, "/", 0, &st), 0);
    assert_int_equal(h_update(root2, id1, 1, NULL, &st), 0);
    assert_int_equal(h_update(root2, id1, 0, NULL, &st), 0);

    /* A service user with active tokens can be neither deactivated nor deleted. */
    assert_int_equal(h_set_active(&f->p, bot, 0, &st), PAT__V1__CODE__FAILED_PRECONDITION);
    expect(&st, PAT__V1__CODE__FAILED_PRECONDITION, 400, "has_active_tokens");
    Pat__V1__DeleteServiceUserRequest del = PAT__V1__DELETE_SERVICE_USER_REQUEST__INIT;
    del.user_id = bot;
    assert_int_equal(h_call(root2, "DeleteServiceUser", &del.base, NULL, NULL, &st),
                     PAT__V1__CODE__FAILED_PRECONDITION);
    expect(&st, PAT__V1__CODE__FAILED_PRECONDITION, 400, "has_active_tokens");
    /* Revoke first; then deactivation works, and reactivation does not
     * bring the revoked token back. */
    assert_int_equal(h_update(root2, id1, 1, NULL, &st), 0);
    assert_int_equal(h_set_active(&f->p, bot, 0, &st), 0);
    assert_int_equal(h_set_active(&f->p, bot, 1, &st), 0);
    assert_int_equal(verify(f, t1, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "revoked");
    /* Delete takes the service user and its revoked tokens. */
    assert_int_equal(h_call(root2, "DeleteServiceUser", &del.base, NULL, NULL, &st), 0);
    assert_int_equal(verify(f, t1, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "unknown_token");
    list = h_list(root2, KIND_SERVICE, NULL, &n, &st);
    assert_int_equal(n, 1);
    h_list_free(list, n);
    /* A service user has no personal tokens. */
    pat_client_t *as_bot2 = h_bearer(&f->p, t2);
    assert_null(create(as_bot2, "mine", 30, NULL, &st));
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "service_user_caller");
    h_close(as_bot2);
    h_close(root2);
    free(r2tok);
    free(t1);
    free(t2);
    free(bot);
    free(bot2);
}

static void test_R5_scim_tokens_only_reach_scim_paths(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    assert_null(h_create_with(f->alice, "scim", 30, 1, 0, NULL, NULL, &st));
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "admin_only");
    char *scim = h_create_with(f->root, "okta-sync", 365, 1, 0, NULL, NULL, &st);
    assert_non_null(scim);
    assert_true(strncmp(scim, "patscim_", 8) == 0);
    const char *allowed[] = {"/scim/v2/Users", "/scim/v2", "/api/scim/v2/Groups?x=1",
                             "/scim/v2/Users/../Groups"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(verify(f, scim, allowed[i], 0, &st), 0);
    const char *denied[] = {"/api/v1/projects",
                            "/scim/v2x",
                            "/scim/v2x/Users",
                            "/scim/v2/../../api/admin",
                            "/scim/v2/%2e%2e/api",
                            "/",
                            ""};
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(verify(f, scim, denied[i], 0, &st), PAT__V1__CODE__PERMISSION_DENIED);
        expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "scim_only");
    }
    /* Nor can it call the token-management methods. */
    pat_client_t *c = h_bearer(&f->p, scim);
    size_t n;
    assert_null(h_list(c, 0, NULL, &n, &st));
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "scim_only");
    assert_null(create(c, "more", 30, NULL, &st));
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "scim_only");
    h_close(c);
    /* A non-SCIM token works anywhere. */
    assert_int_equal(verify(f, f->root_tok, "/scim/v2/Users", 0, &st), 0);
    free(scim);
}

/* ---------------------------------------------------------------- creating */

static void test_R6_names_required_bounded_utf8_unique(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    assert_null(create(f->alice, "", 30, NULL, &st));
    expect(&st, PAT__V1__CODE__INVALID_ARGUMENT, 400, "invalid_field");
    assert_non_null(strstr(st.message, "name"));
    char name[300];
    memset(name, 'n', 255);
    name[255] = '\0';
    char *t = create(f->alice, name, 30, NULL, &st);
    assert_non_null(t);
    free(t);
    memset(name, 'm', 256);
    name[256] = '\0';
    assert_null(create(f->alice, name, 30, NULL, &st));
    expect(&st, PAT__V1__CODE__INVALID_ARGUMENT, 400, "invalid_field");
    /* 255 bytes, not characters: 128 two-byte characters is 256 bytes. */
    name[0] = '\0';
    for (int i = 0; i < 128; i++)
        strcat(name, "\xc3\xa9");
    assert_null(create(f->alice, name, 30, NULL, &st));
    assert_null(create(f->alice, "bad\xff", 30, NULL, &st));
    expect(&st, PAT__V1__CODE__INVALID_ARGUMENT, 400, "invalid_field");
    t = create(f->alice, "caf\xc3\xa9", 30, NULL, &st);
    assert_non_null(t);
    free(t);
    assert_null(create(f->alice, "caf\xc3\xa9", 30, NULL, &st));
    expect(&st, PAT__V1__CODE__ALREADY_EXISTS, 409, "duplicate_name");
    t = create(f->bob, "caf\xc3\xa9", 30, NULL, &st);
    assert_non_null(t);
    free(t);
}

typedef struct {
    const patd_t *p;
    const char *tok;
    int code;
} race_t;

static void *race_create(void *arg)
{
    race_t *r = arg;
    pat_client_t *c = h_bearer(r->p, r->tok);
    pat_status_t st;
    char *t = create(c, "raced", 30, NULL, &st);
    r->code = t ? 0 : st.code;
    free(t);
    h_close(c);
    return NULL;
}

static void test_R6_concurrent_creates_of_one_name_exactly_one_wins(void **state)
{
    fx_t *f = *state;
    enum { N = 16 };
    for (int round = 0; round < 5; round++) {
        pthread_t th[N];
        race_t r[N];
        for (int i = 0; i < N; i++) {
            r[i] = (race_t){&f->p, f->alice_tok, -9};
            pthread_create(&th[i], NULL, race_create, &r[i]);
        }
        int won = 0, conflict = 0;
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            won += r[i].code == 0;
            conflict += r[i].code == PAT__V1__CODE__ALREADY_EXISTS;
        }
        assert_int_equal(won, 1);
        assert_int_equal(conflict, N - 1);
        /* Free the name again for the next round (R19). */
        size_t n;
        pat_status_t st;
        Pat__V1__TokenInfo **list = h_list(f->alice, 0, NULL, &n, &st);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(list[i]->name, "raced") == 0) {
                assert_int_equal(h_update(f->alice, list[i]->id, 1, NULL, &st), 0);
                assert_int_equal(h_delete(f->alice, list[i]->id, &st), 0);
            }
        }
        h_list_free(list, n);
    }
}

static void test_R7_expiration_choices_and_range(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    int ok[] = {1, 30, 60, 90, 365};
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "d%d", ok[i]);
        uint64_t id;
        char *t = create(f->alice, name, ok[i], &id, &st);
        assert_non_null(t);
        Pat__V1__VerifyResponse *vr;
        assert_int_equal(h_verify(&f->p, t, "/", 0, &vr, &st), 0);
        assert_int_equal(vr->token->expiration - vr->token->created, ok[i] * DAY_MS);
        protobuf_c_message_free_unpacked(&vr->base, NULL);
        free(t);
    }
    int bad[] = {0, -1, -365, 366, 100000};
    for (int i = 0; i < 5; i++) {
        /* Set the field explicitly (the helper reads negative as "never"). */
        Pat__V1__CreateTokenRequest req = PAT__V1__CREATE_TOKEN_REQUEST__INIT;
        req.name = "bad";
        req.expiry_case = PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY_EXPIRES_IN_DAYS;
        req.expires_in_days = bad[i];
        assert_int_equal(h_call(f->alice, "CreateToken", &req.base, NULL, NULL, &st),
                         PAT__V1__CODE__INVALID_ARGUMENT);
        expect(&st, PAT__V1__CODE__INVALID_ARGUMENT, 400, "invalid_field");
        assert_non_null(strstr(st.message, "expires_in_days"));
    }
    /* Unset: never expires. */
    Pat__V1__VerifyResponse *vr;
    assert_int_equal(h_verify(&f->p, f->alice_tok, "/", 0, &vr, &st), 0);
    assert_int_equal(vr->token->expiration, 0);
    protobuf_c_message_free_unpacked(&vr->base, NULL);
}

/* True if the serialized message contains the secret's bytes. */
static int packed_contains(const ProtobufCMessage *m, const char *secret)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len + 1);
    protobuf_c_message_pack(m, buf);
    int found = memmem(buf, len, secret, strlen(secret)) != NULL;
    free(buf);
    return found;
}

static void test_R8_token_value_shown_once_and_never_again(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "once", 30, &id, &st);
    Pat__V1__VerifyResponse *vr;
    assert_int_equal(h_verify(&f->p, t, "/", 0, &vr, &st), 0);
    assert_false(packed_contains(&vr->base, t));
    protobuf_c_message_free_unpacked(&vr->base, NULL);
    size_t n;
    Pat__V1__TokenInfo **list = h_list(f->alice, 0, NULL, &n, &st);
    for (size_t i = 0; i < n; i++)
        assert_false(packed_contains(&list[i]->base, t));
    h_list_free(list, n);
    Pat__V1__TokenInfo *ti;
    assert_int_equal(h_update(f->alice, id, 1, &ti, &st), 0);
    assert_false(packed_contains(&ti->base, t));
    protobuf_c_message_free_unpacked(&ti->base, NULL);
    t[12] ^= 1;
    verify(f, t, "/", 0, &st);
    assert_null(strstr(st.message, t));
    t[12] ^= 1;
    assert_int_equal(h_stop(&f->p), 0);
    assert_false(h_log_contains(&f->p, t + 5));
    assert_int_equal(h_restart(&f->p), 0);
    free(t);
}

static void test_R9_name_owner_kind_expiration_are_fixed(void **state)
{
    fx_t *f = *state;
    /* No method can change them: UpdateToken carries only id and revoke. */
    const ProtobufCMessageDescriptor *d = &pat__v1__update_token_request__descriptor;
    assert_int_equal(d->n_fields, 2);
    assert_non_null(protobuf_c_message_descriptor_get_field_by_name(d, "id"));
    assert_non_null(protobuf_c_message_descriptor_get_field_by_name(d, "revoke"));
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "fixed", 30, &id, &st);
    Pat__V1__VerifyResponse *before;
    assert_int_equal(h_verify(&f->p, t, "/", 0, &before, &st), 0);
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
    assert_int_equal(h_advance(&f->p, DAY_MS), 0);
    Pat__V1__TokenInfo *after;
    assert_int_equal(h_update(f->alice, id, 0, &after, &st), 0);
    assert_string_equal(after->name, before->token->name);
    assert_int_equal(after->expiration, before->token->expiration);
    assert_int_equal(after->kind, before->token->kind);
    assert_string_equal(after->user->user_id, "alice");
    protobuf_c_message_free_unpacked(&after->base, NULL);
    protobuf_c_message_free_unpacked(&before->base, NULL);
    free(t);
}

/* ---------------------------------------------------------------- using */

static void test_R10_bearer_token_works_from_any_client(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    /* Many connections; the scheme's case does not matter (RFC 7235). */
    const char *schemes[] = {"Bearer ", "bearer ", "BEARER ", "Bearer ", "bEaReR "};
    for (int i = 0; i < 5; i++) {
        pat_client_t *c = h_connect(&f->p);
        char auth[128];
        snprintf(auth, sizeof(auth), "%s%s", schemes[i], f->alice_tok);
        h_set_authorization(c, auth);
        size_t n;
        Pat__V1__TokenInfo **list = h_list(c, 0, NULL, &n, &st);
        assert_non_null(list);
        h_list_free(list, n);
        h_close(c);
    }
    assert_int_equal(verify(f, f->alice_tok, "/", 0, &st), 0);
    /* Anything but "Bearer <token>" or "Platform <key>" is refused. */
    pat_client_t *c = h_connect(&f->p);
    h_set_authorization(c, f->alice_tok);
    size_t n;
    assert_null(h_list(c, 0, NULL, &n, &st));
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "missing_credential");
    h_close(c);
}

static void test_R11_no_idle_timeout_only_expiry_revoke_or_deactivation(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    /* A never-expiring token unused for three years still works. */
    assert_int_equal(h_advance(&f->p, 3 * 365 * DAY_MS), 0);
    assert_int_equal(verify(f, f->alice_tok, "/", 0, &st), 0);
    /* And a 30-day token used after 29 days of silence. */
    char *t = create(f->alice, "quiet", 30, NULL, &st);
    assert_int_equal(h_advance(&f->p, 29 * DAY_MS), 0);
    assert_int_equal(verify(f, t, "/", 0, &st), 0);
    free(t);
}

static void test_R12_expiry_stops_the_token_by_itself(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "month", 30, &id, &st);
    assert_int_equal(h_advance(&f->p, 30 * DAY_MS - 1000), 0);
    assert_int_equal(verify(f, t, "/", 0, &st), 0);
    assert_int_equal(h_advance(&f->p, 1000), 0);
    assert_int_equal(verify(f, t, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "expired");
    size_t n;
    Pat__V1__TokenInfo **list = h_list(f->alice, 0, NULL, &n, &st);
    assert_int_equal(find(list, n, id)->status, ST_EXPIRED);
    h_list_free(list, n);
    free(t);
}

static void test_R13_role_change_applies_on_the_next_request(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    assert_int_equal(verify(f, f->root_tok, "/admin", ROLE_ADMIN, &st), 0);
    assert_int_equal(set_role(f, "root", ROLE_MEMBER), 0);
    assert_int_equal(verify(f, f->root_tok, "/admin", ROLE_ADMIN, &st),
                     PAT__V1__CODE__PERMISSION_DENIED);
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "insufficient_role");
    /* Admin-only operations are refused too, on the same connection. */
    Pat__V1__CreateServiceUserRequest req = PAT__V1__CREATE_SERVICE_USER_REQUEST__INIT;
    req.user_name = "x";
    assert_int_equal(h_call(f->root, "CreateServiceUser", &req.base, NULL, NULL, &st),
                     PAT__V1__CODE__PERMISSION_DENIED);
    /* Nothing about the token changed: it still works for member things. */
    assert_int_equal(verify(f, f->root_tok, "/", ROLE_MEMBER, &st), 0);
    assert_int_equal(set_role(f, "root", ROLE_ADMIN), 0);
    assert_int_equal(verify(f, f->root_tok, "/admin", ROLE_ADMIN, &st), 0);
}

static void test_R14_deactivation_applies_at_once_to_every_token(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t revoked_id;
    char *t2 = create(f->alice, "second", 30, NULL, &st);
    char *t3 = create(f->alice, "third", 30, &revoked_id, &st);
    assert_int_equal(h_update(f->alice, revoked_id, 1, NULL, &st), 0);
    assert_int_equal(h_set_active(&f->p, "alice", 0, &st), 0);
    assert_int_equal(verify(f, f->alice_tok, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "user_deactivated");
    assert_int_equal(verify(f, t2, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "user_deactivated");
    assert_int_equal(h_set_active(&f->p, "alice", 1, &st), 0);
    assert_int_equal(verify(f, f->alice_tok, "/", 0, &st), 0);
    assert_int_equal(verify(f, t2, "/", 0, &st), 0);
    assert_int_equal(verify(f, t3, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "revoked");
    free(t2);
    free(t3);
}

static void test_R15_last_used_recorded_without_lag_in_the_list(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "lu", 30, &id, &st);
    size_t n;
    Pat__V1__TokenInfo **list = h_list(f->alice, 0, NULL, &n, &st);
    assert_int_equal(find(list, n, id)->last_used, 0);
    h_list_free(list, n);
    assert_int_equal(h_advance(&f->p, 5000), 0);
    Pat__V1__VerifyResponse *vr;
    assert_int_equal(h_verify(&f->p, t, "/", 0, &vr, &st), 0);
    int64_t used_at = vr->token->last_used;
    assert_true(used_at > vr->token->created);
    protobuf_c_message_free_unpacked(&vr->base, NULL);
    assert_int_equal(h_flush_usage(&f->p), 0); /* cluster mode: used on another node */
    list = h_list(f->alice, 0, NULL, &n, &st);
    assert_int_equal(find(list, n, id)->last_used, used_at);
    h_list_free(list, n);
    /* A first use is written by the next flush: after 1.5 s, kill -9.
     * (Later uses of a token written in the last 10 s may lag more, up to
     * last_used_lag_ms; unit test R15 in test_usage.c.) */
    Pat__V1__HealthRequest hr = PAT__V1__HEALTH_REQUEST__INIT;
    Pat__V1__HealthResponse *health;
    pat_client_t *c = h_connect(&f->p);
    assert_int_equal(
        h_call(c, "Health", &hr.base, &pat__v1__health_response__descriptor, &health, &st), 0);
    assert_int_equal(health->last_used_lag_ms, 11000);
    protobuf_c_message_free_unpacked(&health->base, NULL);
    h_close(c);
    usleep(1500 * 1000);
    h_kill(&f->p);
    assert_int_equal(h_restart(&f->p), 0);
    h_close(f->alice);
    f->alice = h_bearer(&f->p, f->alice_tok);
    list = h_list(f->alice, 0, NULL, &n, &st);
    assert_int_equal(find(list, n, id)->last_used, used_at);
    h_list_free(list, n);
    free(t);
}

/* ---------------------------------------------------------------- revoke etc. */

static void test_R16_revoke_is_immediate(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "r16", 30, &id, &st);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(verify(f, t, "/", 0, &st), 0);
        assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
        assert_int_equal(verify(f, t, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
        expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "revoked");
        assert_int_equal(h_update(f->alice, id, 0, NULL, &st), 0);
    }
    free(t);
}

static void test_R17_restore_is_update_with_revoke_false(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "r17", 30, &id, &st);
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
    Pat__V1__TokenInfo *ti;
    assert_int_equal(h_update(f->alice, id, 0, &ti, &st), 0);
    assert_true(ti->active);
    assert_int_equal(ti->status, ST_ACTIVE);
    protobuf_c_message_free_unpacked(&ti->base, NULL);
    assert_int_equal(verify(f, t, "/", 0, &st), 0);
    free(t);
}

static void test_R18_restoring_an_expired_token_keeps_it_expired(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "r18", 1, &id, &st);
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
    assert_int_equal(h_advance(&f->p, 2 * DAY_MS), 0);
    Pat__V1__TokenInfo *ti;
    assert_int_equal(h_update(f->alice, id, 0, &ti, &st), 0);
    assert_true(ti->active);
    assert_int_equal(ti->status, ST_EXPIRED);
    int64_t exp = ti->expiration;
    assert_int_equal(exp - ti->created, DAY_MS);
    protobuf_c_message_free_unpacked(&ti->base, NULL);
    assert_int_equal(verify(f, t, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "expired");
    free(t);
}

static void test_R19_delete_only_revoked_or_expired_and_permanent(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id, exp_id;
    char *t = create(f->alice, "r19", 30, &id, &st);
    assert_int_equal(h_delete(f->alice, id, &st), PAT__V1__CODE__FAILED_PRECONDITION);
    expect(&st, PAT__V1__CODE__FAILED_PRECONDITION, 400, "token_active");
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
    assert_int_equal(h_delete(f->alice, id, &st), 0);
    assert_int_equal(h_update(f->alice, id, 0, NULL, &st), PAT__V1__CODE__NOT_FOUND);
    assert_int_equal(h_delete(f->alice, id, &st), PAT__V1__CODE__NOT_FOUND);
    assert_int_equal(verify(f, t, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "unknown_token");
    /* The name is free again, and the new token is a different one. */
    uint64_t id2;
    char *t2 = create(f->alice, "r19", 30, &id2, &st);
    assert_non_null(t2);
    assert_true(id2 != id);
    assert_string_not_equal(t, t2);
    /* An expired (never revoked) token can be deleted too. */
    char *t3 = create(f->alice, "short", 1, &exp_id, &st);
    assert_int_equal(h_advance(&f->p, 2 * DAY_MS), 0);
    assert_int_equal(h_delete(f->alice, exp_id, &st), 0);
    free(t);
    free(t2);
    free(t3);
}

static void test_R20_list_shows_every_field_and_never_the_value(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t a, b, c;
    char *ta = h_create_with(f->root, "scim-a", 30, 1, 0, NULL, &a, &st);
    char *tb = create(f->root, "never-b", -1, &b, &st);
    char *tc = create(f->root, "revoked-c", 60, &c, &st);
    assert_int_equal(h_update(f->root, c, 1, NULL, &st), 0);
    assert_int_equal(verify(f, tb, "/", 0, &st), 0);
    assert_int_equal(h_flush_usage(&f->p), 0); /* cluster mode: used on another node */
    size_t n;
    Pat__V1__TokenInfo **list = h_list(f->root, 0, NULL, &n, &st);
    assert_int_equal(n, 4);
    Pat__V1__TokenInfo *ia = find(list, n, a), *ib = find(list, n, b), *ic = find(list, n, c);
    assert_string_equal(ia->name, "scim-a");
    assert_true(ia->scim_endpoints_only);
    assert_int_equal(ia->status, ST_ACTIVE);
    assert_int_equal(ia->expiration - ia->created, 30 * DAY_MS);
    assert_int_equal(ia->last_used, 0);
    assert_int_equal(ia->kind, PAT__V1__TOKEN_KIND__TOKEN_KIND_PERSONAL);
    assert_string_equal(ia->user->user_id, "root");
    assert_int_equal(ib->expiration, 0);
    assert_true(ib->last_used > 0);
    assert_false(ib->scim_endpoints_only);
    assert_int_equal(ic->status, ST_REVOKED);
    assert_true(ic->created > 0);
    for (size_t i = 0; i < n; i++) {
        assert_false(packed_contains(&list[i]->base, ta));
        assert_false(packed_contains(&list[i]->base, tb));
    }
    h_list_free(list, n);
    /* Paging returns each token exactly once. */
    for (int i = 0; i < 7; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p%d", i);
        free(create(f->root, name, 30, NULL, &st));
    }
    char page[2048] = "";
    size_t seen = 0;
    do {
        Pat__V1__ListTokensRequest req = PAT__V1__LIST_TOKENS_REQUEST__INIT;
        req.page_size = 3;
        req.page_token = page;
        Pat__V1__ListTokensResponse *out;
        assert_int_equal(h_call(f->root, "ListTokens", &req.base,
                                &pat__v1__list_tokens_response__descriptor, &out, &st),
                         0);
        assert_true(out->n_tokens <= 3);
        seen += out->n_tokens;
        snprintf(page, sizeof(page), "%s", out->next_page_token);
        protobuf_c_message_free_unpacked(&out->base, NULL);
    } while (page[0]);
    assert_int_equal(seen, 11);
    free(ta);
    free(tb);
    free(tc);
}

static void test_R21_refusal_says_which_reason_applies(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t exp_id, rev_id;
    char *te = create(f->bob, "will-expire", 1, &exp_id, &st);
    char *tr = create(f->bob, "will-revoke", 30, &rev_id, &st);
    assert_int_equal(h_update(f->bob, rev_id, 1, NULL, &st), 0);
    assert_int_equal(h_advance(&f->p, 2 * DAY_MS), 0);
    verify(f, te, "/", 0, &st);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "expired");
    verify(f, tr, "/", 0, &st);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "revoked");
    verify(f, "patp_notatoken", "/", 0, &st);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "malformed_token");
    /* Well-formed, right checksum, never issued. */
    char fake[64];
    snprintf(fake, sizeof(fake), "%s", te);
    verify(f, "", "/", 0, &st);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "malformed_token");
    size_t n;
    Pat__V1__TokenInfo **list = h_list(f->bob, 0, NULL, &n, &st);
    assert_int_equal(find(list, n, exp_id)->status, ST_EXPIRED);
    assert_int_equal(find(list, n, rev_id)->status, ST_REVOKED);
    h_list_free(list, n);
    assert_int_equal(h_set_active(&f->p, "bob", 0, &st), 0);
    verify(f, f->bob_tok, "/", 0, &st);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "user_deactivated");
    free(te);
    free(tr);
}

static void test_R21_unknown_but_well_formed_token(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    /* A token from another patd is well-formed here but unknown. */
    patd_t other;
    assert_int_equal(h_start(&other, 0, NULL), 0);
    assert_int_equal(h_user(&other, "x", ROLE_MEMBER), 0);
    char *foreign = h_create(&other, "x", "t", 30, NULL, &st);
    h_cleanup(&other);
    verify(f, foreign, "/", 0, &st);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "unknown_token");
    free(foreign);
}

typedef struct {
    int n;
    int kinds[128];
    char paths[128][64];
    char ips[128][32];
    char actors[128][32];
    int64_t times[128];
    uint32_t counts[128];
} acts_t;

/* In cluster mode the uses were on other nodes: they write them first. */
static int activity(fx_t *f, pat_client_t *c, uint64_t id, unsigned limit, acts_t *a,
                    pat_status_t *st)
{
    if (h_flush_usage(&f->p) != 0) return -1;
    Pat__V1__ListTokenActivityRequest req = PAT__V1__LIST_TOKEN_ACTIVITY_REQUEST__INIT;
    req.id = id;
    req.limit = limit;
    Pat__V1__ListTokenActivityResponse *out = NULL;
    int rc = h_call(c, "ListTokenActivity", &req.base,
                    &pat__v1__list_token_activity_response__descriptor, &out, st);
    memset(a, 0, sizeof(*a));
    if (rc != 0) return rc;
    for (size_t i = 0; i < out->n_events && i < 128; i++) {
        a->kinds[i] = out->events[i]->kind;
        snprintf(a->paths[i], 64, "%s", out->events[i]->path);
        snprintf(a->ips[i], 32, "%s", out->events[i]->client_ip);
        snprintf(a->actors[i], 32, "%s", out->events[i]->actor);
        a->times[i] = out->events[i]->time;
        a->counts[i] = out->events[i]->count;
        a->n++;
    }
    protobuf_c_message_free_unpacked(&out->base, NULL);
    return 0;
}

static void test_R22_recent_activity_after_a_compromise(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "leaked", 30, &id, &st);
    const char *paths[] = {"/api/v1/a", "/api/v1/b", "/api/v1/c"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(h_advance(&f->p, 1000), 0);
        assert_int_equal(verify(f, t, paths[i], 0, &st), 0);
    }
    /* Events of one millisecond on different nodes have no order (each
     * node numbers its own, docs/cluster.md): in cluster mode, the revoke
     * comes a millisecond later. */
    if (h_nodes(&f->p) > 1) assert_int_equal(h_advance(&f->p, 1), 0);
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
    acts_t *a = calloc(1, sizeof(*a));
    assert_int_equal(activity(f, f->alice, id, 0, a, &st), 0);
    assert_int_equal(a->n, 5);
    assert_int_equal(a->kinds[0], PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_REVOKED);
    assert_string_equal(a->actors[0], "alice");
    assert_int_equal(a->kinds[1], PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_USED);
    assert_string_equal(a->paths[1], "/api/v1/c");
    assert_string_equal(a->ips[1], "192.0.2.7");
    assert_string_equal(a->paths[3], "/api/v1/a");
    assert_int_equal(a->kinds[4], PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_CREATED);
    for (int i = 1; i < a->n; i++)
        assert_true(a->times[i - 1] >= a->times[i]);
    assert_int_equal(activity(f, f->alice, id, 2, a, &st), 0);
    assert_int_equal(a->n, 2);
    assert_int_equal(activity(f, f->alice, id, 101, a, &st), PAT__V1__CODE__INVALID_ARGUMENT);
    /* Coalesced: 50 uses of one path from one client within a flush
     * interval are one row that counts them. Each node coalesces its own
     * uses: in cluster mode these are all on the last node. */
    patd_t *u = h_node(&f->p, h_nodes(&f->p) - 1);
    assert_int_equal(h_update(f->alice, id, 0, NULL, &st), 0);
    for (int i = 0; i < 50; i++)
        assert_int_equal(h_verify(u, t, "/api/v1/same", 0, NULL, &st), 0);
    assert_int_equal(activity(f, f->alice, id, 1, a, &st), 0);
    assert_string_equal(a->paths[0], "/api/v1/same");
    assert_int_equal(a->counts[0], 50);
    /* More distinct paths than a row each (16) in one interval: the rest
     * are counted in one "*" row. */
    for (int i = 0; i < 20; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/d/%d", i);
        assert_int_equal(h_verify(u, t, path, 0, NULL, &st), 0);
    }
    assert_int_equal(activity(f, f->alice, id, 17, a, &st), 0);
    assert_string_equal(a->paths[0], "*");
    assert_int_equal(a->counts[0], 4);
    assert_string_equal(a->paths[1], "/d/15");
    /* Bounded: 150 more rows over 15 intervals keep only the newest 100. */
    for (int round = 0; round < 15; round++) {
        for (int i = 0; i < 10; i++) {
            char path[32];
            snprintf(path, sizeof(path), "/n/%d", round * 10 + i);
            assert_int_equal(h_verify(u, t, path, 0, NULL, &st), 0);
        }
        assert_int_equal(activity(f, f->alice, id, 1, a, &st), 0); /* ends the interval */
    }
    assert_int_equal(activity(f, f->alice, id, 100, a, &st), 0);
    assert_int_equal(a->n, 100);
    assert_string_equal(a->paths[0], "/n/149");
    assert_string_equal(a->paths[99], "/n/50");
    assert_int_equal(a->counts[0], 1);
    /* Admins see a service token's activity; nobody sees alice's. */
    assert_int_equal(activity(f, f->root, id, 0, a, &st), PAT__V1__CODE__NOT_FOUND);
    char *bot = service_user(f, "ci-bot", ROLE_MEMBER);
    uint64_t sid;
    char *ts = h_create_with(f->root, "ci", 30, 0, KIND_SERVICE, bot, &sid, &st);
    assert_int_equal(verify(f, ts, "/api/v1/build", 0, &st), 0);
    assert_int_equal(activity(f, f->root, sid, 0, a, &st), 0);
    assert_int_equal(a->n, 2);
    assert_string_equal(a->actors[1], "root");
    assert_int_equal(activity(f, f->alice, sid, 0, a, &st), PAT__V1__CODE__NOT_FOUND);
    /* Delete is recorded too, with who did it, and the owner can still read
     * the history of the deleted token; nobody else can. */
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), 0);
    assert_int_equal(h_delete(f->alice, id, &st), 0);
    assert_int_equal(activity(f, f->alice, id, 3, a, &st), 0);
    assert_int_equal(a->kinds[0], PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_DELETED);
    assert_string_equal(a->actors[0], "alice");
    assert_int_equal(a->kinds[1], PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_REVOKED);
    assert_int_equal(activity(f, f->bob, id, 3, a, &st), PAT__V1__CODE__NOT_FOUND);
    assert_int_equal(activity(f, f->root, id, 3, a, &st), PAT__V1__CODE__NOT_FOUND);
    assert_int_equal(verify(f, t, "/", 0, &st), PAT__V1__CODE__UNAUTHENTICATED);
    free(a);
    free(t);
    free(ts);
    free(bot);
}

/* ---------------------------------------------------------------- status table */

static void test_status_storage_failure_is_503_and_changes_nothing(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    uint64_t id;
    char *t = create(f->alice, "keep", 30, &id, &st);
    assert_int_equal(h_set_fault(&f->p, 1), 0);
    assert_null(create(f->alice, "lost", 30, NULL, &st));
    expect(&st, PAT__V1__CODE__UNAVAILABLE, 503, "storage_unavailable");
    assert_int_equal(h_update(f->alice, id, 1, NULL, &st), PAT__V1__CODE__UNAVAILABLE);
    /* Reads keep working while writes fail, and the revoke did not happen. */
    assert_int_equal(verify(f, t, "/", 0, &st), 0);
    assert_int_equal(h_set_fault(&f->p, 0), 0);
    size_t n;
    Pat__V1__TokenInfo **list = h_list(f->alice, 0, NULL, &n, &st);
    assert_int_equal(n, 2); /* session and keep; "lost" was never acknowledged */
    assert_int_equal(find(list, n, id)->status, ST_ACTIVE);
    h_list_free(list, n);
    assert_true(h_log_contains(&f->p, "injected fault"));
    free(t);
}

static void test_status_overload_is_resource_exhausted(void **state)
{
    (void)state;
    /* One worker, a queue of one: a burst of synced creates overflows. */
    static const char *const flags[] = {"--workers", "1", "--max-queue", "1", NULL};
    patd_t p;
    assert_int_equal(h_start(&p, 1, flags), 0);
    assert_int_equal(h_user(&p, "u", ROLE_MEMBER), 0);
    pat_client_t *c = h_platform(&p, "u");
    enum { N = 64 };
    int ok, over;
    assert_int_equal(h_create_burst(c, N, "t", &ok, &over), 0);
    assert_true(ok >= 1);
    assert_true(over >= 1);
    assert_int_equal(ok + over, N);
    h_close(c);
    h_cleanup(&p);
}

static void test_status_user_management_is_platform_only(void **state)
{
    fx_t *f = *state;
    pat_status_t st;
    Pat__V1__ListUsersRequest req = PAT__V1__LIST_USERS_REQUEST__INIT;
    assert_int_equal(h_call(f->root, "ListUsers", &req.base, NULL, NULL, &st),
                     PAT__V1__CODE__PERMISSION_DENIED);
    expect(&st, PAT__V1__CODE__PERMISSION_DENIED, 403, "platform_only");
    pat_client_t *anon = h_connect(&f->p);
    assert_int_equal(h_call(anon, "ListUsers", &req.base, NULL, NULL, &st),
                     PAT__V1__CODE__UNAUTHENTICATED);
    expect(&st, PAT__V1__CODE__UNAUTHENTICATED, 401, "missing_credential");
    h_close(anon);
    /* A user may read themself, nobody else. */
    Pat__V1__GetUserRequest get = PAT__V1__GET_USER_REQUEST__INIT;
    get.user_id = "alice";
    assert_int_equal(h_call(f->alice, "GetUser", &get.base, NULL, NULL, &st), 0);
    get.user_id = "bob";
    assert_int_equal(h_call(f->alice, "GetUser", &get.base, NULL, NULL, &st),
                     PAT__V1__CODE__NOT_FOUND);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_R1_personal_token_authenticates_as_its_user_with_current_role),
        T(test_R2_member_manages_own_tokens_without_an_admin),
        T(test_R3_others_tokens_are_invisible_even_to_admins),
        T(test_R4_service_users_and_tokens_are_admin_only),
        T(test_R5_scim_tokens_only_reach_scim_paths),
        T(test_R6_names_required_bounded_utf8_unique),
        T(test_R6_concurrent_creates_of_one_name_exactly_one_wins),
        T(test_R7_expiration_choices_and_range),
        T(test_R8_token_value_shown_once_and_never_again),
        T(test_R9_name_owner_kind_expiration_are_fixed),
        T(test_R10_bearer_token_works_from_any_client),
        T(test_R11_no_idle_timeout_only_expiry_revoke_or_deactivation),
        T(test_R12_expiry_stops_the_token_by_itself),
        T(test_R13_role_change_applies_on_the_next_request),
        T(test_R14_deactivation_applies_at_once_to_every_token),
        T(test_R15_last_used_recorded_without_lag_in_the_list),
        T(test_R16_revoke_is_immediate),
        T(test_R17_restore_is_update_with_revoke_false),
        T(test_R18_restoring_an_expired_token_keeps_it_expired),
        T(test_R19_delete_only_revoked_or_expired_and_permanent),
        T(test_R20_list_shows_every_field_and_never_the_value),
        T(test_R21_refusal_says_which_reason_applies),
        T(test_R21_unknown_but_well_formed_token),
        T(test_R22_recent_activity_after_a_compromise),
        T(test_status_storage_failure_is_503_and_changes_nothing),
        cmocka_unit_test(test_status_overload_is_resource_exhausted),
        T(test_status_user_management_is_platform_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
