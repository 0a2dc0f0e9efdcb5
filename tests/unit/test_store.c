/* Unit tests of the store interface (storage/store.h) against a real
 * backend: RocksDB in a temporary directory, or (with PATD_TEST_PG_DIR,
 * ctest's unit.test_store.postgresql) a fresh database of the test
 * PostgreSQL: each operation's contract (preconditions, uniqueness under
 * races, atomicity, the observer), paging, restart, id allocation,
 * activity, and the consistency check. */
#include <pthread.h>
#include <rocksdb/c.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"

typedef struct {
    char dir[64];
    char url[256];
    char db[64]; /* PostgreSQL: the database's name */
    store_t *st;
    int token_calls, user_calls;
    uint8_t last_hash[STORE_HASH_BYTES];
    char last_user[STORE_ID_MAX + 1];
} fixture_t;

static void on_token(void *arg, const uint8_t hash[STORE_HASH_BYTES])
{
    fixture_t *f = arg;
    f->token_calls++;
    memcpy(f->last_hash, hash, STORE_HASH_BYTES);
}

static void on_user(void *arg, const char *user_id)
{
    fixture_t *f = arg;
    f->user_calls++;
    snprintf(f->last_user, sizeof(f->last_user), "%s", user_id);
}

static void open_store(fixture_t *f)
{
    char *err = NULL;
    f->st = store_open(f->url, NULL, &err);
    if (f->st == NULL) fprintf(stderr, "%s\n", err);
    assert_non_null(f->st);
    store_observer_t obs = {.token_changed = on_token, .user_changed = on_user, .arg = f};
    store_set_observer(f->st, &obs);
}

static const char *pg_dir(void)
{
    return getenv("PATD_TEST_PG_DIR");
}

