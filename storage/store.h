/* store: patd's RocksDB store, and the only code that includes rocksdb/c.h.
 *
 * One DB under the data directory with these column families:
 *   meta             "schema_version" -> u32, "token_id_hw" -> u64
 *   users            user_id -> UserRecord
 *   tokens           id (u64 BE) -> TokenRecord
 *   token_by_hash    SHA-256 (32 bytes) -> TokenRecord (a copy of the record
 *                    in `tokens`, written in the same batch, so a cold
 *                    Verify is one point read; bloom-filtered, uncompressed)
 *   tokens_by_owner  kind(1) len(1) owner name -> id (unique names)
 *   last_used        id -> Unix ms (i64 BE)
 *   activity         id, time, seq (u64 BE each) -> ActivityRecord
 * All integers in keys are big-endian so that keys sort numerically.
 *
 * Every change that touches several keys is one store_batch_t, committed
 * atomically; the caller decides per commit whether it is synced (fsync of
 * the WAL before the call returns). Changes that acknowledge something to a
 * client are synced.
 *
 * Thread-safety: every function may be called from any thread at once
 * (RocksDB's own guarantees). A store_batch_t belongs to one thread.
 * Ownership: records returned through an out-pointer are owned by the caller
 * and freed with store_record_free(); records passed in are only read. */
#ifndef PAT_STORE_H
#define PAT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "records.pb-c.h"

#define STORE_SCHEMA_VERSION 1
#define STORE_HASH_BYTES     32
#define STORE_OWNER_MAX      255

typedef struct store store_t;
typedef struct store_batch store_batch_t;

typedef enum {
    STORE_OK = 0,
    STORE_NOT_FOUND,
    STORE_CORRUPT,     /* a record that does not decode */
    STORE_IO,          /* RocksDB reported an error; it was logged once with its cause */
    STORE_WOULD_BLOCK, /* memory-only read: the answer needs disk I/O */
} store_status_t;

typedef struct {
    size_t block_cache_bytes; /* 0: default 64 MiB */
} store_options_t;

/* Opens (creating if missing) the DB under dir, which must exist. On failure
 * returns NULL and, if errmsg is not NULL, a malloc'd message to free. */
store_t *store_open(const char *dir, const store_options_t *opt, char **errmsg);
/* Flushes memtables to table files, so the next open replays no WAL (fast
 * start), then closes the DB; all handles are destroyed first. NULL is a
 * no-op. */
void store_close(store_t *st);
/* Compacts every column family (bulk loads, tools). Blocks until done. */
void store_compact(store_t *st);

/* Allocates a new token id, never reused, even across crashes: ids are
 * reserved in blocks with one synced meta write per block. */
store_status_t store_next_token_id(store_t *st, uint64_t *id);

store_status_t store_user_get(store_t *st, const char *user_id, Patd__Store__UserRecord **out);
store_status_t store_token_get(store_t *st, uint64_t id, Patd__Store__TokenRecord **out);
/* The token whose hash this is (one point read). */
store_status_t store_token_get_by_hash(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                       Patd__Store__TokenRecord **out);

/* Memory-only reads for the network thread: served from memtables and the
 * block cache, or STORE_WOULD_BLOCK without any I/O (RocksDB's
 * kBlockCacheTier). NOT_FOUND is definitive. */
store_status_t store_token_get_by_hash_cached(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                              Patd__Store__TokenRecord **out);
store_status_t store_user_get_cached(store_t *st, const char *user_id,
                                     Patd__Store__UserRecord **out);
/* Looks up owner's token of this kind by name. */
store_status_t store_token_id_by_name(store_t *st, int32_t kind, const char *owner,
                                      const char *name, uint64_t *id);
/* 0 if never used (or not flushed yet). */
store_status_t store_last_used_get(store_t *st, uint64_t id, int64_t *ms);

/* Iteration callbacks return 0 to go on, non-zero to stop. */
typedef int (*store_token_cb)(void *arg, const char *name, size_t name_len, uint64_t id);
/* Tokens of one owner (owner != NULL) or of every owner (owner == NULL) of
 * one kind, in (owner, name) order, starting strictly after the key
 * `after` (after_len bytes as returned by store_owner_key(); 0 = start). */
