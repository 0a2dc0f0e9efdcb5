/* Unit tests of usage.c against a real store: last-used kept in memory and
 * flushed (R15), uses coalesced per (path, client) with counts, the "*"
 * overflow row, the per-token bound (R22), and deleted tokens staying
 * deleted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pat/v1/pat.pb-c.h"
#include "usage.h"

typedef struct {
    char dir[64];
    store_t *st;
    usage_t *u;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/patd-usage-XXXXXX");
    if (mkdtemp(f->dir) == NULL) return -1;
    char url[80];
    snprintf(url, sizeof(url), "rocksdb:%s", f->dir);
    f->st = store_open(url, NULL, NULL);
    f->u = usage_new(f->st);
    *state = f;
    return f->st ? 0 : -1;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    usage_free(f->u);
    store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

typedef struct {
    int n;
    char paths[200][32];
    uint32_t counts[200];
} rows_t;

static int collect(void *arg, const store_event_t *ev)
{
    rows_t *r = arg;
    snprintf(r->paths[r->n], 32, "%.31s", ev->path);
    r->counts[r->n++] = ev->count;
    return r->n == 200;
}

/* A token's activity, newest first, each event through cb until it
 * returns non-zero. */
static store_status_t store_activity_scan(store_t *st, uint64_t id,
                                          int (*cb)(void *, const store_event_t *), void *arg)
{
    static store_event_t evs[1000];
    unsigned n = 0;
    store_status_t s = store_activity_list(st, id, 1000, evs, &n);
    for (unsigned i = 0; s == STORE_OK && i < n; i++)
        if (cb(arg, &evs[i])) break;
    return s;
}

static void test_R15_last_used_in_memory_then_flushed(void **state)
{
    fx_t *f = *state;
    usage_record(f->u, 5, 1000, "/a", "10.0.0.1");
    usage_record(f->u, 5, 3000, "/a", "10.0.0.1");
    usage_record(f->u, 5, 2000, "/a", "10.0.0.1"); /* out of order: keeps the max */
    assert_int_equal(usage_last_used(f->u, 5), 3000);
    int64_t ms;
    assert_int_equal(store_last_used_get(f->st, 5, &ms), STORE_OK);
    assert_int_equal(ms, 0); /* nothing written yet */
    assert_int_equal(usage_flush(f->u), 0);
    assert_int_equal(store_last_used_get(f->st, 5, &ms), STORE_OK);
    assert_int_equal(ms, 3000);
}

static void test_R22_uses_coalesce_per_path_and_client(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < 50; i++)
        usage_record(f->u, 6, 1000 + i, "/same", "10.0.0.1");
    usage_record(f->u, 6, 2000, "/same", "10.0.0.2"); /* another client: another row */
    for (int i = 0; i < 30; i++) {
        char p[16];
        snprintf(p, sizeof(p), "/p%d", i);
        usage_record(f->u, 6, 3000 + i, p, "10.0.0.1");
    }
    assert_int_equal(usage_flush(f->u), 0);
    rows_t r = {0};
    assert_int_equal(store_activity_scan(f->st, 6, collect, &r), STORE_OK);
    /* 16 distinct pairs, then one "*" row for the other 16 uses. */
    assert_int_equal(r.n, USAGE_DISTINCT + 1);
    int star = -1, same = -1;
    for (int i = 0; i < r.n; i++) {
        if (strcmp(r.paths[i], "*") == 0) star = i;
        if (strcmp(r.paths[i], "/same") == 0 && r.counts[i] == 50) same = i;
    }
    assert_true(star >= 0);
    assert_int_equal(r.counts[star], 2 + 30 - USAGE_DISTINCT);
    assert_true(same >= 0);
}

static void test_R22_at_most_keep_rows_per_token(void **state)
{
    fx_t *f = *state;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 10; i++) {
            char p[16];
            snprintf(p, sizeof(p), "/r%d", round * 10 + i);
            usage_record(f->u, 7, 1000 * round + i, p, NULL);
        }
        assert_int_equal(usage_flush(f->u), 0);
    }
    assert_int_equal(usage_flush(f->u), 0);
    rows_t r = {0};
    assert_int_equal(store_activity_scan(f->st, 7, collect, &r), STORE_OK);
    assert_true(r.n <= USAGE_KEEP + USAGE_TRIM_EVERY);
    assert_string_equal(r.paths[0], "/r199");
}