/* Runs SQL on the fixture's database (PostgreSQL only). */
static void sql(const fixture_t *f, const char *text)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "psql -X -q -v ON_ERROR_STOP=1 -h '%s' -U postgres -d '%s' -c \"%s\"", pg_dir(), f->db,
             text);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/patd-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) return -1;
    snprintf(f->url, sizeof(f->url), "rocksdb:%s", f->dir);
    if (pg_dir()) {
        snprintf(f->db, sizeof(f->db), "store_%s", f->dir + strlen("/tmp/patd-store-"));
        for (char *c = f->db; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "createdb -h '%s' -U postgres '%s'", pg_dir(), f->db);
        if (system(cmd) != 0) return -1;
        snprintf(f->url, sizeof(f->url), "postgresql:///%s?host=%s&user=postgres", f->db, pg_dir());
    }
    open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    store_close(f->st);
    char cmd[512];
    if (f->db[0]) {
        snprintf(cmd, sizeof(cmd), "dropdb --force -h '%s' -U postgres '%s'", pg_dir(), f->db);
        if (system(cmd) != 0) return -1;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void reopen(fixture_t *f)
{
    store_close(f->st);
    open_store(f);
}

static store_user_t user(const char *id, int type, int role)
{
    store_user_t u = {.role = role, .user_type = type, .active = 1, .created = 1000};
    snprintf(u.user_id, sizeof(u.user_id), "%s", id);
    snprintf(u.created_by, sizeof(u.created_by), "test");
    return u;
}

static store_token_t token(const char *owner, const char *name, int kind, uint8_t seed)
{
    store_token_t t = {.kind = kind, .active = 1, .created = 1000};
    memset(t.hash, seed, sizeof(t.hash));
    snprintf(t.owner_id, sizeof(t.owner_id), "%s", owner);
    snprintf(t.name, sizeof(t.name), "%s", name);
    return t;
}

static store_event_t event(store_t *st, int kind, int64_t time)
{
    store_event_t ev = {.seq = store_event_seq(st), .kind = kind, .time = time};
    snprintf(ev.actor, sizeof(ev.actor), "tester");
    return ev;
}

static uint64_t create(fixture_t *f, const char *owner, const char *name, int kind, uint8_t seed)
{
    store_token_t t = token(owner, name, kind, seed);
    store_event_t ev = event(f->st, STORE_EVENT_CREATED, 1000);
    assert_int_equal(store_token_create(f->st, &t, &ev), STORE_OK);
    return t.id;
}

static void test_users_upsert_keeps_state_and_survives_restart(void **state)
{
    fixture_t *f = *state;
    store_user_t a = user("auth0|a", STORE_USER_HUMAN, 0), now, prev;
    assert_int_equal(store_user_upsert(f->st, &a, &now, &prev), STORE_OK);
    assert_string_equal(prev.user_id, ""); /* created */
    assert_int_equal(now.role, STORE_ROLE_MEMBER);
    assert_int_equal(store_user_set_active(f->st, "auth0|a", 0, 0, 0, &now, NULL), STORE_OK);
    /* An upsert changes the profile and role, never active or created. */
    store_user_t again = user("auth0|a", STORE_USER_HUMAN, 3);
    again.active = 1;
    again.created = 99999;
    snprintf(again.email, sizeof(again.email), "a@example.com");
    assert_int_equal(store_user_upsert(f->st, &again, &now, &prev), STORE_OK);
    assert_int_equal(prev.role, STORE_ROLE_MEMBER);
    assert_int_equal(now.role, 3);
    assert_false(now.active);
    assert_int_equal(now.created, 1000);
    reopen(f);
    store_user_t got;
    assert_int_equal(store_user_get(f->st, "auth0|a", &got), STORE_OK);
    assert_string_equal(got.email, "a@example.com");
    assert_false(got.active);
    assert_int_equal(store_user_get(f->st, "nobody", &got), STORE_NOT_FOUND);
    /* A service user is not the platform's to upsert. */
    store_user_t svc = user("svc_1", STORE_USER_SERVICE, 1);
    assert_int_equal(store_user_create(f->st, &svc), STORE_OK);
    assert_int_equal(store_user_create(f->st, &svc), STORE_EXISTS);
    store_user_t as_human = user("svc_1", STORE_USER_HUMAN, 1);
    assert_int_equal(store_user_upsert(f->st, &as_human, &now, NULL), STORE_CONFLICT);
}

static void test_users_list_pages_by_cursor_and_type(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "u%02d", i);
        store_user_t u = user(id, i % 2 ? STORE_USER_SERVICE : STORE_USER_HUMAN, 1);
        assert_int_equal(store_user_create(f->st, &u), STORE_OK);
    }
    store_user_t page[4];
    unsigned n;
    int more;
    store_cursor_t after = {0}, next;
    int seen = 0;
    do {
        assert_int_equal(store_users_list(f->st, 0, &after, 4, page, &n, &more, &next), STORE_OK);
        for (unsigned i = 0; i < n; i++) {
            char id[16];
            snprintf(id, sizeof(id), "u%02d", seen++);
            assert_string_equal(page[i].user_id, id);
        }
        after = next;
    } while (more);
    assert_int_equal(seen, 10);
    assert_int_equal(store_users_list(f->st, STORE_USER_SERVICE, &(store_cursor_t){0}, 4, page, &n,
                                      &more, &next),
                     STORE_OK);
    assert_int_equal(n, 4);
    assert_true(more);
    assert_string_equal(page[0].user_id, "u01");
    assert_string_equal(page[3].user_id, "u07");
}

static void test_token_create_checks_owner_and_name(void **state)
{
    fixture_t *f = *state;
    store_user_t alice = user("alice", STORE_USER_HUMAN, 1);
    assert_int_equal(store_user_create(f->st, &alice), STORE_OK);
    uint64_t first = create(f, "alice", "ci", STORE_KIND_PERSONAL, 1);
    store_token_t dup = token("alice", "ci", STORE_KIND_PERSONAL, 2);
    store_event_t ev = event(f->st, STORE_EVENT_CREATED, 1000);
    assert_int_equal(store_token_create(f->st, &dup, &ev), STORE_EXISTS);
    store_token_t nobody = token("ghost", "ci", STORE_KIND_PERSONAL, 3);
    assert_int_equal(store_token_create(f->st, &nobody, &ev), STORE_NOT_FOUND);
    assert_int_equal(store_user_set_active(f->st, "alice", 0, 0, 0, &alice, NULL), STORE_OK);
    store_token_t later = token("alice", "other", STORE_KIND_PERSONAL, 4);
    assert_int_equal(store_token_create(f->st, &later, &ev), STORE_CONFLICT);
    /* The refused creates wrote nothing: the first token is alone. */
    store_token_t got[4];
    unsigned n;
    int more;
    store_cursor_t next;
    assert_int_equal(store_tokens_list(f->st, STORE_KIND_PERSONAL, "alice", &(store_cursor_t){0}, 4,
                                       got, &n, &more, &next),
                     STORE_OK);
    assert_int_equal(n, 1);
    assert_int_equal(got[0].id, first);
    uint8_t h2[STORE_HASH_BYTES];
    memset(h2, 2, sizeof(h2));
    assert_int_equal(store_token_get_by_hash(f->st, h2, &got[1]), STORE_NOT_FOUND);
}

