/* cache: the verification cache in front of the store.
 *
 * DESIGN. Two bounded LRU maps, each split into CACHE_SHARDS shards with a
 * mutex: tokens keyed by SHA-256 of the token (what Verify needs: id, name,
 * owner, kind, flags, times) and users keyed by user_id (role, active and
 * the fields a VerifyResponse carries). Verify joins the two at lookup time,
 * so a role change or a deactivation only has to touch one user entry.
 *
 * Exactness. Every write that changes a Verify answer (revoke, restore,
 * delete, user upsert, (de)activation) reaches cache_*_invalidate() through
 * the store's observer (cache_observer) after its commit and before it is
 * acknowledged. Invalidation removes the
 * entry and bumps the shard's epoch. A reader that missed remembers the
 * epoch it saw before reading storage and may only insert if the epoch is
 * unchanged, so a read that raced with a write can never leave the old
 * answer behind. Hence no Verify that starts after an acknowledgement can be
 * answered from an older state.
 *
 * Eviction is LRU, approximated the way memcached does it: a hit moves an
 * entry to the front only once it has aged past a quarter of its shard, so
 * reading a hot set that fits writes nothing and touches no neighbours.
 *
 * Negative answers are never cached: unknown tokens cannot fill the cache.
 * Thread-safe; lookups copy out, so nothing returned points into the cache. */
#ifndef PAT_CACHE_H
#define PAT_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define CACHE_SHARDS 64

typedef struct cache cache_t;

typedef struct {
    uint64_t hits, misses, evictions, entries, capacity, user_entries;
    uint64_t prepared; /* Verifies answered by marks (cache_count_prepared), in hits too */
} cache_stats_t;

/* capacity: token entries kept; 0 disables. Users get twice that: their
 * shards fill unevenly, and with as many users as the bound (each serving
 * all its tokens) the user map must not churn where the token map does. */
cache_t *cache_new(size_t capacity);
void cache_free(cache_t *c);

/* Token lookups (the domain's values: store.h). *epoch receives the
 * shard's epoch as the lookup saw it: on a miss the value to pass to the
 * matching insert, on a hit what cache_token_mark() takes. Returns 1 on a hit (out
 * filled), 0 on a miss. count_miss = 0 for a tentative lookup that will be
 * retried (the loop thread's attempt before a worker), so one request
 * counts one miss. */
int cache_token_get(cache_t *c, const uint8_t hash[STORE_HASH_BYTES], store_token_t *out,
                    uint64_t *epoch, int count_miss);
void cache_token_put(cache_t *c, const store_token_t *t, uint64_t epoch);
void cache_token_invalidate(cache_t *c, const uint8_t hash[STORE_HASH_BYTES]);

int cache_user_get(cache_t *c, const char *user_id, store_user_t *out, uint64_t *epoch,
                   int count_miss);
void cache_user_put(cache_t *c, const store_user_t *u, uint64_t epoch);
void cache_user_invalidate(cache_t *c, const char *user_id);
/* For a reader that learns the user's id only from what it reads (a cold
 * Verify reads a token with its owner): take the users' epoch before the
 * read, and insert with it; the insert is dropped if any user changed
 * meanwhile (rare: users change far less often than they are read). */
uint64_t cache_users_epoch(cache_t *c);
void cache_user_put_since(cache_t *c, const store_user_t *u, uint64_t users_epoch);
/* Forgets everything (the store says anything may have changed). */
void cache_clear(cache_t *c);
/* Fences the cache (a clustered store's lease, docs/cluster.md): from
 * CLOCK_MONOTONIC mono_ns on, every lookup misses, so Verify reads the
 * store, until a later call moves it on. UINT64_MAX (the default): never. */
void cache_serve_until(cache_t *c, uint64_t mono_ns);

/* The invalidations as a store observer: the store calls them for every
 * committed change (and a clustered store for other nodes' changes). */
void cache_observer(cache_t *c, store_observer_t *out);

/* A mark of what a hit read: the epoch its shard had at the lookup (the
 * get's *epoch). While cache_mark_current() is 1 for the marks of a token
 * and its user, a lookup of both would read what they read: no change to
 * either shard, no clear, no fence passed. Lock-free, one acquire load (a
 * prepared Verify answer lives by it, svc_verify.c). A mark points into c
 * and is valid as long as c. */
typedef struct {
    const _Atomic uint64_t *epoch;
    uint64_t seen;
} cache_mark_t;
cache_mark_t cache_token_mark(cache_t *c, const uint8_t hash[STORE_HASH_BYTES], uint64_t epoch);
cache_mark_t cache_user_mark(cache_t *c, const char *user_id, uint64_t epoch);
int cache_mark_current(cache_t *c, const cache_mark_t *m);

void cache_stats(cache_t *c, cache_stats_t *out);
/* Counts a Verify answered by the marks of its token's and its user's
 * entries instead of lookups: two hits, and one prepared answer. */
void cache_count_prepared(cache_t *c);
/* Counts a miss that storage answered (callers pass count_miss = 0 to the
 * lookups when a miss may still be retried elsewhere). */
void cache_count_miss(cache_t *c);

#endif