store_status_t store_tokens_scan(store_t *st, int32_t kind, const char *owner, const void *after,
                                 size_t after_len, store_token_cb cb, void *arg);
/* Builds the tokens_by_owner key into out (at least 2 + 255 + name bytes);
 * returns its length. Used as an opaque paging cursor. */
size_t store_owner_key(int32_t kind, const char *owner, const char *name, uint8_t *out,
                       size_t out_cap);

typedef int (*store_user_cb)(void *arg, const Patd__Store__UserRecord *u);
/* Users in user_id order, strictly after `after` (NULL = start). */
store_status_t store_users_scan(store_t *st, const char *after, store_user_cb cb, void *arg);

typedef int (*store_activity_cb)(void *arg, const Patd__Store__ActivityRecord *ev);
/* Activity of one token, newest first. */
store_status_t store_activity_scan(store_t *st, uint64_t id, store_activity_cb cb, void *arg);
/* The newest activity row of a token (NOT_FOUND if it has none). */
store_status_t store_activity_newest(store_t *st, uint64_t id, Patd__Store__ActivityRecord **out);
/* Number of activity rows kept for the token after trimming: rows older
 * than the newest `keep` are deleted (by range, in its own unsynced write). */
store_status_t store_activity_trim(store_t *st, uint64_t id, unsigned keep);
/* The smallest token id above `after` that has activity rows, in *id;
 * NOT_FOUND past the last. Pages through tokens with a history. */
store_status_t store_activity_next_id(store_t *st, uint64_t after, uint64_t *id);

/* Batches. Put/delete calls copy what they are given. */
store_batch_t *store_batch_new(store_t *st);
void store_batch_free(store_batch_t *b);
void store_batch_put_user(store_batch_t *b, const Patd__Store__UserRecord *u);
void store_batch_delete_user(store_batch_t *b, const char *user_id);
/* Writes the token record and its two index entries. */
void store_batch_put_token(store_batch_t *b, const Patd__Store__TokenRecord *t);
/* Removes a token from the record, both indexes and last_used. Its
 * activity rows (at most USAGE_KEEP) stay, so that the owner can still see
 * what happened to it; the caller adds a DELETED event. */
void store_batch_delete_token(store_batch_t *b, const Patd__Store__TokenRecord *t);
void store_batch_put_last_used(store_batch_t *b, uint64_t id, int64_t ms);
/* Activity rows sort by (time, seq): seq orders events of the same
 * millisecond as they happened. Take it with store_activity_seq() when the
 * event occurs, not when it is written. */
uint64_t store_activity_seq(store_t *st);
void store_batch_put_activity(store_batch_t *b, uint64_t id, uint64_t seq,
                              const Patd__Store__ActivityRecord *ev);
/* Commits the batch atomically; sync = fsync the WAL before returning. */
store_status_t store_batch_commit(store_batch_t *b, int sync);

/* Durations of committed write batches (for /metrics), cumulative since
 * open. Buckets: counts[i] for writes of at most le_ns[i] (not
 * cumulative), counts[STORE_WRITE_BUCKETS] for the rest. */
#define STORE_WRITE_BUCKETS 12
typedef struct {
    uint64_t le_ns[STORE_WRITE_BUCKETS];
    uint64_t counts[STORE_WRITE_BUCKETS + 1];
    uint64_t sum_ns;
} store_write_stats_t;
void store_write_stats(const store_t *st, store_write_stats_t *out);

/* Fault injection for tests: while on, every write fails with STORE_IO as
 * if the disk were full. Only patd-testclock's TestingService can reach it. */
void store_set_fail_writes(store_t *st, int on);
/* Test fault injection: the *_cached reads decline as if they needed I/O. */
void store_set_cold_reads(store_t *st, int on);

/* Frees a record returned by this module. NULL is a no-op. */
void store_record_free(void *record);

/* Walks every column family and checks that the indexes agree with the
 * token records and with each other. Writes one line per problem to out;
 * returns the number of problems, or -1 if the walk itself failed. */
long store_check(store_t *st, FILE *out);

#endif
