/* Integration tests: a real patd process over TCP, through libpatclient.
 * User upsert, create, list, revoke, restore, delete, verify, duplicate
 * names, delete of an active token, restart, pipelining, files and logs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static int setup(void **state)
{
    patd_t *p = calloc(1, sizeof(*p));
    if (h_start(p, 0, NULL) != 0) return -1;
    if (h_user(p, "auth0|alice", 1) != 0 || h_user(p, "auth0|bob", 1) != 0) return -1;
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    patd_t *p = *state;
    h_cleanup(p);
    free(p);
    return 0;
}

static void test_user_upsert_get_list(void **state)
{
    patd_t *p = *state;
    pat_client_t *c = h_platform(p, NULL);
    Pat__V1__User u = PAT__V1__USER__INIT;
    u.user_id = "auth0|alice";
    u.user_name = "alice";
    u.email = "alice@example.com";
    u.name = "Alice Liddell";
    u.role = PAT__V1__ROLE__ROLE_MANAGER;
    Pat__V1__UpsertUserRequest up = PAT__V1__UPSERT_USER_REQUEST__INIT;
    up.user = &u;
    Pat__V1__User *out = NULL;
    pat_status_t st;
    assert_int_equal(h_call(c, "UpsertUser", &up.base, &pat__v1__user__descriptor, &out, &st), 0);
    assert_string_equal(out->email, "alice@example.com");
    assert_int_equal(out->role, PAT__V1__ROLE__ROLE_MANAGER);
    assert_int_equal(out->user_type, PAT__V1__USER_TYPE__USER_TYPE_HUMAN);
    assert_true(out->active);
    int64_t created = out->created;
    assert_true(created > 0);
    protobuf_c_message_free_unpacked(&out->base, NULL);

    /* Upsert again without a role: the role stays, created stays. */
    u.role = 0;
    u.email = "alice@new.example.com";
    assert_int_equal(h_call(c, "UpsertUser", &up.base, &pat__v1__user__descriptor, &out, &st), 0);
    assert_int_equal(out->role, PAT__V1__ROLE__ROLE_MANAGER);
    assert_int_equal(out->created, created);
    protobuf_c_message_free_unpacked(&out->base, NULL);

    Pat__V1__GetUserRequest get = PAT__V1__GET_USER_REQUEST__INIT;
    get.user_id = "auth0|alice";
    assert_int_equal(h_call(c, "GetUser", &get.base, &pat__v1__user__descriptor, &out, &st), 0);
    assert_string_equal(out->email, "alice@new.example.com");
    protobuf_c_message_free_unpacked(&out->base, NULL);
    get.user_id = "auth0|nobody";
    assert_int_equal(h_call(c, "GetUser", &get.base, NULL, NULL, &st), PAT__V1__CODE__NOT_FOUND);

    /* Paging through the users: page size 1 walks all of them once. */
    char page[600] = "";
    int seen = 0;
    do {
        Pat__V1__ListUsersRequest lr = PAT__V1__LIST_USERS_REQUEST__INIT;
        lr.page_size = 1;
        lr.page_token = page;
        Pat__V1__ListUsersResponse *lo = NULL;
        assert_int_equal(
            h_call(c, "ListUsers", &lr.base, &pat__v1__list_users_response__descriptor, &lo, &st),
            0);
        assert_true(lo->n_users <= 1);
        seen += (int)lo->n_users;
        snprintf(page, sizeof(page), "%s", lo->next_page_token);
        protobuf_c_message_free_unpacked(&lo->base, NULL);
    } while (page[0]);
    assert_int_equal(seen, 2);

    /* Bad fields name themselves. */
    u.user_id = "";
    assert_int_equal(h_call(c, "UpsertUser", &up.base, NULL, NULL, &st),
                     PAT__V1__CODE__INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "user.user_id"));
    u.user_id = "x";
    u.role = 99;
    assert_int_equal(h_call(c, "UpsertUser", &up.base, NULL, NULL, &st),
                     PAT__V1__CODE__INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "user.role"));
    pat_close(c);
}

