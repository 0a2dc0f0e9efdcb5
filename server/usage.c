/* usage: in-memory last-used and activity, flushed to the store in batches. */
#define _GNU_SOURCE /* SCHED_IDLE */
#include "usage.h"

#include "pat/v1/pat.pb-c.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "clock.h"
#include "log.h"
#include "wire.h"

#define USAGE_BUCKETS_MIN 1024 /* per stripe; doubles to keep chains short */

/* Uses of one token with one (path, client) in the current interval. */
typedef struct usage_use {
    struct usage_use *next;
    int64_t first, last;
    uint64_t seq; /* taken at the last use: orders rows of one millisecond */
    uint32_t count;
    uint16_t path_len, ip_len;
    char data[]; /* path NUL client_ip NUL */
} usage_use_t;

typedef struct usage_entry {
    struct usage_entry *next;
    uint64_t id;
    int64_t last_used;
    struct usage_entry *pnext; /* on the stripe's pending list */
    int listed;                /* on that list */
    int dirty;                 /* last_used not yet written */
    int deleted;               /* the token is gone: record nothing more */
    int64_t written_ms;        /* monotonic time of its last write, 0: never */
    int trim_queued;           /* its id waits in the trim queue */
    unsigned rows_since_trim;
    usage_use_t *uses; /* pending rows, newest first */
    unsigned n_uses;
} usage_entry_t;

/* A stripe: entries by id, and the list of those the next flush must look
 * at (dirty, or due a trim), so a flush costs what changed, not what is
 * known: with a million tokens seen, walking them all would hold each
 * stripe lock, and the Verify that waits on it, for milliseconds. */
typedef struct {
    pthread_mutex_t lock;
    usage_entry_t **buckets;
    size_t nbuckets, count;
    usage_entry_t *pending;
} usage_stripe_t;

/* Uses recorded by one thread and not yet applied to the table: records
 * appended to `data` under `lock`; a drain swaps in the empty `spare` and
 * applies the full one outside it. Owned by the usage_t (freed with it,
 * never at thread exit, so nothing recorded is lost). */
typedef struct usage_buf {
    struct usage_buf *next; /* in usage_t's list, which only grows */
    pthread_t owner;
    pthread_mutex_t lock;
    uint8_t *data;
    size_t len, cap;
    uint8_t *spare; /* the drainer's (drain_lock) */
    size_t spare_cap;
} usage_buf_t;

/* One buffered use; path then client_ip follow, padded to 8 bytes. */
typedef struct {
    uint64_t id, seq;
    int64_t now;
    uint16_t path_len, ip_len;
} usage_rec_t;

/* Bytes one buffered use takes, its strings included. */
static size_t usage_rec_size(size_t path_len, size_t ip_len)
{
    return sizeof(usage_rec_t) + ((path_len + ip_len + 7) & ~(size_t)7);
}

/* An entry to look at again: its id and when it became clean. */
typedef struct {
    uint64_t id;
    int64_t since_ms;
} usage_cool_t;

struct usage {
    store_t *store;
    uint64_t gen; /* tells this instance's buffers from a freed one's */
    pthread_mutex_t bufs_lock;
    usage_buf_t *bufs;
    pthread_mutex_t drain_lock;
    _Atomic size_t buffered; /* records in the buffers */
    pthread_t flusher, drainer;
    int flusher_running;
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;       /* the flusher's */
    pthread_cond_t drain_wake; /* the drainer's */
    int stopping;
    int drain_wanted; /* a buffer has USAGE_DRAIN_BYTES (wake_lock) */
    pthread_mutex_t flush_lock;
    uint64_t *trimq; /* ids due a trim, beyond a flush's budget */
    size_t trimq_head, trimq_len, trimq_cap;
    /* Entries made clean by a flush (or a delete), oldest first: those still
     * clean USAGE_PERSIST_MS later are dropped (flush_lock). */
    usage_cool_t *cool;
    size_t cool_head, cool_len, cool_cap;
    int64_t last_flush_ms;        /* the now of the latest flush */
    _Atomic int64_t retention_ms; /* deleted tokens' history; 0: for ever */
    uint64_t purge_cursor;        /* the last token id the purge looked at (flusher) */
    usage_stripe_t stripes[USAGE_STRIPES];
};

