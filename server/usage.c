/* usage: in-memory last-used and activity, flushed to the store in batches. */
#include "usage.h"

#include "pat/v1/pat.pb-c.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define USAGE_BUCKETS 1024 /* per stripe; chains grow beyond */

typedef struct usage_event {
    int64_t time;
    uint64_t seq;
    char path[USAGE_PATH_MAX + 1];
    char client_ip[USAGE_CLIENT_IP_MAX + 1];
} usage_event_t;

typedef struct usage_entry {
    struct usage_entry *next;
    uint64_t id;
    int64_t last_used;
    int dirty;   /* last_used not yet written */
    int deleted; /* the token is gone: record nothing more */
    unsigned rows_since_trim;
    /* Pending use events: a ring of at most USAGE_KEEP, oldest overwritten
     * (only the newest USAGE_KEEP would survive the trim anyway). */
    usage_event_t *ring;
    unsigned ring_start, ring_len;
} usage_entry_t;

typedef struct {
    pthread_mutex_t lock;
    usage_entry_t *buckets[USAGE_BUCKETS];
} usage_stripe_t;

struct usage {
    store_t *store;
    pthread_mutex_t flush_lock;
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
    return &s->buckets[(usage_mix(id) >> 8) % USAGE_BUCKETS];
}

/* Caller holds the stripe lock. */
static usage_entry_t *usage_find(usage_stripe_t *s, uint64_t id, int create)
{
    usage_entry_t **slot = usage_slot(s, id);
    for (usage_entry_t *e = *slot; e; e = e->next) {
        if (e->id == id) return e;
    }
    if (!create) return NULL;
    usage_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL) abort();
    e->id = id;
    /* First touch since start: trim on the first flush, so rows left by
     * earlier runs are bounded too. */
    e->rows_since_trim = USAGE_TRIM_EVERY;
    e->next = *slot;
    *slot = e;
    return e;
}

usage_t *usage_new(store_t *st)
{
    usage_t *u = calloc(1, sizeof(*u));
    if (u == NULL) abort();
    u->store = st;
    pthread_mutex_init(&u->flush_lock, NULL);
    for (int i = 0; i < USAGE_STRIPES; i++)
        pthread_mutex_init(&u->stripes[i].lock, NULL);
    return u;
}

void usage_free(usage_t *u)
{
    if (u == NULL) return;
    for (int i = 0; i < USAGE_STRIPES; i++) {
        for (int b = 0; b < USAGE_BUCKETS; b++) {
            usage_entry_t *e = u->stripes[i].buckets[b];
            while (e) {
                usage_entry_t *n = e->next;
                free(e->ring);
                free(e);
                e = n;
            }
        }
        pthread_mutex_destroy(&u->stripes[i].lock);
    }
    pthread_mutex_destroy(&u->flush_lock);
    free(u);
}

static void usage_copy(char *dst, const char *src, size_t max)
{
    size_t n = src ? strnlen(src, max) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

void usage_record(usage_t *u, uint64_t id, int64_t now, const char *path, const char *client_ip)
{
    usage_stripe_t *s = usage_stripe(u, id);
    pthread_mutex_lock(&s->lock);
    usage_entry_t *e = usage_find(s, id, 1);
    if (!e->deleted) {
        if (now > e->last_used) e->last_used = now;
        e->dirty = 1;
        if (e->ring == NULL) {
            e->ring = malloc(sizeof(usage_event_t) * USAGE_KEEP);
            if (e->ring == NULL) abort();
        }
        unsigned slot;
        if (e->ring_len < USAGE_KEEP) {
            slot = (e->ring_start + e->ring_len++) % USAGE_KEEP;
        } else {
            slot = e->ring_start;
            e->ring_start = (e->ring_start + 1) % USAGE_KEEP;
        }
        usage_event_t *ev = &e->ring[slot];
        ev->time = now;
        ev->seq = store_activity_seq(u->store);
        usage_copy(ev->path, path, USAGE_PATH_MAX);
        usage_copy(ev->client_ip, client_ip, USAGE_CLIENT_IP_MAX);
    }
    pthread_mutex_unlock(&s->lock);
}

int64_t usage_last_used(usage_t *u, uint64_t id)
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
    pthread_mutex_unlock(&s->lock);
}