static int count_rows(void *arg, const store_event_t *ev)
{
    (void)ev;
    ++*(int *)arg;
    return 0;
}

/* R22's bound also covers rows left by an earlier run: the first use of a
 * token since start makes a trim due. A flush does at most
 * USAGE_TRIMS_PER_FLUSH of them; the rest wait in a queue and are done by
 * the next flushes even though those tokens are not used again. */
static void test_R22_trims_beyond_the_budget_wait_their_turn(void **state)
{
    fx_t *f = *state;
    enum { TOKENS = USAGE_TRIMS_PER_FLUSH * 2 + 10, OLD = USAGE_KEEP + 30 };
    store_usage_t *b = store_usage_begin(f->st);
    for (uint64_t id = 100; id < 100 + TOKENS; id++) {
        for (int i = 0; i < OLD; i++) {
            store_event_t ev = {.seq = store_event_seq(f->st),
                                .kind = STORE_EVENT_USED,
                                .time = 1000 + i,
                                .path = "/old"};
            store_usage_event(b, id, &ev);
        }
    }
    assert_int_equal(store_usage_commit(b), STORE_OK);

    for (uint64_t id = 100; id < 100 + TOKENS; id++)
        usage_record(f->u, id, 5000, "/new", NULL);
    int over[4];
    for (int round = 0; round < 4; round++) {
        assert_int_equal(usage_flush(f->u), 0);
        over[round] = 0;
        for (uint64_t id = 100; id < 100 + TOKENS; id++) {
            int n = 0;
            assert_int_equal(store_activity_scan(f->st, id, count_rows, &n), STORE_OK);
            over[round] += n > USAGE_KEEP;
        }
    }
    assert_int_equal(over[0], TOKENS - USAGE_TRIMS_PER_FLUSH);
    assert_int_equal(over[1], TOKENS - 2 * USAGE_TRIMS_PER_FLUSH);
    assert_int_equal(over[2], 0);
    assert_int_equal(over[3], 0);
}

/* R15/R22 write volume: a token written less than USAGE_PERSIST_MS ago
 * waits, its uses coalescing, unless the flush is forced (shutdown,
 * ListTokenActivity); its first use since start never waits, and its
 * second write waits at least half that interval. */
static void test_R15_a_recently_written_token_waits_and_coalesces(void **state)
{
    fx_t *f = *state;
    int64_t t0 = 1000000, ms;
    usage_record(f->u, 9, 1000, "/a", NULL);
    assert_int_equal(usage_flush_at(f->u, t0, 0), 0); /* first use: written */
    assert_int_equal(store_last_used_get(f->st, 9, &ms), STORE_OK);
    assert_int_equal(ms, 1000);
    usage_record(f->u, 9, 2000, "/a", NULL);
    usage_record(f->u, 9, 3000, "/a", NULL);
    assert_int_equal(usage_flush_at(f->u, t0 + USAGE_PERSIST_MS / 2 - 1, 0), 0);
    assert_int_equal(store_last_used_get(f->st, 9, &ms), STORE_OK);
    assert_int_equal(ms, 1000);                       /* waits */
    assert_int_equal(usage_last_used(f->u, 9), 3000); /* memory is exact */
    assert_int_equal(usage_flush_at(f->u, t0 + USAGE_PERSIST_MS, 0), 0);
    assert_int_equal(store_last_used_get(f->st, 9, &ms), STORE_OK);
    assert_int_equal(ms, 3000);
    rows_t r = {0};
    assert_int_equal(store_activity_scan(f->st, 9, collect, &r), STORE_OK);
    assert_int_equal(r.n, 2); /* one row per write: counts 1, then 2 */
    assert_int_equal(r.counts[0] + r.counts[1], 3);
    /* From the second write on, the full interval. */
    usage_record(f->u, 9, 3500, "/a", NULL);
    assert_int_equal(usage_flush_at(f->u, t0 + 2 * USAGE_PERSIST_MS - 1, 0), 0);
    assert_int_equal(store_last_used_get(f->st, 9, &ms), STORE_OK);
    assert_int_equal(ms, 3000);
    assert_int_equal(usage_flush_at(f->u, t0 + 2 * USAGE_PERSIST_MS, 0), 0);
    assert_int_equal(store_last_used_get(f->st, 9, &ms), STORE_OK);
    assert_int_equal(ms, 3500);
    /* A forced flush does not wait. */
    usage_record(f->u, 9, 4000, "/a", NULL);
    assert_int_equal(usage_flush(f->u), 0);
    assert_int_equal(store_last_used_get(f->st, 9, &ms), STORE_OK);
    assert_int_equal(ms, 4000);
}

