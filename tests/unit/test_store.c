/* Unit tests of store.c against a real RocksDB in a temporary directory:
 * every column family, batches, restart, id allocation, activity trimming
 * and the consistency check. */
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
    store_t *st;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/patd-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) return -1;
    char *err = NULL;
    f->st = store_open(f->dir, NULL, &err);
    if (f->st == NULL) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void reopen(fixture_t *f)
{
    store_close(f->st);
    char *err = NULL;
    f->st = store_open(f->dir, NULL, &err);
    assert_non_null(f->st);
}

static Patd__Store__TokenRecord make_token(uint64_t id, const char *owner, const char *name,
                                           uint8_t *hash)
{
    Patd__Store__TokenRecord t = PATD__STORE__TOKEN_RECORD__INIT;
    memset(hash, (int)id, STORE_HASH_BYTES);
    t.schema = STORE_SCHEMA_VERSION;
    t.id = id;
    t.owner_id = (char *)owner;
    t.name = (char *)name;
    t.kind = 1;
    t.active = 1;
    t.hash.data = hash;
    t.hash.len = STORE_HASH_BYTES;
    return t;
}

static void put_token(fixture_t *f, const Patd__Store__TokenRecord *t)
{
    store_batch_t *b = store_batch_new(f->st);
    store_batch_put_token(b, t);
    assert_int_equal(store_batch_commit(b, 1), STORE_OK);
    store_batch_free(b);
}

static void test_users_put_get_scan_survive_restart(void **state)
{
    fixture_t *f = *state;
    store_batch_t *b = store_batch_new(f->st);
    const char *ids[] = {"auth0|b", "auth0|a", "okta|c"};
    for (int i = 0; i < 3; i++) {
        Patd__Store__UserRecord u = PATD__STORE__USER_RECORD__INIT;
        u.user_id = (char *)ids[i];
        u.role = i + 1;
        u.active = 1;
        store_batch_put_user(b, &u);
    }
    assert_int_equal(store_batch_commit(b, 1), STORE_OK);
    store_batch_free(b);
    reopen(f);
    Patd__Store__UserRecord *u = NULL;
    assert_int_equal(store_user_get(f->st, "auth0|a", &u), STORE_OK);
    assert_int_equal(u->role, 2);
    store_record_free(u);
    assert_int_equal(store_user_get(f->st, "nobody", &u), STORE_NOT_FOUND);
}

static int count_user(void *arg, const Patd__Store__UserRecord *u)
{
    (void)u;
    (*(int *)arg)++;
    return 0;
}

static void test_users_scan_pages_after_a_key(void **state)
{
    fixture_t *f = *state;
    store_batch_t *b = store_batch_new(f->st);
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof(id), "u%02d", i);
        Patd__Store__UserRecord u = PATD__STORE__USER_RECORD__INIT;
        u.user_id = id;
        store_batch_put_user(b, &u);
    }
    assert_int_equal(store_batch_commit(b, 0), STORE_OK);
    store_batch_free(b);
    int n = 0;
    assert_int_equal(store_users_scan(f->st, NULL, count_user, &n), STORE_OK);
    assert_int_equal(n, 10);
    n = 0;
    assert_int_equal(store_users_scan(f->st, "u04", count_user, &n), STORE_OK);
    assert_int_equal(n, 5);
}

typedef struct {
    int n;
    char names[8][32];
} names_t;

static int collect_name(void *arg, const char *name, size_t len, uint64_t id)
{
    names_t *ns = arg;
    (void)id;
    snprintf(ns->names[ns->n++], 32, "%.*s", (int)len, name);
    return ns->n == 8;
}