static void test_create_list_revoke_restore_delete_verify(void **state)
{
    patd_t *p = *state;
    pat_status_t st;
    uint64_t id;
    char *tok = h_create(p, "auth0|alice", "laptop", 30, &id, &st);
    assert_non_null(tok);
    assert_true(strncmp(tok, "patp_", 5) == 0);

    Pat__V1__VerifyResponse *vr = NULL;
    assert_int_equal(h_verify(p, tok, "/api/v1/things", 0, &vr, &st), 0);
    assert_string_equal(vr->user->user_id, "auth0|alice");
    assert_int_equal(vr->token->id, id);
    assert_string_equal(vr->token->name, "laptop");
    assert_int_equal(vr->token->status, PAT__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE);
    int64_t exp = vr->token->expiration, created = vr->token->created;
    assert_true(exp - created == 30LL * 86400000);
    protobuf_c_message_free_unpacked(&vr->base, NULL);

    pat_client_t *alice = h_platform(p, "auth0|alice");
    size_t n;
    Pat__V1__TokenInfo **list = h_list(alice, 0, NULL, &n, &st);
    assert_int_equal(n, 1);
    assert_int_equal(list[0]->id, id);
    assert_true(list[0]->last_used >= created);
    assert_string_equal(list[0]->user->user_id, "auth0|alice");
    h_list_free(list, n);

    Pat__V1__TokenInfo *ti = NULL;
    assert_int_equal(h_update(alice, id, 1, &ti, &st), 0);
    assert_int_equal(ti->status, PAT__V1__TOKEN_STATUS__TOKEN_STATUS_REVOKED);
    assert_false(ti->active);
    protobuf_c_message_free_unpacked(&ti->base, NULL);
    assert_int_equal(h_verify(p, tok, "/", 0, NULL, &st), PAT__V1__CODE__UNAUTHENTICATED);
    assert_string_equal(st.reason, "revoked");

    assert_int_equal(h_update(alice, id, 0, &ti, &st), 0);
    assert_int_equal(ti->status, PAT__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE);
    protobuf_c_message_free_unpacked(&ti->base, NULL);
    assert_int_equal(h_verify(p, tok, "/", 0, NULL, &st), 0);

    assert_int_equal(h_update(alice, id, 1, NULL, &st), 0);
    assert_int_equal(h_delete(alice, id, &st), 0);
    assert_int_equal(h_verify(p, tok, "/", 0, NULL, &st), PAT__V1__CODE__UNAUTHENTICATED);
    assert_string_equal(st.reason, "unknown_token");
    list = h_list(alice, 0, NULL, &n, &st);
    assert_int_equal(n, 0);
    h_list_free(list, n);
    pat_close(alice);
    free(tok);
}

static void test_duplicate_name_is_409(void **state)
{
    patd_t *p = *state;
    pat_status_t st;
    char *a = h_create(p, "auth0|alice", "ci", -1, NULL, &st);
    assert_non_null(a);
    char *b = h_create(p, "auth0|alice", "ci", 30, NULL, &st);
    assert_null(b);
    assert_int_equal(st.code, PAT__V1__CODE__ALREADY_EXISTS);
    assert_int_equal(st.http, 409);
    assert_string_equal(st.reason, "duplicate_name");
    /* Another owner may use the same name. */
    char *c = h_create(p, "auth0|bob", "ci", 30, NULL, &st);
    assert_non_null(c);
    free(a);
    free(c);
}

static void test_delete_of_active_token_is_400(void **state)
{
    patd_t *p = *state;
    pat_status_t st;
    uint64_t id;
    char *t = h_create(p, "auth0|alice", "keep", 30, &id, &st);
    pat_client_t *alice = h_platform(p, "auth0|alice");
    assert_int_equal(h_delete(alice, id, &st), PAT__V1__CODE__FAILED_PRECONDITION);
    assert_int_equal(st.http, 400);
    assert_string_equal(st.reason, "token_active");
    assert_int_equal(h_verify(p, t, "/", 0, NULL, &st), 0);
    pat_close(alice);
    free(t);
}

