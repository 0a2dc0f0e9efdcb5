/* rocksdb/internal.h: the RocksDB backend's state and helpers, shared by
 * its files and by nothing outside storage/rocksdb/ but its unit test
 * (tests/unit/test_records.c).
 *
 * One DB under DIR with these column families:
 *   meta             "schema_version" -> u32, "token_id_hw" -> u64,
 *                    "page_key" -> 32 random bytes
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
 * Every change that touches several keys is one WriteBatch, committed
 * atomically and synced (fsync of the WAL) before the operation returns.
 * Checks and changes of one owner (a user and its tokens) are serialized
 * by a striped owner lock held across read, check and write: that is what
 * makes names unique and preconditions exact within the one process that
 * may open the DB (RocksDB's LOCK file keeps out any other). */
#ifndef PAT_ROCKSDB_INTERNAL_H
#define PAT_ROCKSDB_INTERNAL_H

#include <pthread.h>
#include <rocksdb/c.h>

#include "backend.h"
#include "rocksdb/records.pb-c.h"

#define RDB_SCHEMA_VERSION 1
#define RDB_OWNER_LOCKS    64
#define RDB_ID_BLOCK       1024 /* token ids reserved per synced meta write */
#define RDB_EVENT_KEYLEN   24

enum {
    CF_DEFAULT,
    CF_META,
    CF_USERS,
    CF_TOKENS,
    CF_TOKEN_BY_HASH,
    CF_TOKENS_BY_OWNER,
    CF_LAST_USED,
    CF_ACTIVITY,
    CF__COUNT
};

extern const char *const rdb_cf_names[CF__COUNT];

typedef struct {
    store_t base; /* first: store.c hands us &base */
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_options_t *cf_opts[CF__COUNT];
    rocksdb_block_based_table_options_t *table_opts[CF__COUNT];
    rocksdb_cache_t *cache;
    rocksdb_column_family_handle_t *cf[CF__COUNT];
    rocksdb_readoptions_t *ropts;       /* iterators: total order, every key */
    rocksdb_readoptions_t *ropts_point; /* point reads: through the hash index */
    rocksdb_readoptions_t *ropts_mem;   /* the same, block-cache tier: never does I/O */
    rocksdb_writeoptions_t *wsync;      /* unsynced when opened with `bulk` */
    rocksdb_writeoptions_t *wnosync;
    pthread_mutex_t id_lock;
    uint64_t id_next; /* next id to hand out */
    uint64_t id_hw;   /* ids below this are reserved on disk */
    pthread_mutex_t owner_locks[RDB_OWNER_LOCKS];
} rdb_t;

typedef Patd__Store__UserRecord rdb_user_rec_t;
typedef Patd__Store__TokenRecord rdb_token_rec_t;
typedef Patd__Store__ActivityRecord rdb_event_rec_t;

static inline rdb_t *rdb_of(store_t *st)
{
    return (rdb_t *)st;
}

void rdb_put_u64(uint8_t *p, uint64_t v);
uint64_t rdb_get_u64(const uint8_t *p);
/* Consumes a RocksDB error: logs it with what was being done. */
store_status_t rdb_fail(char *err, const char *what);
store_status_t rdb_iter_status(rocksdb_iterator_t *it);
/* kind(1) len(1) owner [name]; returns its length (0 if out_cap is short). */
size_t rdb_owner_key(int32_t kind, const char *owner, const char *name, uint8_t *out,
                     size_t out_cap);
void rdb_event_key(uint8_t key[RDB_EVENT_KEYLEN], uint64_t id, uint64_t time, uint64_t seq);
pthread_mutex_t *rdb_owner_lock(rdb_t *r, const char *owner);

/* A decoding arena on the caller's stack: a record read on the Verify
 * path is unpacked into it without malloc (a cold Verify unpacked two
 * records: a dozen mallocs and frees, 2k instructions); what does not fit
 * spills to malloc. rdb_arena_done() frees everything unpacked into it. */
#define RDB_ARENA_BYTES 2048
typedef struct {
    ProtobufCAllocator al;
    size_t used;
    void *spill; /* malloc'd blocks, each headed by the next one's address */
    _Alignas(16) uint8_t buf[RDB_ARENA_BYTES];
} rdb_arena_t;
void rdb_arena_init(rdb_arena_t *a);
void rdb_arena_done(rdb_arena_t *a);

/* Reads and unpacks one record: *out is unpacked with al (NULL: malloc,
 * freed with the message's free_unpacked). mem_only: from memory or
 * STORE_DECLINED. */