static uint64_t usage_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static usage_stripe_t *usage_stripe(usage_t *u, uint64_t id)
{
    return &u->stripes[usage_mix(id) % USAGE_STRIPES];
}

static usage_entry_t **usage_slot(usage_stripe_t *s, uint64_t id)
{
    return &s->buckets[(usage_mix(id) >> 8) & (s->nbuckets - 1)];
}

/* Doubles a stripe's table; caller holds the stripe lock. */
static void usage_grow(usage_stripe_t *s)
{
    size_t old_n = s->nbuckets;
    usage_entry_t **old = s->buckets;
    s->nbuckets = old_n * 2;
    s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
    if (s->buckets == NULL) abort();
    for (size_t b = 0; b < old_n; b++) {
        for (usage_entry_t *e = old[b], *n; e; e = n) {
            n = e->next;
            usage_entry_t **slot = usage_slot(s, e->id);
            e->next = *slot;
            *slot = e;
        }
    }
    free(old);
}

/* Caller holds the stripe lock. */
static usage_entry_t *usage_find(usage_stripe_t *s, uint64_t id, int create)
{
    usage_entry_t **slot = usage_slot(s, id);
    for (usage_entry_t *e = *slot; e; e = e->next) {
        if (e->id == id) return e;
    }
    if (!create) return NULL;
    if (s->count >= 2 * s->nbuckets) {
        usage_grow(s);
        slot = usage_slot(s, id);
    }
    usage_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL) abort();
    e->id = id;
    /* First touch since start: a trim is due, so rows left by earlier runs
     * are bounded too (done within the flush's trim budget). */
    e->rows_since_trim = USAGE_TRIM_EVERY;
    e->next = *slot;
    *slot = e;
    s->count++;
    return e;
}

/* Caller holds the stripe lock. */
static void usage_list(usage_stripe_t *s, usage_entry_t *e)
{
    if (e->listed) return;
    e->listed = 1;
    e->pnext = s->pending;
    s->pending = e;
}

static void usage_free_uses(usage_use_t *u)
{
    while (u) {
        usage_use_t *n = u->next;
        free(u);
        u = n;
    }
}

usage_t *usage_new(store_t *st)
{
    usage_t *u = calloc(1, sizeof(*u));
    if (u == NULL) abort();
    u->store = st;
    static _Atomic uint64_t generations;
    u->gen = atomic_fetch_add(&generations, 1) + 1; /* never 0: a thread's "none yet" */
    pthread_mutex_init(&u->bufs_lock, NULL);
    pthread_mutex_init(&u->drain_lock, NULL);
    pthread_mutex_init(&u->flush_lock, NULL);
    pthread_mutex_init(&u->wake_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&u->wake, &ca);
    pthread_cond_init(&u->drain_wake, &ca);
    pthread_condattr_destroy(&ca);
    for (int i = 0; i < USAGE_STRIPES; i++) {
        pthread_mutex_init(&u->stripes[i].lock, NULL);
        u->stripes[i].nbuckets = USAGE_BUCKETS_MIN;
        u->stripes[i].buckets = calloc(USAGE_BUCKETS_MIN, sizeof(usage_entry_t *));
        if (u->stripes[i].buckets == NULL) abort();
    }
    return u;
}

void usage_free(usage_t *u)
{
    if (u == NULL) return;
    for (int i = 0; i < USAGE_STRIPES; i++) {
        for (size_t b = 0; b < u->stripes[i].nbuckets; b++) {
            usage_entry_t *e = u->stripes[i].buckets[b];
            while (e) {
                usage_entry_t *n = e->next;
                usage_free_uses(e->uses);
                free(e);
                e = n;
            }
        }
        free(u->stripes[i].buckets);
        pthread_mutex_destroy(&u->stripes[i].lock);
    }
    for (usage_buf_t *b = u->bufs, *n; b; b = n) {
        n = b->next;
        free(b->data);
        free(b->spare);
        pthread_mutex_destroy(&b->lock);
        free(b);
    }
    pthread_mutex_destroy(&u->bufs_lock);
    pthread_mutex_destroy(&u->drain_lock);
    free(u->trimq);
    free(u->cool);
    pthread_mutex_destroy(&u->flush_lock);
    pthread_mutex_destroy(&u->wake_lock);
    pthread_cond_destroy(&u->wake);
    pthread_cond_destroy(&u->drain_wake);
    free(u);
}