static void test_restart_then_verify(void **state)
{
    patd_t *p = *state;
    pat_status_t st;
    uint64_t id_live, id_revoked;
    char *live = h_create(p, "auth0|alice", "live", 30, &id_live, &st);
    char *revoked = h_create(p, "auth0|alice", "revoked", 30, &id_revoked, &st);
    pat_client_t *alice = h_platform(p, "auth0|alice");
    assert_int_equal(h_update(alice, id_revoked, 1, NULL, &st), 0);
    assert_int_equal(h_verify(p, live, "/", 0, NULL, &st), 0);
    pat_close(alice);
    assert_int_equal(h_stop(p), 0);
    assert_int_equal(h_restart(p), 0);
    assert_int_equal(h_verify(p, live, "/", 0, NULL, &st), 0);
    assert_int_equal(h_verify(p, revoked, "/", 0, NULL, &st), PAT__V1__CODE__UNAUTHENTICATED);
    assert_string_equal(st.reason, "revoked");
    /* last_used of the verify before the restart was flushed at shutdown. */
    alice = h_platform(p, "auth0|alice");
    size_t n;
    Pat__V1__TokenInfo **list = h_list(alice, 0, NULL, &n, &st);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (list[i]->id == id_live)
            assert_true(list[i]->last_used > 0);
        else
            assert_int_equal(list[i]->last_used, 0);
    }
    h_list_free(list, n);
    /* New ids keep growing after a restart. */
    uint64_t id_new;
    char *again = h_create(p, "auth0|alice", "after-restart", 30, &id_new, &st);
    assert_true(id_new > id_revoked);
    pat_close(alice);
    free(live);
    free(revoked);
    free(again);
}

static void test_pipelined_requests_are_answered_by_id(void **state)
{
    patd_t *p = *state;
    pat_status_t st;
    char *tok = h_create(p, "auth0|alice", "pipe", 30, NULL, &st);
    pat_client_t *c = h_connect(p);
    enum { N = 500 };
    /* Even ids verify a good token, odd ids a bad one: each answer must
     * match its own request. */
    for (uint64_t id = 1; id <= N; id++) {
        Pat__V1__VerifyRequest req = PAT__V1__VERIFY_REQUEST__INIT;
        req.bearer_token = id % 2 ? "patp_bad" : tok;
        assert_int_equal(pat_send(c, id, "Verify", &req.base), 0);
    }
    static int seen[N + 1];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < N; i++) {
        Pat__V1__Response *r;
        assert_int_equal(pat_recv(c, &r), 0);
        assert_true(r->id >= 1 && r->id <= N);
        assert_int_equal(seen[r->id], 0);
        seen[r->id] = 1;
        assert_int_equal(r->status->code, r->id % 2 ? PAT__V1__CODE__UNAUTHENTICATED : 0);
        pat__v1__response__free_unpacked(r, NULL);
    }
    pat_close(c);
    free(tok);
}

/* A client that pipelines far more than the socket buffers hold, and reads
 * only later, must still get every answer once, in full (bug check for the
 * server's write path: a partial write goes to a queued write, a paused
 * connection resumes from its stash, and answers found on resume are
 * flushed without waiting for another poll). */
typedef struct {
    pat_client_t *c;
    const char *tok;
    int n;
    int failed;
} late_reader_t;

static void *late_reader_send(void *arg)
{
    late_reader_t *l = arg;
    for (int id = 1; id <= l->n; id++) {
        Pat__V1__VerifyRequest req = PAT__V1__VERIFY_REQUEST__INIT;
        req.bearer_token = id % 3 ? (char *)l->tok : "patp_bad";
        req.path = "/api/v1/a-path-long-enough-to-make-the-requests-weigh-something";
        if (pat_send(l->c, (uint64_t)id, "Verify", &req.base) != 0) {
            l->failed = id;
            break;
        }
    }
    return NULL;
}