/* Bug (issue 5): 10k tokens first used together were written by the same
 * flush every USAGE_PERSIST_MS, 50-60 ms of CPU at once that the network
 * thread and its clients felt. Their second writes must spread over the
 * second half of the interval, each token still written once in it. */
static void test_R15_tokens_first_used_together_are_not_written_in_lockstep(void **state)
{
    fx_t *f = *state;
    enum { N = 1000, STEP = 1000 };
    int64_t t0 = 1000000, ms;
    for (uint64_t id = 1; id <= N; id++)
        usage_record(f->u, id, 1, "/a", NULL);
    assert_int_equal(usage_flush_at(f->u, t0, 0), 0);
    int64_t seen[N + 1] = {0};
    int written = 0, most = 0;
    for (int k = 1; k * STEP <= USAGE_PERSIST_MS; k++) {
        for (uint64_t id = 1; id <= N; id++)
            usage_record(f->u, id, 1 + k, "/a", NULL);
        assert_int_equal(usage_flush_at(f->u, t0 + k * STEP, 0), 0);
        int now = 0;
        for (uint64_t id = 1; id <= N; id++) {
            assert_int_equal(store_last_used_get(f->st, id, &ms), STORE_OK);
            if (ms != 1 && seen[id] == 0) {
                seen[id] = ms;
                now++;
            } else if (seen[id] != 0) {
                assert_int_equal(ms, seen[id]); /* written once in the interval */
            }
        }
        if (k * STEP < USAGE_PERSIST_MS / 2) assert_int_equal(now, 0);
        written += now;
        if (now > most) most = now;
    }
    assert_int_equal(written, N);    /* every token within the interval */
    assert_in_range(most, 1, N / 4); /* and no flush took more than a quarter */
}

/* R15 for lists: usage_last_used drains first, so it sees every use
 * recorded before it; a page of tokens drains once and then reads each
 * with usage_last_used_applied, which must not drain again (a drain per
 * token repeated the drain's locks for every token of the page). */
static void test_R15_a_page_drains_once_then_reads_what_was_applied(void **state)
{
    fx_t *f = *state;
    usage_record(f->u, 5, 1000, "/a", NULL);
    usage_record(f->u, 6, 1500, "/a", NULL);
    assert_int_equal(usage_last_used_applied(f->u, 5), 0); /* still buffered */
    usage_drain(f->u);
    assert_int_equal(usage_last_used_applied(f->u, 5), 1000);
    usage_record(f->u, 6, 2000, "/a", NULL);                  /* after the page's drain */
    assert_int_equal(usage_last_used_applied(f->u, 6), 1500); /* not drained again */
    assert_int_equal(usage_last_used(f->u, 6), 2000);         /* a single read drains */
}

static void test_deleted_token_records_nothing_more(void **state)
{
    fx_t *f = *state;
    usage_record(f->u, 8, 1000, "/x", NULL);
    usage_hold(f->u);
    usage_forget(f->u, 8);
    usage_release(f->u);
    usage_record(f->u, 8, 2000, "/late", NULL); /* a Verify that raced the delete */
    assert_int_equal(usage_flush(f->u), 0);
    assert_int_equal(usage_last_used(f->u, 8), 0);
    rows_t r = {0};
    assert_int_equal(store_activity_scan(f->st, 8, collect, &r), STORE_OK);
    assert_int_equal(r.n, 0);
}