/* Applies one use to the table. Uses may arrive out of order (each thread
 * buffers its own), so times only ever move outward: first is the
 * earliest, last the latest, seq the one taken with the latest. */
static void usage_apply(usage_t *u, uint64_t id, int64_t now, uint64_t seq, const char *path,
                        size_t pl, const char *client_ip, size_t il)
{
    usage_stripe_t *s = usage_stripe(u, id);
    pthread_mutex_lock(&s->lock);
    usage_entry_t *e = usage_find(s, id, 1);
    if (!e->deleted) {
        if (now > e->last_used) e->last_used = now;
        e->dirty = 1;
        usage_list(s, e);
        usage_use_t *x = e->uses;
        /* Beyond USAGE_DISTINCT pairs, everything goes to one "*" row. */
        if (e->n_uses >= USAGE_DISTINCT) {
            pl = 1;
            path = "*";
            il = 0;
        }
        for (; x; x = x->next) {
            if (x->path_len == pl && x->ip_len == il &&
                (pl == 0 || memcmp(x->data, path, pl) == 0) &&
                (il == 0 || memcmp(x->data + pl + 1, client_ip, il) == 0))
                break;
        }
        if (x == NULL) {
            x = malloc(sizeof(*x) + pl + il + 2);
            if (x == NULL) abort();
            x->first = x->last = now;
            x->seq = seq;
            x->count = 0;
            x->path_len = (uint16_t)pl;
            x->ip_len = (uint16_t)il;
            if (pl) memcpy(x->data, path, pl);
            x->data[pl] = '\0';
            if (il) memcpy(x->data + pl + 1, client_ip, il);
            x->data[pl + 1 + il] = '\0';
            x->next = e->uses;
            e->uses = x;
            e->n_uses++;
        }
        x->count++;
        if (now < x->first) x->first = now;
        if (now > x->last || (now == x->last && seq > x->seq)) {
            x->last = now;
            x->seq = seq;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

/* The calling thread's buffer, created on first use. */
static usage_buf_t *usage_buf_get(usage_t *u)
{
    static __thread struct {
        uint64_t gen;
        usage_buf_t *buf;
    } mine;
    if (mine.gen == u->gen) return mine.buf;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&u->bufs_lock);
    usage_buf_t *b = u->bufs;
    while (b && !pthread_equal(b->owner, self))
        b = b->next;
    if (b == NULL) {
        b = calloc(1, sizeof(*b));
        if (b == NULL) abort();
        b->owner = self;
        pthread_mutex_init(&b->lock, NULL);
        b->next = u->bufs;
        u->bufs = b;
    }
    pthread_mutex_unlock(&u->bufs_lock);
    mine.gen = u->gen;
    mine.buf = b;
    return b;
}

void usage_record(usage_t *u, uint64_t id, int64_t now, const char *path, const char *client_ip)
{
    /* Cut only between whole characters: a stored "...aaa\xc3" made every
     * ListTokenActivity answer undecodable by Google's protobuf. */
    size_t pl = path ? strnlen(path, USAGE_PATH_MAX + 1) : 0;
    if (pl > USAGE_PATH_MAX) pl = wire_utf8_cut(path, USAGE_PATH_MAX);
    size_t il = client_ip ? strnlen(client_ip, USAGE_CLIENT_IP_MAX + 1) : 0;
    if (il > USAGE_CLIENT_IP_MAX) il = wire_utf8_cut(client_ip, USAGE_CLIENT_IP_MAX);
    uint64_t seq = store_event_seq(u->store);
    size_t need = usage_rec_size(pl, il);
    usage_buf_t *b = usage_buf_get(u);
    pthread_mutex_lock(&b->lock);
    if (b->len + need > b->cap && b->cap < USAGE_BUF_BYTES) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + need && cap < USAGE_BUF_BYTES)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (d == NULL) abort();
        b->data = d;
        b->cap = cap;
    }
    if (b->len + need <= b->cap) {
        usage_rec_t r = {.id = id, .seq = seq, .now = now};
        r.path_len = (uint16_t)pl;
        r.ip_len = (uint16_t)il;
        uint8_t *at = b->data + b->len;
        memcpy(at, &r, sizeof(r));
        if (pl) memcpy(at + sizeof(r), path, pl);
        if (il) memcpy(at + sizeof(r) + pl, client_ip, il);
        int wake = b->len < USAGE_DRAIN_BYTES && b->len + need >= USAGE_DRAIN_BYTES;
        b->len += need;
        atomic_fetch_add_explicit(&u->buffered, 1, memory_order_relaxed);
        pthread_mutex_unlock(&b->lock);
        if (wake) { /* enough for a drain: short ones keep the clients' tail low */
            pthread_mutex_lock(&u->wake_lock);
            u->drain_wanted = 1;
            pthread_cond_signal(&u->drain_wake);
            pthread_mutex_unlock(&u->wake_lock);
        }
        return;
    }
    pthread_mutex_unlock(&b->lock);
    /* The buffer is full (the drain is starved): apply the use here. */
    usage_apply(u, id, now, seq, path, pl, client_ip, il);
}