static void test_late_reader_gets_every_answer(void **state)
{
    patd_t *p = *state;
    pat_status_t st;
    char *tok = h_create(p, "auth0|alice", "late", 30, NULL, &st);
    assert_non_null(tok);
    pat_client_t *c = h_connect(p);
    /* A fixed receive window (no autotuning), so the server's socket fills;
     * much smaller and loopback TCP crawls on window probes. */
    int small = 64 * 1024;
    setsockopt(pat_fd(c), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    setsockopt(pat_fd(c), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    enum { N = 100000 };
    late_reader_t l = {.c = c, .tok = tok, .n = N};
    pthread_t sender;
    pthread_create(&sender, NULL, late_reader_send, &l);
    usleep(300 * 1000); /* not reading: the server must hold back */
    static unsigned char seen[N + 1];
    memset(seen, 0, sizeof(seen));
    int got = 0;
    for (; got < N; got++) {
        Pat__V1__Response *r;
        if (pat_recv(c, &r) != 0) break;
        assert_true(r->id >= 1 && r->id <= N);
        assert_int_equal(seen[r->id], 0);
        seen[r->id] = 1;
        assert_int_equal(r->status->code, r->id % 3 ? 0 : PAT__V1__CODE__UNAUTHENTICATED);
        pat__v1__response__free_unpacked(r, NULL);
    }
    pthread_join(sender, NULL);
    assert_int_equal(l.failed, 0);
    assert_int_equal(got, N);
    pat_close(c);
    free(tok);
}

static void test_files_are_private_and_secrets_stay_out_of_the_log(void **state)
{
    patd_t *p = *state;
    struct stat sb;
    assert_int_equal(stat(p->dir, &sb), 0);
    char key_path[300];
    snprintf(key_path, sizeof(key_path), "%s/platform.key", p->dir);
    assert_int_equal(stat(key_path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char db[300];
    snprintf(db, sizeof(db), "%s/db", p->dir);
    if (!p->store[0]) { /* the embedded store's directory */
        assert_int_equal(stat(db, &sb), 0);
        assert_int_equal(sb.st_mode & 077, 0);
    }

    pat_status_t st;
    char *tok = h_create(p, "auth0|alice", "secret-check", 30, NULL, &st);
    h_verify(p, tok, "/", 0, NULL, &st);
    tok[10] ^= 1; /* a failed verify must not log the attempted value either */
    h_verify(p, tok, "/", 0, NULL, &st);
    tok[10] ^= 1;
    assert_int_equal(h_stop(p), 0);
    assert_true(h_log_contains(p, "platform_key_created"));
    assert_false(h_log_contains(p, p->key));
    assert_false(h_log_contains(p, tok));
    assert_false(h_log_contains(p, tok + 5)); /* nor its random part alone */
    free(tok);
    assert_int_equal(h_restart(p), 0);
}

static void test_world_readable_platform_key_refuses_start(void **state)
{
    patd_t *p = *state;
    assert_int_equal(h_stop(p), 0);
    char key_path[300];
    snprintf(key_path, sizeof(key_path), "%s/platform.key", p->dir);
    assert_int_equal(chmod(key_path, 0644), 0);
    assert_int_not_equal(h_restart(p), 0);
    assert_true(h_log_contains(p, "chmod 600"));
    assert_int_equal(chmod(key_path, 0600), 0);
    assert_int_equal(h_restart(p), 0);
}

static void test_platform_needs_act_as_for_token_methods(void **state)
{
    patd_t *p = *state;
    pat_client_t *c = h_platform(p, NULL);
    pat_status_t st;
    assert_null(h_create_with(c, "x", 30, 0, 0, NULL, NULL, &st));
    assert_int_equal(st.code, PAT__V1__CODE__UNAUTHENTICATED);
    assert_non_null(strstr(st.message, "x-act-as-user"));
    pat_close(c);
    c = h_platform(p, "auth0|nobody");
    assert_null(h_create_with(c, "x", 30, 0, 0, NULL, NULL, &st));
    assert_int_equal(st.code, PAT__V1__CODE__NOT_FOUND);
    pat_close(c);
}

static void test_sigterm_exits_zero(void **state)
{
    patd_t *p = *state;
    assert_int_equal(h_stop(p), 0);
    assert_true(h_log_contains(p, "event=stopped"));
    assert_int_equal(h_restart(p), 0);
}

/* One page of alice's personal tokens; returns the answer's code, with
 * its next page token in next. */
static int list_page(pat_client_t *c, const char *page_token, char *next, size_t cap,
                     char *first_name, pat_status_t *st)
{
    Pat__V1__ListTokensRequest lr = PAT__V1__LIST_TOKENS_REQUEST__INIT;
    lr.page_size = 1;
    lr.page_token = (char *)page_token;
    Pat__V1__ListTokensResponse *lo = NULL;
    int rc = h_call(c, "ListTokens", &lr.base, &pat__v1__list_tokens_response__descriptor, &lo, st);
    if (rc == 0) {
        snprintf(next, cap, "%s", lo->next_page_token);
        snprintf(first_name, 64, "%s", lo->n_tokens ? lo->tokens[0]->name : "");
        protobuf_c_message_free_unpacked(&lo->base, NULL);
    }
    return rc;
}

/* Issue 13: page tokens are opaque (they show neither the owner nor a
 * token name), sealed with a key kept in the store, so another process on
 * the same store takes them; an altered one, or one used for another
 * list, is INVALID_ARGUMENT. */
static void test_page_tokens_are_opaque_and_work_across_processes(void **state)
{
    patd_t *p = *state;
    const char *names[] = {"alpha-ci", "bravo-ci", "charlie-ci"};
    for (int i = 0; i < 3; i++)
        free(h_create(p, "auth0|alice", names[i], 30, NULL, NULL));
    pat_client_t *c = h_platform(p, "auth0|alice");
    char next[1024], name[64];
    pat_status_t st;
    assert_int_equal(list_page(c, "", next, sizeof(next), name, &st), 0);
    assert_string_equal(name, "alpha-ci");
    assert_true(next[0]);
    assert_null(strstr(next, "alice"));
    assert_null(strstr(next, "616c696365")); /* nor in hex */
    assert_null(strstr(next, "alpha"));
    pat_close(c);

    assert_int_equal(h_stop(p), 0);
    assert_int_equal(h_restart(p), 0); /* another process, the same store */
    c = h_platform(p, "auth0|alice");
    char token[1024];
    snprintf(token, sizeof(token), "%s", next);
    assert_int_equal(list_page(c, token, next, sizeof(next), name, &st), 0);
    assert_string_equal(name, "bravo-ci");

    /* Every seventh character changed, and the last: each one refused. */
    size_t len = strlen(token);
    for (size_t k = 0; k <= len / 7; k++) {
        size_t i = k < len / 7 ? 7 * k : len - 1;
        char bad[1024];
        snprintf(bad, sizeof(bad), "%s", token);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_int_equal(list_page(c, bad, next, sizeof(next), name, &st),
                         PAT__V1__CODE__INVALID_ARGUMENT);
        assert_string_equal(st.reason, "invalid_field");
    }
    char cut[1024];
    snprintf(cut, sizeof(cut), "%.*s", (int)strlen(token) - 4, token);
    assert_int_equal(list_page(c, cut, next, sizeof(next), name, &st),
                     PAT__V1__CODE__INVALID_ARGUMENT);
    assert_int_equal(list_page(c, "not-a-page-token", next, sizeof(next), name, &st),
                     PAT__V1__CODE__INVALID_ARGUMENT);
    pat_close(c);
    /* Bound to its list: bob cannot page alice's list with it. */
    pat_client_t *bob = h_platform(p, "auth0|bob");
    assert_int_equal(list_page(bob, token, next, sizeof(next), name, &st),
                     PAT__V1__CODE__INVALID_ARGUMENT);
    pat_close(bob);

    /* Another store's patd does not take it. */
    patd_t other = {0};
    assert_int_equal(h_start(&other, 0, NULL), 0);
    assert_int_equal(h_user(&other, "auth0|alice", 1), 0);
    pat_client_t *oc = h_platform(&other, "auth0|alice");
    assert_int_equal(list_page(oc, token, next, sizeof(next), name, &st),
                     PAT__V1__CODE__INVALID_ARGUMENT);
    pat_close(oc);
    h_cleanup(&other);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_user_upsert_get_list),
        T(test_create_list_revoke_restore_delete_verify),
        T(test_duplicate_name_is_409),
        T(test_delete_of_active_token_is_400),
        T(test_restart_then_verify),
        T(test_pipelined_requests_are_answered_by_id),
        T(test_late_reader_gets_every_answer),
        T(test_files_are_private_and_secrets_stay_out_of_the_log),
        T(test_world_readable_platform_key_refuses_start),
        T(test_platform_needs_act_as_for_token_methods),
        T(test_sigterm_exits_zero),
        T(test_page_tokens_are_opaque_and_work_across_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