/* Sums what the rows of one token say. */
typedef struct {
    int rows;
    uint64_t count;
    int64_t first, last;
} sum_t;

static int sum_rows(void *arg, const store_event_t *ev)
{
    sum_t *s = arg;
    if (s->rows++ == 0 || ev->first_time < s->first) s->first = ev->first_time;
    if (ev->time > s->last) s->last = ev->time;
    s->count += ev->count;
    return 0;
}

#define REC_THREADS 4
#define REC_USES    20000
#define REC_TOKENS  50

typedef struct {
    usage_t *u;
    int t;
} rec_arg_t;

static void *record_many(void *arg)
{
    rec_arg_t *a = arg;
    for (int i = 0; i < REC_USES; i++)
        usage_record(a->u, 100 + (uint64_t)(i % REC_TOKENS), 1000 + i, "/p", "10.0.0.9");
    return NULL;
}

/* Each thread buffers its own uses; drains swap buffers under the
 * recording threads' feet. Fails if a use is lost or counted twice. */
static void test_R15_uses_recorded_on_many_threads_are_all_counted(void **state)
{
    fx_t *f = *state;
    pthread_t th[REC_THREADS];
    rec_arg_t args[REC_THREADS];
    for (int t = 0; t < REC_THREADS; t++) {
        args[t] = (rec_arg_t){f->u, t};
        assert_int_equal(pthread_create(&th[t], NULL, record_many, &args[t]), 0);
    }
    for (int i = 0; i < 200; i++) { /* drains and reads racing the writers */
        usage_drain(f->u);
        (void)usage_last_used(f->u, 100 + (uint64_t)(i % REC_TOKENS));
    }
    for (int t = 0; t < REC_THREADS; t++)
        pthread_join(th[t], NULL);
    /* Seen at once, before any flush: the reader drains. */
    assert_int_equal(usage_last_used(f->u, 100), 1000 + REC_USES - REC_TOKENS);
    assert_int_equal(usage_flush(f->u), 0);
    for (uint64_t id = 100; id < 100 + REC_TOKENS; id++) {
        sum_t s = {0};
        assert_int_equal(store_activity_scan(f->st, id, sum_rows, &s), STORE_OK);
        assert_int_equal(s.rows, 1); /* one (path, client): one row */
        assert_int_equal(s.count, (uint64_t)REC_THREADS * REC_USES / REC_TOKENS);
        assert_int_equal(s.first, 1000 + (int64_t)(id - 100));
        assert_int_equal(s.last, 1000 + REC_USES - REC_TOKENS + (int64_t)(id - 100));
    }
}

/* More than USAGE_BUF_BYTES of uses with no drain: the recording thread
 * applies the rest itself, and nothing is lost. */
static void test_R15_a_full_buffer_applies_uses_in_place(void **state)
{
    fx_t *f = *state;
    char path[201];
    memset(path, 'x', 200);
    path[0] = '/';
    path[200] = '\0';
    int n = (int)(2 * USAGE_BUF_BYTES / 200); /* twice what the buffer holds */
    for (int i = 0; i < n; i++)
        usage_record(f->u, 7, 1000 + i, path, NULL);
    assert_int_equal(usage_flush(f->u), 0);
    sum_t s = {0};
    assert_int_equal(store_activity_scan(f->st, 7, sum_rows, &s), STORE_OK);
    assert_int_equal(s.rows, 1);
    assert_int_equal(s.count, (uint64_t)n);
    assert_int_equal(s.first, 1000);
    assert_int_equal(s.last, 1000 + n - 1);
    int64_t ms;
    assert_int_equal(store_last_used_get(f->st, 7, &ms), STORE_OK);
    assert_int_equal(ms, 1000 + n - 1);
}

static int sum_path_a(void *arg, const store_event_t *ev)
{
    return strcmp(ev->path, "/a") == 0 ? sum_rows(arg, ev) : 0;
}