void usage_drain(usage_t *u)
{
    pthread_mutex_lock(&u->drain_lock);
    pthread_mutex_lock(&u->bufs_lock);
    usage_buf_t *bufs = u->bufs; /* only grows at the head: walk a snapshot */
    pthread_mutex_unlock(&u->bufs_lock);
    for (usage_buf_t *b = bufs; b; b = b->next) {
        pthread_mutex_lock(&b->lock);
        uint8_t *full = b->data;
        size_t len = b->len, cap = b->cap;
        b->data = b->spare;
        b->cap = b->spare_cap;
        b->len = 0;
        pthread_mutex_unlock(&b->lock);
        size_t n = 0;
        for (size_t off = 0; off < len; n++) {
            usage_rec_t r;
            memcpy(&r, full + off, sizeof(r));
            const char *path = (const char *)full + off + sizeof(r);
            usage_apply(u, r.id, r.now, r.seq, path, r.path_len, path + r.path_len, r.ip_len);
            off += usage_rec_size(r.path_len, r.ip_len);
        }
        atomic_fetch_sub_explicit(&u->buffered, n, memory_order_relaxed);
        b->spare = full;
        b->spare_cap = cap;
    }
    pthread_mutex_unlock(&u->drain_lock);
}

int64_t usage_last_used(usage_t *u, uint64_t id)
{
    if (atomic_load_explicit(&u->buffered, memory_order_relaxed)) usage_drain(u);
    return usage_last_used_applied(u, id);
}

int64_t usage_last_used_applied(usage_t *u, uint64_t id)
{
    usage_stripe_t *s = usage_stripe(u, id);
    pthread_mutex_lock(&s->lock);
    usage_entry_t *e = usage_find(s, id, 0);
    int64_t v = e && !e->deleted ? e->last_used : 0;
    pthread_mutex_unlock(&s->lock);
    return v;
}

void usage_note_rows(usage_t *u, uint64_t id, unsigned rows)
{
    usage_stripe_t *s = usage_stripe(u, id);
    pthread_mutex_lock(&s->lock);
    usage_entry_t *e = usage_find(s, id, 1);
    e->rows_since_trim += rows;
    if (e->rows_since_trim >= USAGE_TRIM_EVERY) usage_list(s, e);
    pthread_mutex_unlock(&s->lock);
}

/* What one flush takes out of an entry. */
typedef struct {
    uint64_t id;
    int64_t last_used;
    int write;         /* last_used and uses to write */
    int trim;          /* activity rows to trim */
    usage_use_t *uses; /* owned by the flush */
} usage_take_t;