store_status_t rdb_get_record(rdb_t *r, int cf, const void *key, size_t klen,
                              const ProtobufCMessageDescriptor *desc, void **out, int mem_only,
                              ProtobufCAllocator *al);
store_status_t rdb_get_u64_value(rdb_t *r, int cf, const void *key, size_t klen, uint64_t *out);
store_status_t rdb_next_token_id(rdb_t *r, uint64_t *id);
/* Writes the id high-water mark (synced); caller holds id_lock. */
store_status_t rdb_reserve_ids(rdb_t *r, uint64_t hw);

/* Records and domain values. */
void rdb_user_from_rec(const rdb_user_rec_t *rec, store_user_t *out);
void rdb_token_from_rec(const rdb_token_rec_t *rec, store_token_t *out);
/* A TokenRecord's bytes straight into *out (rocksdb.c: as unpack +
 * rdb_token_from_rec, without the generic unpacker): 0, or -1 when
 * protobuf-c would refuse them (*out untouched). */
int rdb_token_decode(const uint8_t *p, size_t len, store_token_t *out);
void rdb_event_from_rec(const rdb_event_rec_t *rec, store_event_t *out);
/* Packs a domain value as its record into a malloc'd buffer. */
void *rdb_pack_user(const store_user_t *u, size_t *len);
void *rdb_pack_token(const store_token_t *t, size_t *len);
void *rdb_pack_event(const store_event_t *ev, size_t *len);

/* Typed reads. */
store_status_t rdb_user_read(rdb_t *r, const char *user_id, store_user_t *out, int mem_only);
store_status_t rdb_token_read(rdb_t *r, uint64_t id, store_token_t *out);
store_status_t rdb_token_id_by_name(rdb_t *r, int32_t kind, const char *owner, const char *name,
                                    uint64_t *id);

/* Batches: the put/delete helpers add to wb. */
void rdb_wb_put_user(rdb_t *r, rocksdb_writebatch_t *wb, const store_user_t *u);
void rdb_wb_put_token(rdb_t *r, rocksdb_writebatch_t *wb, const store_token_t *t);
void rdb_wb_delete_token(rdb_t *r, rocksdb_writebatch_t *wb, const store_token_t *t);
void rdb_wb_put_event(rdb_t *r, rocksdb_writebatch_t *wb, uint64_t id, const store_event_t *ev);
/* Commits wb durably (or not, with sync 0), timed; wb stays the caller's. */
store_status_t rdb_commit(rdb_t *r, rocksdb_writebatch_t *wb, int sync, const char *what);

/* The operations (the backend table in rocksdb.c lists them). */
store_status_t rdb_user_create(store_t *st, const store_user_t *u);
store_status_t rdb_user_upsert(store_t *st, const store_user_t *u, store_user_t *now,
                               store_user_t *prev);
store_status_t rdb_user_set_active(store_t *st, const char *user_id, int active,
                                   int no_active_tokens, int64_t now_ms, store_user_t *out,
                                   unsigned *n_active);
store_status_t rdb_user_delete(store_t *st, const char *user_id, int64_t now_ms,
                               const store_event_t *ev, unsigned *n_active, uint64_t **ids,
                               size_t *n_ids);
store_status_t rdb_token_create(store_t *st, store_token_t *t, const store_event_t *ev);
store_status_t rdb_token_set_active(store_t *st, uint64_t id, int active, const store_event_t *ev,
                                    store_token_t *out, int *changed);
store_status_t rdb_token_delete(store_t *st, uint64_t id, int64_t now_ms, const store_event_t *ev,
                                store_token_t *out);
store_usage_t *rdb_usage_begin(store_t *st);
void rdb_usage_last_used(store_usage_t *b, uint64_t id, int64_t ms);
void rdb_usage_event(store_usage_t *b, uint64_t id, const store_event_t *ev);
store_status_t rdb_usage_commit(store_usage_t *b);
void rdb_usage_abandon(store_usage_t *b);
store_status_t rdb_activity_list(store_t *st, uint64_t id, unsigned limit, store_event_t *out,
                                 unsigned *n);
store_status_t rdb_activity_trim(store_t *st, uint64_t id, unsigned keep);
store_status_t rdb_activity_next_id(store_t *st, uint64_t after, uint64_t *id);
long rdb_check(store_t *st, FILE *out);
store_status_t rdb_import_users(store_t *st, const store_user_t *u, size_t n);
store_status_t rdb_import_tokens(store_t *st, const store_token_t *t, size_t n);

#endif