static void test_token_indexes_written_and_removed_together(void **state)
{
    fixture_t *f = *state;
    uint8_t h1[32], h2[32], h3[32];
    Patd__Store__TokenRecord a = make_token(1, "alice", "ci", h1);
    Patd__Store__TokenRecord b = make_token(2, "alice", "backup", h2);
    Patd__Store__TokenRecord c = make_token(3, "bob", "ci", h3);
    put_token(f, &a);
    put_token(f, &b);
    put_token(f, &c);
    reopen(f);

    uint64_t id;
    Patd__Store__TokenRecord *byhash = NULL;
    assert_int_equal(store_token_get_by_hash(f->st, h2, &byhash), STORE_OK);
    assert_int_equal(byhash->id, 2);
    assert_string_equal(byhash->name, "backup");
    store_record_free(byhash);
    assert_int_equal(store_token_id_by_name(f->st, 1, "bob", "ci", &id), STORE_OK);
    assert_int_equal(id, 3);
    assert_int_equal(store_token_id_by_name(f->st, 2, "bob", "ci", &id), STORE_NOT_FOUND);

    names_t ns = {0};
    assert_int_equal(store_tokens_scan(f->st, 1, "alice", NULL, 0, collect_name, &ns), STORE_OK);
    assert_int_equal(ns.n, 2);
    assert_string_equal(ns.names[0], "backup");
    assert_string_equal(ns.names[1], "ci");
    /* Paging: strictly after alice/backup. */
    uint8_t key[300];
    size_t kl = store_owner_key(1, "alice", "backup", key, sizeof(key));
    memset(&ns, 0, sizeof(ns));
    assert_int_equal(store_tokens_scan(f->st, 1, "alice", key, kl, collect_name, &ns), STORE_OK);
    assert_int_equal(ns.n, 1);
    assert_string_equal(ns.names[0], "ci");
    /* All owners of kind 1. */
    memset(&ns, 0, sizeof(ns));
    assert_int_equal(store_tokens_scan(f->st, 1, NULL, NULL, 0, collect_name, &ns), STORE_OK);
    assert_int_equal(ns.n, 3);

    store_batch_t *batch = store_batch_new(f->st);
    store_batch_put_last_used(batch, 2, 12345);
    assert_int_equal(store_batch_commit(batch, 1), STORE_OK);
    store_batch_free(batch);
    int64_t ms;
    assert_int_equal(store_last_used_get(f->st, 2, &ms), STORE_OK);
    assert_int_equal(ms, 12345);

    batch = store_batch_new(f->st);
    store_batch_delete_token(batch, &b);
    assert_int_equal(store_batch_commit(batch, 1), STORE_OK);
    store_batch_free(batch);
    reopen(f);
    Patd__Store__TokenRecord *t = NULL;
    assert_int_equal(store_token_get(f->st, 2, &t), STORE_NOT_FOUND);
    byhash = NULL;
    assert_int_equal(store_token_get_by_hash(f->st, h2, &byhash), STORE_NOT_FOUND);
    assert_int_equal(store_token_id_by_name(f->st, 1, "alice", "backup", &id), STORE_NOT_FOUND);
    assert_int_equal(store_last_used_get(f->st, 2, &ms), STORE_OK);
    assert_int_equal(ms, 0);
    /* Hand-made ids and owners that do not exist: check must say so. */
    assert_true(store_check(f->st, stderr) >= 2);
}

static void test_token_ids_never_repeat_across_restarts(void **state)
{
    fixture_t *f = *state;
    uint64_t last = 0, id;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5; i++) {
            assert_int_equal(store_next_token_id(f->st, &id), STORE_OK);
            assert_true(id > last);
            last = id;
        }
        reopen(f);
    }
}

typedef struct {
    int n;
    int64_t times[200];
} times_t;

static int collect_time(void *arg, const Patd__Store__ActivityRecord *ev)
{
    times_t *ts = arg;
    ts->times[ts->n++] = ev->time;
    return 0;
}

static void test_activity_newest_first_and_trimmed(void **state)
{
    fixture_t *f = *state;
    store_batch_t *b = store_batch_new(f->st);
    for (int i = 1; i <= 150; i++) {
        Patd__Store__ActivityRecord ev = PATD__STORE__ACTIVITY_RECORD__INIT;
        ev.kind = 1;
        ev.time = 1000 + i;
        ev.path = "/api/x";
        store_batch_put_activity(b, 7, store_activity_seq(f->st), &ev);
        store_batch_put_activity(b, 8, store_activity_seq(f->st), &ev); /* a neighbour, untouched */
    }
    assert_int_equal(store_batch_commit(b, 0), STORE_OK);
    store_batch_free(b);
    assert_int_equal(store_activity_trim(f->st, 7, 100), STORE_OK);
    times_t ts = {0};
    assert_int_equal(store_activity_scan(f->st, 7, collect_time, &ts), STORE_OK);
    assert_int_equal(ts.n, 100);
    assert_int_equal(ts.times[0], 1150);
    assert_int_equal(ts.times[99], 1051);
    memset(&ts, 0, sizeof(ts));
    assert_int_equal(store_activity_scan(f->st, 8, collect_time, &ts), STORE_OK);
    assert_int_equal(ts.n, 150);
}

static void test_check_finds_a_dangling_index_entry(void **state)
{
    fixture_t *f = *state;
    store_batch_t *b = store_batch_new(f->st);
    Patd__Store__UserRecord u = PATD__STORE__USER_RECORD__INIT;
    u.user_id = "alice";
    store_batch_put_user(b, &u);
    assert_int_equal(store_batch_commit(b, 1), STORE_OK);
    store_batch_free(b);
    uint64_t id;
    assert_int_equal(store_next_token_id(f->st, &id), STORE_OK);
    uint8_t h[32];
    Patd__Store__TokenRecord t = make_token(id, "alice", "ci", h);
    put_token(f, &t);
    assert_int_equal(store_check(f->st, stderr), 0);
    /* Delete with a different name: the real owner entry is left behind. */
    Patd__Store__TokenRecord wrong = t;
    wrong.name = "not-ci";
    b = store_batch_new(f->st);
    store_batch_delete_token(b, &wrong);
    assert_int_equal(store_batch_commit(b, 1), STORE_OK);
    store_batch_free(b);
    assert_true(store_check(f->st, stderr) >= 1);
}

static void test_open_fails_cleanly_on_a_locked_store(void **state)
{
    fixture_t *f = *state;
    char *err = NULL;
    store_t *second = store_open(f->dir, NULL, &err);
    assert_null(second);
    assert_non_null(err);
    assert_non_null(strstr(err, "lock"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_users_put_get_scan_survive_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_scan_pages_after_a_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_indexes_written_and_removed_together, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_ids_never_repeat_across_restarts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_activity_newest_first_and_trimmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_finds_a_dangling_index_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_fails_cleanly_on_a_locked_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