typedef struct {
    fixture_t *f;
    int ok, exists;
    pthread_mutex_t lock;
} race_t;

static void *race_create(void *arg)
{
    race_t *r = arg;
    static _Atomic int seed = 10;
    store_token_t t = token("bob", "same-name", STORE_KIND_PERSONAL, (uint8_t)seed++);
    store_event_t ev = event(r->f->st, STORE_EVENT_CREATED, 1000);
    store_status_t s = store_token_create(r->f->st, &t, &ev);
    pthread_mutex_lock(&r->lock);
    r->ok += s == STORE_OK;
    r->exists += s == STORE_EXISTS;
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* R6: uniqueness is the store's job, whichever thread asks. */
static void test_R6_racing_creates_make_one_token(void **state)
{
    fixture_t *f = *state;
    store_user_t bob = user("bob", STORE_USER_HUMAN, 1);
    assert_int_equal(store_user_create(f->st, &bob), STORE_OK);
    race_t r = {.f = f};
    pthread_mutex_init(&r.lock, NULL);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, race_create, &r);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(r.ok, 1);
    assert_int_equal(r.exists, 7);
    assert_int_equal(store_check(f->st, stderr), 0);
}

static void test_tokens_list_pages_and_ids_never_repeat(void **state)
{
    fixture_t *f = *state;
    store_user_t a = user("alice", STORE_USER_HUMAN, 1), b = user("bob", STORE_USER_HUMAN, 1);
    assert_int_equal(store_user_create(f->st, &a), STORE_OK);
    assert_int_equal(store_user_create(f->st, &b), STORE_OK);
    uint64_t last = 0;
    const char *names[] = {"ci", "backup", "deploy"};
    for (int round = 0; round < 3; round++) {
        uint64_t id = create(f, round == 2 ? "bob" : "alice", names[round], STORE_KIND_PERSONAL,
                             (uint8_t)(round + 1));
        assert_true(id > last);
        last = id;
        reopen(f);
    }
    store_token_t got[2];
    unsigned n;
    int more;
    store_cursor_t next;
    assert_int_equal(store_tokens_list(f->st, STORE_KIND_PERSONAL, "alice", &(store_cursor_t){0}, 1,
                                       got, &n, &more, &next),
                     STORE_OK);
    assert_int_equal(n, 1);
    assert_true(more);
    assert_string_equal(got[0].name, "backup"); /* name order */
    store_cursor_t after = next;
    assert_int_equal(
        store_tokens_list(f->st, STORE_KIND_PERSONAL, "alice", &after, 1, got, &n, &more, &next),
        STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].name, "ci");
    assert_false(more);
    /* Every owner of a kind: each token once, each owner's together. */
    char seen[8][2 * STORE_ID_MAX + 2];
    int k = 0;
    store_cursor_t from = {0};
    do {
        assert_int_equal(
            store_tokens_list(f->st, STORE_KIND_PERSONAL, NULL, &from, 2, got, &n, &more, &from),
            STORE_OK);
        for (unsigned i = 0; i < n; i++)
            snprintf(seen[k++], sizeof(seen[0]), "%s/%s", got[i].owner_id, got[i].name);
    } while (more);
    assert_int_equal(k, 3);
    int alice_at = strcmp(seen[0], "bob/deploy") == 0 ? 1 : 0;
    assert_string_equal(seen[alice_at], "alice/backup");
    assert_string_equal(seen[alice_at + 1], "alice/ci");
    assert_string_equal(seen[alice_at ? 0 : 2], "bob/deploy");
}

/* R16, R17, R19: revoke, restore and delete, each one step that tells the
 * observer before it returns. */