/* What one flush takes out of an entry. */
typedef struct {
    uint64_t id;
    int64_t last_used;
    int trim;
    usage_event_t *ring; /* owned by the flush */
    unsigned ring_start, ring_len;
} usage_take_t;

int usage_flush(usage_t *u)
{
    pthread_mutex_lock(&u->flush_lock);
    size_t cap = 64, n = 0;
    usage_take_t *take = malloc(cap * sizeof(*take));
    if (take == NULL) abort();

    for (int i = 0; i < USAGE_STRIPES; i++) {
        usage_stripe_t *s = &u->stripes[i];
        pthread_mutex_lock(&s->lock);
        for (int b = 0; b < USAGE_BUCKETS; b++) {
            for (usage_entry_t *e = s->buckets[b]; e; e = e->next) {
                if (e->deleted || !e->dirty) continue;
                if (n == cap) {
                    cap *= 2;
                    take = realloc(take, cap * sizeof(*take));
                    if (take == NULL) abort();
                }
                usage_take_t *t = &take[n++];
                t->id = e->id;
                t->last_used = e->last_used;
                t->ring = e->ring;
                t->ring_start = e->ring_start;
                t->ring_len = e->ring_len;
                e->rows_since_trim += e->ring_len;
                t->trim = e->rows_since_trim >= USAGE_TRIM_EVERY;
                if (t->trim) e->rows_since_trim = 0;
                e->ring = NULL;
                e->ring_start = e->ring_len = 0;
                e->dirty = 0;
            }
        }
        pthread_mutex_unlock(&s->lock);
    }

    int rc = 0;
    if (n > 0) {
        store_batch_t *batch = store_batch_new(u->store);
        for (size_t i = 0; i < n; i++) {
            usage_take_t *t = &take[i];
            store_batch_put_last_used(batch, t->id, t->last_used);
            for (unsigned k = 0; k < t->ring_len; k++) {
                usage_event_t *ev = &t->ring[(t->ring_start + k) % USAGE_KEEP];
                Patd__Store__ActivityRecord rec = PATD__STORE__ACTIVITY_RECORD__INIT;
                rec.schema = STORE_SCHEMA_VERSION;
                rec.kind = PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_USED;
                rec.time = ev->time;
                rec.path = ev->path;
                rec.client_ip = ev->client_ip;
                store_batch_put_activity(batch, t->id, ev->seq, &rec);
            }
        }
        if (store_batch_commit(batch, 1) != STORE_OK) {
            rc = -1;
            /* Put the last-used times back; the events of this round are
             * dropped (they are bounded, and the log line said why). */
            for (size_t i = 0; i < n; i++) {
                usage_stripe_t *s = usage_stripe(u, take[i].id);
                pthread_mutex_lock(&s->lock);
                usage_entry_t *e = usage_find(s, take[i].id, 0);
                if (e && !e->deleted) e->dirty = 1;
                pthread_mutex_unlock(&s->lock);
            }
            log_warn("usage: flush of %zu tokens failed; last-used times kept for retry", n);
        }
        store_batch_free(batch);
        for (size_t i = 0; i < n; i++) {
            if (rc == 0 && take[i].trim) store_activity_trim(u->store, take[i].id, USAGE_KEEP);
            free(take[i].ring);
        }
    }
    free(take);
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
    free(e->ring);
    e->ring = NULL;
    e->ring_start = e->ring_len = 0;
    pthread_mutex_unlock(&s->lock);
}

void usage_release(usage_t *u)
{
    pthread_mutex_unlock(&u->flush_lock);
}