static void *record_late_use(void *arg)
{
    usage_record(arg, 9, 2000, "/a", NULL);
    return NULL;
}

/* Buffers drain newest thread first, so uses can be applied out of
 * order; a row still spans its earliest to its latest use. */
static void test_R22_uses_applied_out_of_order_keep_first_and_last(void **state)
{
    fx_t *f = *state;
    usage_record(f->u, 9, 500, "/other", NULL); /* this thread's buffer first */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, record_late_use, f->u), 0);
    pthread_join(th, NULL);
    usage_record(f->u, 9, 1000, "/a", NULL); /* earlier, applied after 2000 */
    assert_int_equal(usage_flush(f->u), 0);
    sum_t a = {0};
    assert_int_equal(store_activity_scan(f->st, 9, sum_path_a, &a), STORE_OK);
    assert_int_equal(a.rows, 1);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.first, 1000);
    assert_int_equal(a.last, 2000);
}

/* Bounded growth (the security review): an entry for every token used
 * since start stayed in memory (~64 bytes each, for ever). Once written
 * and idle for USAGE_PERSIST_MS it is dropped; its last-used time is read
 * from the store from then on, and its next use is written as before. */
static void test_clean_entries_are_dropped_once_written_and_idle(void **state)
{
    fx_t *f = *state;
    const int64_t t = 1000000;
    for (uint64_t id = 1; id <= 1000; id++)
        usage_record(f->u, id, 5000 + (int64_t)id, "/p", "10.0.0.1");
    assert_int_equal(usage_flush_at(f->u, t, 0), 0);
    assert_int_equal(usage_entries(f->u), 1000);
    /* Flushes every second, as the flusher runs: each first touch is due a
     * trim (USAGE_TRIMS_PER_FLUSH a flush), and an entry goes only once it
     * is trimmed and its interval has passed. */
    int64_t now = t;
    for (int i = 1; i < USAGE_PERSIST_MS / USAGE_FLUSH_MS; i++) {
        now = t + i * USAGE_FLUSH_MS;
        assert_int_equal(usage_flush_at(f->u, now, 0), 0);
    }
    assert_int_equal(usage_entries(f->u), 1000); /* none before its interval */
    for (int i = 0; i < 8 && usage_entries(f->u) > 0; i++) {
        now += USAGE_FLUSH_MS;
        assert_int_equal(usage_flush_at(f->u, now, 0), 0);
    }
    assert_int_equal(usage_entries(f->u), 0);
    int64_t ms = 0;
    assert_int_equal(store_last_used_get(f->st, 7, &ms), STORE_OK);
    assert_int_equal(ms, 5007); /* what readers fall back to */
    assert_int_equal(usage_last_used(f->u, 7), 0);
    /* A later use is kept and written by the next flush, as before. */
    usage_record(f->u, 7, 9000, "/q", NULL);
    assert_int_equal(usage_last_used(f->u, 7), 9000);
    assert_int_equal(usage_flush_at(f->u, now + USAGE_FLUSH_MS, 0), 0);
    assert_int_equal(store_last_used_get(f->st, 7, &ms), STORE_OK);
    assert_int_equal(ms, 9000);
    rows_t r = {0};
    assert_int_equal(store_activity_scan(f->st, 7, collect, &r), STORE_OK);
    assert_int_equal(r.n, 2); /* /q and /p: nothing lost */
}

/* A token in constant use keeps its entry, so its writes stay spaced by
 * USAGE_PERSIST_MS instead of one per flush. */
static void test_a_token_in_use_keeps_its_entry(void **state)
{
    fx_t *f = *state;
    const int64_t t = 2000000;
    for (int sec = 0; sec < 40; sec++) {
        usage_record(f->u, 9, 10000 + sec * 1000, "/hot", NULL);
        assert_int_equal(usage_flush_at(f->u, t + sec * 1000, 0), 0);
        assert_int_equal(usage_entries(f->u), 1);
    }
    rows_t r = {0};
    assert_int_equal(store_activity_scan(f->st, 9, collect, &r), STORE_OK);
    assert_true(r.n <= 40 * 1000 / USAGE_PERSIST_MS + 2); /* spaced, not one a second */
}