static void test_R16_R19_state_changes_tell_the_observer(void **state)
{
    fixture_t *f = *state;
    store_user_t a = user("alice", STORE_USER_HUMAN, 1);
    assert_int_equal(store_user_create(f->st, &a), STORE_OK);
    uint64_t id = create(f, "alice", "ci", STORE_KIND_PERSONAL, 7);
    store_token_t t;
    store_event_t del = event(f->st, STORE_EVENT_DELETED, 2000);
    assert_int_equal(store_token_delete(f->st, id, 2000, &del, &t), STORE_CONFLICT); /* active */
    del.time = 2001; /* the delete below comes after the revoke */
    int changed = 0, calls = f->token_calls;
    store_event_t rev = event(f->st, STORE_EVENT_REVOKED, 2000);
    assert_int_equal(store_token_set_active(f->st, id, 0, &rev, &t, &changed), STORE_OK);
    assert_true(changed);
    assert_int_equal(f->token_calls, calls + 1);
    assert_int_equal(f->last_hash[0], 7);
    assert_int_equal(store_token_set_active(f->st, id, 0, &rev, &t, &changed), STORE_OK);
    assert_false(changed); /* already revoked: nothing written */
    /* Restore waits for the owner (user_inactive). */
    assert_int_equal(store_user_set_active(f->st, "alice", 0, 0, 0, &a, NULL), STORE_OK);
    assert_string_equal(f->last_user, "alice");
    store_event_t res = event(f->st, STORE_EVENT_RESTORED, 2000);
    assert_int_equal(store_token_set_active(f->st, id, 1, &res, &t, &changed), STORE_CONFLICT);
    assert_false(t.active);
    /* Deleted: gone from every index, its name free, its history kept. */
    calls = f->token_calls;
    assert_int_equal(store_token_delete(f->st, id, 2000, &del, &t), STORE_OK);
    assert_int_equal(f->token_calls, calls + 1);
    assert_int_equal(store_token_get(f->st, id, &t), STORE_NOT_FOUND);
    uint8_t h[STORE_HASH_BYTES];
    memset(h, 7, sizeof(h));
    assert_int_equal(store_token_get_by_hash(f->st, h, &t), STORE_NOT_FOUND);
    store_event_t evs[4];
    unsigned n;
    assert_int_equal(store_activity_list(f->st, id, 4, evs, &n), STORE_OK);
    assert_int_equal(n, 3); /* created, revoked, deleted */
    assert_int_equal(evs[0].kind, STORE_EVENT_DELETED);
    assert_string_equal(evs[0].owner_id, "alice");
    assert_int_equal(evs[0].token_kind, STORE_KIND_PERSONAL);
    assert_int_equal(evs[2].kind, STORE_EVENT_CREATED);
    assert_int_equal(store_user_set_active(f->st, "alice", 1, 0, 0, &a, NULL), STORE_OK);
    create(f, "alice", "ci", STORE_KIND_PERSONAL, 8);
    assert_int_equal(store_check(f->st, stderr), 0);
}

/* R4: a service user goes only once none of its tokens works, with them. */
static void test_R4_service_user_delete_cascades(void **state)
{
    fixture_t *f = *state;
    store_user_t s = user("svc_a", STORE_USER_SERVICE, 1);
    assert_int_equal(store_user_create(f->st, &s), STORE_OK);
    uint64_t t1 = create(f, "svc_a", "one", STORE_KIND_SERVICE, 21);
    uint64_t t2 = create(f, "svc_a", "two", STORE_KIND_SERVICE, 22);
    unsigned n_active = 0;
    uint64_t *ids;
    size_t n_ids;
    store_event_t del = event(f->st, STORE_EVENT_DELETED, 3000);
    assert_int_equal(store_user_set_active(f->st, "svc_a", 0, 1, 3000, &s, &n_active),
                     STORE_CONFLICT);
    assert_int_equal(n_active, 2);
    assert_int_equal(store_user_delete(f->st, "svc_a", 3000, &del, &n_active, &ids, &n_ids),
                     STORE_CONFLICT);
    store_token_t t;
    store_event_t rev = event(f->st, STORE_EVENT_REVOKED, 3000);
    assert_int_equal(store_token_set_active(f->st, t1, 0, &rev, &t, NULL), STORE_OK);
    assert_int_equal(store_token_set_active(f->st, t2, 0, &rev, &t, NULL), STORE_OK);
    int calls = f->token_calls;
    assert_int_equal(store_user_delete(f->st, "svc_a", 3000, &del, &n_active, &ids, &n_ids),
                     STORE_OK);
    assert_int_equal(n_ids, 2);
    assert_true((ids[0] == t1 && ids[1] == t2) || (ids[0] == t2 && ids[1] == t1));
    free(ids);
    assert_int_equal(f->token_calls, calls + 2);
    assert_string_equal(f->last_user, "svc_a");
    assert_int_equal(store_user_get(f->st, "svc_a", &s), STORE_NOT_FOUND);
    assert_int_equal(store_token_get(f->st, t1, &t), STORE_NOT_FOUND);
    store_event_t evs[1];
    unsigned n;
    assert_int_equal(store_activity_list(f->st, t2, 1, evs, &n), STORE_OK);
    assert_int_equal(evs[0].kind, STORE_EVENT_DELETED);
    assert_string_equal(evs[0].owner_id, "svc_a");
    assert_int_equal(store_check(f->st, stderr), 0);
}