/* Makes room for one more item at the back of a queue kept in an array
 * (items [head, len) of elem bytes each): reuses the consumed front, or
 * doubles the array. The trim queue and the cooling queue share it. */
static void usage_fifo_room(void **items, size_t *head, size_t *len, size_t *cap, size_t elem)
{
    if (*len < *cap) return;
    if (*head > 0) {
        memmove(*items, (char *)*items + *head * elem, (*len - *head) * elem);
        *len -= *head;
        *head = 0;
        return;
    }
    *cap = *cap ? *cap * 2 : 1024;
    *items = realloc(*items, *cap * elem);
    if (*items == NULL) abort();
}

/* Notes that id became clean at since_ms; caller holds the flush lock. */
static void usage_cool_push(usage_t *u, uint64_t id, int64_t since_ms)
{
    usage_fifo_room((void **)&u->cool, &u->cool_head, &u->cool_len, &u->cool_cap, sizeof(*u->cool));
    u->cool[u->cool_len++] = (usage_cool_t){id, since_ms};
}

/* Drops entries that have been clean for USAGE_PERSIST_MS: memory for
 * tokens used since start is bounded by those used recently, not by every
 * token ever used. Dropping such an entry changes nothing a reader or a
 * writer sees: its last-used time is in the store, which readers consult
 * when memory has none; its next use would be written by the next flush
 * anyway (its interval has passed); and a new entry is due a trim on its
 * first flush, so activity rows stay bounded. A deleted token's entry
 * keeps its guard for the same interval: long past any Verify that was in
 * flight when the delete was acknowledged. Caller holds the flush lock. */