/* A deleted token's guard (nothing recorded after the delete) lasts
 * USAGE_PERSIST_MS, then its entry goes too. */
static void test_a_deleted_tokens_entry_goes_after_its_interval(void **state)
{
    fx_t *f = *state;
    const int64_t t = 3000000;
    usage_record(f->u, 11, 1000, "/x", NULL);
    assert_int_equal(usage_flush_at(f->u, t, 0), 0);
    usage_hold(f->u);
    usage_forget(f->u, 11);
    usage_release(f->u);
    usage_record(f->u, 11, 2000, "/late", NULL); /* a Verify that raced the delete */
    assert_int_equal(usage_flush_at(f->u, t + 1000, 0), 0);
    assert_int_equal(usage_entries(f->u), 1); /* the guard holds */
    assert_int_equal(usage_flush_at(f->u, t + USAGE_PERSIST_MS + 1000, 0), 0);
    assert_int_equal(usage_entries(f->u), 0);
}

/* Bounded growth (the security review): activity rows of deleted tokens
 * were never purged. A deleted token's history stays readable for the
 * retention after its newest row (its DELETED event), then goes; a live
 * token's rows are never purged, however old. */
static void test_a_deleted_tokens_history_goes_after_the_retention(void **state)
{
    fx_t *f = *state;
    const int64_t day = 86400000, keep = 90 * day, t0 = 1000000;
    /* A live token (made through the store) and the id after it, which
     * was used and is gone. */
    store_user_t owner = {.user_id = "owner", .user_type = STORE_USER_HUMAN, .active = 1};
    assert_int_equal(store_user_create(f->st, &owner), STORE_OK);
    store_token_t live = {.kind = STORE_KIND_PERSONAL,
                          .active = 1,
                          .hash = {31},
                          .owner_id = "owner",
                          .name = "live"};
    store_event_t created = {.kind = STORE_EVENT_CREATED, .time = t0};
    assert_int_equal(store_token_create(f->st, &live, &created), STORE_OK);
    const uint64_t alive = live.id, gone = live.id + 1;
    usage_record(f->u, alive, t0, "/live", NULL);
    usage_record(f->u, gone, t0, "/gone", NULL);
    assert_int_equal(usage_flush(f->u), 0);
    usage_set_retention(f->u, keep);
    assert_int_equal(usage_purge_deleted(f->u, t0 + keep - 1, 1000), 0);
    rows_t r = {0};
    assert_int_equal(store_activity_scan(f->st, gone, collect, &r), STORE_OK);
    assert_int_equal(r.n, 1); /* still readable within the retention */
    assert_int_equal(usage_purge_deleted(f->u, t0 + keep, 1000), 1);
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_activity_scan(f->st, gone, collect, &r), STORE_OK);
    assert_int_equal(r.n, 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_activity_scan(f->st, alive, collect, &r), STORE_OK);
    assert_int_equal(r.n, 2); /* a live token keeps its history: created, used */
    assert_int_equal(usage_purge_deleted(f->u, t0 + 10 * keep, 1000), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_R15_last_used_in_memory_then_flushed),
        T(test_R22_uses_coalesce_per_path_and_client),
        T(test_R22_trims_beyond_the_budget_wait_their_turn),
        T(test_R15_a_recently_written_token_waits_and_coalesces),
        T(test_R15_tokens_first_used_together_are_not_written_in_lockstep),
        T(test_R15_a_page_drains_once_then_reads_what_was_applied),
        T(test_R22_at_most_keep_rows_per_token),
        T(test_deleted_token_records_nothing_more),
        T(test_R15_uses_recorded_on_many_threads_are_all_counted),
        T(test_R15_a_full_buffer_applies_uses_in_place),
        T(test_R22_uses_applied_out_of_order_keep_first_and_last),
        T(test_clean_entries_are_dropped_once_written_and_idle),
        T(test_a_token_in_use_keeps_its_entry),
        T(test_a_deleted_tokens_entry_goes_after_its_interval),
        T(test_a_deleted_tokens_history_goes_after_the_retention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