static void test_R15_usage_batches_and_activity_trim(void **state)
{
    fixture_t *f = *state;
    store_usage_t *b = store_usage_begin(f->st);
    for (int i = 1; i <= 150; i++) {
        store_event_t ev = event(f->st, STORE_EVENT_USED, 1000 + i);
        snprintf(ev.path, sizeof(ev.path), "/api/x");
        store_usage_event(b, 7, &ev);
        store_usage_event(b, 8, &ev); /* a neighbour, untouched by the trim */
    }
    store_usage_last_used(b, 7, 1150);
    assert_int_equal(store_usage_commit(b), STORE_OK);
    int64_t ms;
    assert_int_equal(store_last_used_get(f->st, 7, &ms), STORE_OK);
    assert_int_equal(ms, 1150);
    assert_int_equal(store_last_used_get(f->st, 9, &ms), STORE_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(store_activity_trim(f->st, 7, 100), STORE_OK);
    store_event_t evs[200];
    unsigned n;
    assert_int_equal(store_activity_list(f->st, 7, 200, evs, &n), STORE_OK);
    assert_int_equal(n, 100);
    assert_int_equal(evs[0].time, 1150);
    assert_int_equal(evs[99].time, 1051);
    assert_string_equal(evs[0].path, "/api/x");
    assert_int_equal(store_activity_list(f->st, 8, 200, evs, &n), STORE_OK);
    assert_int_equal(n, 150);
    uint64_t id;
    assert_int_equal(store_activity_next_id(f->st, 0, &id), STORE_OK);
    assert_int_equal(id, 7);
    assert_int_equal(store_activity_next_id(f->st, 7, &id), STORE_OK);
    assert_int_equal(id, 8);
    assert_int_equal(store_activity_next_id(f->st, 8, &id), STORE_NOT_FOUND);
}

static void test_failed_writes_change_nothing(void **state)
{
    fixture_t *f = *state;
    store_user_t a = user("alice", STORE_USER_HUMAN, 1);
    assert_int_equal(store_user_create(f->st, &a), STORE_OK);
    store_set_fail_writes(f->st, 1);
    store_token_t t = token("alice", "ci", STORE_KIND_PERSONAL, 5);
    store_event_t ev = event(f->st, STORE_EVENT_CREATED, 1000);
    assert_int_equal(store_token_create(f->st, &t, &ev), STORE_UNAVAILABLE);
    assert_int_equal(store_user_set_active(f->st, "alice", 0, 0, 0, &a, NULL), STORE_UNAVAILABLE);
    store_set_fail_writes(f->st, 0);
    assert_int_equal(store_user_get(f->st, "alice", &a), STORE_OK);
    assert_true(a.active);
    assert_int_equal(store_token_get_by_hash(f->st, t.hash, &t), STORE_NOT_FOUND);
    store_set_decline_tries(f->st, 1);
    assert_int_equal(store_user_try_get(f->st, "alice", &a), STORE_DECLINED);
    store_set_decline_tries(f->st, 0);
}

/* The page key is made with the store and the same for every process that
 * opens it (page tokens of one node work on another). */
static void test_page_key_made_once_with_the_store(void **state)
{
    fixture_t *f = *state;
    uint8_t k1[STORE_PAGE_KEY], k2[STORE_PAGE_KEY], zero[STORE_PAGE_KEY] = {0};
    store_page_key(f->st, k1);
    assert_memory_not_equal(k1, zero, sizeof(zero));
    reopen(f);
    store_page_key(f->st, k2);
    assert_memory_equal(k1, k2, sizeof(k1));
}

/* The RocksDB backend's own check: an index entry left behind is found. */
static void test_check_finds_a_missing_index_entry(void **state)
{
    fixture_t *f = *state;
    store_user_t a = user("alice", STORE_USER_HUMAN, 1);
    assert_int_equal(store_user_create(f->st, &a), STORE_OK);
    create(f, "alice", "ci", STORE_KIND_PERSONAL, 9);
    assert_int_equal(store_check(f->st, stderr), 0);
    if (f->db[0]) {
        /* The database keeps its indexes itself; what it does not check is
         * a sequence set back below the ids it gave (ids would repeat). */
        sql(f, "SELECT setval('patd_token_ids', 1, false)");
        assert_true(store_check(f->st, stderr) >= 1);
        return;
    }
    store_close(f->st);
    f->st = NULL;
    const char *names[] = {"default",         "meta",      "users",   "tokens", "token_by_hash",
                           "tokens_by_owner", "last_used", "activity"};
    rocksdb_options_t *o = rocksdb_options_create();
    const rocksdb_options_t *cfo[8];
    for (int i = 0; i < 8; i++)
        cfo[i] = o;
    rocksdb_column_family_handle_t *cf[8];
    char *err = NULL;
    rocksdb_t *db = rocksdb_open_column_families(o, f->dir, 8, names, cfo, cf, &err);
    assert_null(err);
    uint8_t key[2 + 5 + 2] = {STORE_KIND_PERSONAL, 5, 'a', 'l', 'i', 'c', 'e', 'c', 'i'};
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_delete_cf(db, wo, cf[5], (const char *)key, sizeof(key), &err);
    assert_null(err);
    rocksdb_writeoptions_destroy(wo);
    for (int i = 0; i < 8; i++)
        rocksdb_column_family_handle_destroy(cf[i]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    open_store(f);
    assert_true(store_check(f->st, stderr) >= 1);
}

static void test_open_refuses_cleanly(void **state)
{
    fixture_t *f = *state;
    char *err = NULL;
    /* One process serves a RocksDB store (its LOCK); a PostgreSQL store
     * takes any number of nodes (issue 19, docs/cluster.md). */
    if (!f->db[0]) {
        assert_null(store_open(f->url, NULL, &err));
        assert_non_null(strstr(err, "lock"));
        free(err);
        err = NULL;
    } else {
        store_t *second = store_open(f->url, NULL, &err);
        assert_non_null(second);
        store_close(second);
        store_options_t shared = {.shared = 1}; /* patd check and migrate beside it */
        store_t *beside = store_open(f->url, &shared, &err);
        assert_non_null(beside);
        store_close(beside);
        char bad[300];
        snprintf(bad, sizeof(bad), "postgresql:///%s?host=%s&user=postgres&password=pw", f->db,
                 pg_dir());
        assert_null(store_open(bad, NULL, &err));
        assert_non_null(strstr(err, "PGPASSFILE"));
        assert_null(strstr(err, "pw&"));
        free(err);
        err = NULL;
    }
    assert_null(store_open("mysql://db/x", NULL, &err));
    assert_non_null(strstr(err, "rocksdb:DIR"));
    free(err);
    err = NULL;
    assert_null(store_open("rocksdb:", NULL, &err));
    free(err);
    err = NULL;
    store_options_t must = {.must_exist = 1};
    assert_null(store_open("rocksdb:/tmp/patd-no-such-store", &must, &err));
    assert_non_null(strstr(err, "no store"));
    free(err);
    assert_int_equal(access("/tmp/patd-no-such-store", F_OK), -1); /* nothing was made */
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_users_upsert_keeps_state_and_survives_restart),
        T(test_users_list_pages_by_cursor_and_type),
        T(test_token_create_checks_owner_and_name),
        T(test_R6_racing_creates_make_one_token),
        T(test_tokens_list_pages_and_ids_never_repeat),
        T(test_R16_R19_state_changes_tell_the_observer),
        T(test_R4_service_user_delete_cascades),
        T(test_R15_usage_batches_and_activity_trim),
        T(test_failed_writes_change_nothing),
        T(test_page_key_made_once_with_the_store),
        T(test_check_finds_a_missing_index_entry),
        T(test_open_refuses_cleanly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