static void usage_cool_sweep(usage_t *u, int64_t now_ms)
{
    while (u->cool_head < u->cool_len &&
           now_ms - u->cool[u->cool_head].since_ms >= USAGE_PERSIST_MS) {
        uint64_t id = u->cool[u->cool_head++].id;
        usage_stripe_t *s = usage_stripe(u, id);
        pthread_mutex_lock(&s->lock);
        usage_entry_t **pp = usage_slot(s, id);
        while (*pp && (*pp)->id != id)
            pp = &(*pp)->next;
        usage_entry_t *e = *pp;
        if (e && !e->dirty && e->n_uses == 0 && !e->listed && !e->trim_queued &&
            (e->deleted || now_ms - e->written_ms >= USAGE_PERSIST_MS)) {
            *pp = e->next;
            s->count--;
            free(e);
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (u->cool_head == u->cool_len) u->cool_head = u->cool_len = 0;
}

size_t usage_entries(usage_t *u)
{
    size_t n = 0;
    for (int i = 0; i < USAGE_STRIPES; i++) {
        pthread_mutex_lock(&u->stripes[i].lock);
        n += u->stripes[i].count;
        pthread_mutex_unlock(&u->stripes[i].lock);
    }
    return n;
}

/* Queues a trim for later; caller holds the flush lock. */
static void usage_trimq_push(usage_t *u, usage_entry_t *e)
{
    usage_fifo_room((void **)&u->trimq, &u->trimq_head, &u->trimq_len, &u->trimq_cap,
                    sizeof(*u->trimq));
    u->trimq[u->trimq_len++] = e->id;
    e->trim_queued = 1;
}

static int usage_take_cmp(const void *a, const void *b)
{
    uint64_t x = ((const usage_take_t *)a)->id, y = ((const usage_take_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* Appends one slot to the flush's take list. */
static usage_take_t *usage_take_add(usage_take_t **take, size_t *n, size_t *cap)
{
    if (*n == *cap) {
        *cap *= 2;
        *take = realloc(*take, *cap * sizeof(**take));
        if (*take == NULL) abort();
    }
    usage_take_t *t = &(*take)[(*n)++];
    memset(t, 0, sizeof(*t));
    return t;
}

int usage_flush(usage_t *u)
{
    return usage_flush_at(u, (int64_t)clock_mono_ms(), 1);
}

/* When a token's first write counts as made, for its next one: up to half
 * of USAGE_PERSIST_MS earlier than it was, fixed per token. Tokens first
 * used together (a service starting, a benchmark) then come due at
 * different times instead of all in one flush every USAGE_PERSIST_MS:
 * 10k tokens in lock-step made one flush in ten cost 50-60 ms of CPU at
 * once, taken from the network thread and its clients. Later writes keep
 * the full interval, so the spread costs at most one write more per token. */
static int64_t usage_first_written(uint64_t id, int64_t now_ms)
{
    uint64_t h = id * 0x9E3779B97F4A7C15ULL; /* Fibonacci hashing: ids are sequential */
    int64_t at = now_ms - (int64_t)((h >> 32) % (USAGE_PERSIST_MS / 2 + 1));
    return at > 0 ? at : 1; /* 0 means never written */
}

int usage_flush_at(usage_t *u, int64_t now_ms, int force)
{
    pthread_mutex_lock(&u->flush_lock);
    usage_drain(u);
    size_t cap = 64, n = 0;
    usage_take_t *take = malloc(cap * sizeof(*take));
    if (take == NULL) abort();

    /* Trims are maintenance: at most USAGE_TRIMS_PER_FLUSH a round, so a
     * storm of first-time tokens delays them instead of slowing serving.
     * Those that wait do so in a queue of ids, oldest first. */
    unsigned trim_budget = USAGE_TRIMS_PER_FLUSH;
    while (trim_budget > 0 && u->trimq_head < u->trimq_len) {
        uint64_t id = u->trimq[u->trimq_head++];
        usage_stripe_t *s = usage_stripe(u, id);
        pthread_mutex_lock(&s->lock);
        usage_entry_t *e = usage_find(s, id, 0);
        int due = e && e->trim_queued && !e->deleted;
        if (due) {
            e->trim_queued = 0;
            e->rows_since_trim = 0;
        }
        pthread_mutex_unlock(&s->lock);
        if (due) {
            usage_take_t *t = usage_take_add(&take, &n, &cap);
            t->id = id;
            t->trim = 1;
            trim_budget--;
        }
    }
    if (u->trimq_head == u->trimq_len) u->trimq_head = u->trimq_len = 0;

    /* The stripe lock is held per entry, never across the walk or an
     * allocation: a Verify waiting on it waits for one entry at most. The
     * trim queue and the take list belong to the flusher (flush_lock). */
    for (int i = 0; i < USAGE_STRIPES; i++) {
        usage_stripe_t *s = &u->stripes[i];
        pthread_mutex_lock(&s->lock);
        usage_entry_t *e = s->pending, *pnext;
        s->pending = NULL;
        pthread_mutex_unlock(&s->lock);
        for (; e; e = pnext) {
            usage_take_t t = {0};
            int take_it = 0, queue = 0;
            pthread_mutex_lock(&s->lock);
            pnext = e->pnext; /* still listed: nobody else relinks it */
            e->listed = 0;
            if (!e->deleted) {
                int wait = !force && e->dirty && e->written_ms != 0 &&
                           now_ms - e->written_ms < USAGE_PERSIST_MS;
                if (wait) usage_list(s, e); /* looked at again next round */
                int write = e->dirty && !wait;
                if (write) e->rows_since_trim += e->n_uses;
                if (e->rows_since_trim >= USAGE_TRIM_EVERY && !e->trim_queued) {
                    if (trim_budget > 0) {
                        t.trim = 1;
                        trim_budget--;
                        e->rows_since_trim = 0;
                    } else {
                        queue = 1;
                    }
                }
                if (write || t.trim) {
                    take_it = 1;
                    t.id = e->id;
                }
                if (write) {
                    t.last_used = e->last_used;
                    t.write = 1;
                    t.uses = e->uses;
                    e->uses = NULL;
                    e->n_uses = 0;
                    e->dirty = 0;
                    e->written_ms = e->written_ms ? now_ms : usage_first_written(e->id, now_ms);
                }
            }
            pthread_mutex_unlock(&s->lock);
            if (queue) usage_trimq_push(u, e);
            if (take_it) *usage_take_add(&take, &n, &cap) = t;
        }
    }

    int rc = 0;
    if (n > 0) {
        /* In id order: each insert into the store's index (RocksDB's
         * memtable, a B-tree) lands next to the previous one instead of
         * searching from the top: at tens of thousands of tokens a second
         * that is most of a flush's cost. */
        qsort(take, n, sizeof(*take), usage_take_cmp);
        store_usage_t *batch = store_usage_begin(u->store);
        for (size_t i = 0; i < n; i++) {
            usage_take_t *t = &take[i];
            if (!t->write) continue;
            store_usage_last_used(batch, t->id, t->last_used);
            for (usage_use_t *x = t->uses; x; x = x->next) {
                store_event_t ev = {.seq = x->seq,
                                    .kind = STORE_EVENT_USED,
                                    .time = x->last,
                                    .first_time = x->first,
                                    .count = x->count};
                memcpy(ev.path, x->data, x->path_len + 1);
                memcpy(ev.client_ip, x->data + x->path_len + 1, x->ip_len + 1);
                store_usage_event(batch, t->id, &ev);
            }
        }
        if (store_usage_commit(batch) != STORE_OK) {
            rc = -1;
            /* Put the last-used times back; the events of this round are
             * dropped (they are bounded, and the log line said why). */
            for (size_t i = 0; i < n; i++) {
                usage_stripe_t *s = usage_stripe(u, take[i].id);
                pthread_mutex_lock(&s->lock);
                usage_entry_t *e = usage_find(s, take[i].id, 0);
                if (e && !e->deleted && take[i].write) {
                    e->dirty = 1;
                    e->written_ms = 0; /* retried by the next flush */
                    usage_list(s, e);
                }
                pthread_mutex_unlock(&s->lock);
            }
            log_warn("usage: flush of %zu tokens failed; last-used times kept for retry", n);
        }
        for (size_t i = 0; i < n; i++) {
            if (rc == 0 && take[i].trim) store_activity_trim(u->store, take[i].id, USAGE_KEEP);
            usage_free_uses(take[i].uses);
            if (rc == 0) usage_cool_push(u, take[i].id, now_ms);
        }
    }
    free(take);
    u->last_flush_ms = now_ms;
    usage_cool_sweep(u, now_ms);
    pthread_mutex_unlock(&u->flush_lock);
    return rc;
}

void usage_hold(usage_t *u)
{
    pthread_mutex_lock(&u->flush_lock);
}

void usage_forget(usage_t *u, uint64_t id)
{
    usage_stripe_t *s = usage_stripe(u, id);
    pthread_mutex_lock(&s->lock);
    usage_entry_t *e = usage_find(s, id, 1);
    e->deleted = 1;
    e->dirty = 0;
    usage_free_uses(e->uses);
    e->uses = NULL;
    e->n_uses = 0;
    pthread_mutex_unlock(&s->lock);
    usage_cool_push(u, id, u->last_flush_ms); /* the caller holds the flush lock */
}

void usage_release(usage_t *u)
{
    pthread_mutex_unlock(&u->flush_lock);
}

/* Deadline `ms` from now on the monotonic clock (the conds use it). */
static struct timespec usage_deadline(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Writes what changed every USAGE_FLUSH_MS, at normal priority: the
 * last-used lag that Health promises must hold on a busy machine too. */
void usage_set_retention(usage_t *u, int64_t retention_ms)
{
    atomic_store(&u->retention_ms, retention_ms);
}

int usage_purge_deleted(usage_t *u, int64_t now_ms, unsigned budget)
{
    int64_t keep = atomic_load(&u->retention_ms);
    if (keep <= 0) return 0;
    int purged = 0;
    for (unsigned i = 0; i < budget; i++) {
        uint64_t id;
        store_status_t s = store_activity_next_id(u->store, u->purge_cursor, &id);
        if (s == STORE_NOT_FOUND) { /* the end: the next round starts over */
            u->purge_cursor = 0;
            break;
        }
        if (s != STORE_OK) return -1;
        u->purge_cursor = id;
        store_token_t t;
        s = store_token_get(u->store, id, &t);
        if (s == STORE_OK) continue; /* a live token: its rows are trimmed, not purged */
        if (s != STORE_NOT_FOUND) return -1;
        store_event_t newest;
        unsigned got = 0;
        s = store_activity_list(u->store, id, 1, &newest, &got);
        int old = s == STORE_OK && got == 1 && now_ms - newest.time >= keep;
        if (old) {
            if (store_activity_trim(u->store, id, 0) != STORE_OK) return -1;
            purged++;
        }
    }
    if (purged) log_info("event=history_purged tokens=%d", purged);
    return purged;
}

static void *usage_flusher(void *arg)
{
    usage_t *u = arg;
    prctl(PR_SET_NAME, "patd-flush"); /* threads are named for top -H and /proc */
    uint64_t next_purge = clock_mono_ms() + USAGE_PURGE_EVERY_MS;
    pthread_mutex_lock(&u->wake_lock);
    while (!u->stopping) {
        struct timespec until = usage_deadline(USAGE_FLUSH_MS);
        while (!u->stopping && pthread_cond_timedwait(&u->wake, &u->wake_lock, &until) == 0) {
        }
        if (u->stopping) break;
        pthread_mutex_unlock(&u->wake_lock);
        /* Applying the buffered uses (per request) apart from writing
         * them (per token and second): bench/instructions.sh counts the
         * first with the requests and the second as background. */
        usage_drain(u);
        usage_flush_at(u, (int64_t)clock_mono_ms(), 0);
        if (clock_mono_ms() >= next_purge) {
            /* Under the flush lock, so no flush writes rows meanwhile. */
            usage_hold(u);
            usage_purge_deleted(u, clock_now_ms(), USAGE_PURGE_BUDGET);
            usage_release(u);
            next_purge = clock_mono_ms() + USAGE_PURGE_EVERY_MS;
        }
        pthread_mutex_lock(&u->wake_lock);
    }
    pthread_mutex_unlock(&u->wake_lock);
    return NULL;
}

/* Applies the buffers every USAGE_DRAIN_MS, or when one fills, as a
 * SCHED_IDLE thread: it runs on a core nothing else wants, so it never
 * preempts the network thread or the clients on the same machine (at
 * normal priority its wake-ups raised hot Verify's p99 from 1.0 to
 * 1.6 ms). If it is starved, the flusher drains at normal priority each
 * second, and a full buffer is applied by its own thread. */
static void *usage_drainer(void *arg)
{
    usage_t *u = arg;
    prctl(PR_SET_NAME, "patd-drain");
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        log_warn("usage: cannot make the drain thread SCHED_IDLE; it runs at normal priority");
    pthread_mutex_lock(&u->wake_lock);
    while (!u->stopping) {
        struct timespec until = usage_deadline(USAGE_DRAIN_MS);
        if (!u->drain_wanted) pthread_cond_timedwait(&u->drain_wake, &u->wake_lock, &until);
        u->drain_wanted = 0;
        if (u->stopping) break;
        pthread_mutex_unlock(&u->wake_lock);
        usage_drain(u);
        pthread_mutex_lock(&u->wake_lock);
    }
    pthread_mutex_unlock(&u->wake_lock);
    return NULL;
}

int usage_start(usage_t *u)
{
    if (pthread_create(&u->flusher, NULL, usage_flusher, u) != 0) return -1;
    if (pthread_create(&u->drainer, NULL, usage_drainer, u) != 0) {
        pthread_mutex_lock(&u->wake_lock);
        u->stopping = 1;
        pthread_cond_signal(&u->wake);
        pthread_mutex_unlock(&u->wake_lock);
        pthread_join(u->flusher, NULL);
        u->stopping = 0;
        return -1;
    }
    u->flusher_running = 1;
    return 0;
}

void usage_stop(usage_t *u)
{
    if (!u->flusher_running) return;
    pthread_mutex_lock(&u->wake_lock);
    u->stopping = 1;
    pthread_cond_signal(&u->wake);
    pthread_cond_signal(&u->drain_wake);
    pthread_mutex_unlock(&u->wake_lock);
    pthread_join(u->flusher, NULL);
    pthread_join(u->drainer, NULL);
    u->flusher_running = 0;
}
