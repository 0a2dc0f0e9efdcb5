/* store: RocksDB wrapper for users, tokens, indexes, last-used and activity.
 *
 * DESIGN. RocksDB errors (char **err) are turned into store_status_t here
 * and logged once with their cause; nothing above this file sees a RocksDB
 * type. Keys are fixed binary layouts (see store.h). The token id counter
 * uses a high-water mark reserved in blocks: the mark is written synced
 * before any id below it is handed out, so an id is never reused, even after
 * kill -9, without a synced meta write per token. */
#include "store.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define STORE_ID_BLOCK        1024
#define STORE_USAGE_MEMTABLE  (8u << 20)
#define STORE_DEFAULT_CACHE   (256u << 20)
#define STORE_ACTIVITY_KEYLEN 24

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

static const char *const store_cf_names[CF__COUNT] = {
    "default",         "meta",      "users",   "tokens", "token_by_hash",
    "tokens_by_owner", "last_used", "activity"};

/* Write-batch durations, from 50 us (a batch without sync) to 1 s. */
static const uint64_t store_write_le_ns[STORE_WRITE_BUCKETS] = {
    50000,   100000,   250000,   500000,    1000000,   2500000,
    5000000, 10000000, 25000000, 100000000, 250000000, 1000000000,
};

struct store {
    _Atomic uint64_t write_counts[STORE_WRITE_BUCKETS + 1];
    _Atomic uint64_t write_sum_ns;
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_options_t *cf_opts[CF__COUNT];
    rocksdb_block_based_table_options_t *table_opts[CF__COUNT];
    rocksdb_cache_t *cache;
    rocksdb_column_family_handle_t *cf[CF__COUNT];
    rocksdb_readoptions_t *ropts;
    rocksdb_readoptions_t *ropts_mem; /* block-cache tier: never does I/O */
    rocksdb_writeoptions_t *wsync;
    rocksdb_writeoptions_t *wnosync;

    pthread_mutex_t id_lock;
    uint64_t id_next; /* next id to hand out */
    uint64_t id_hw;   /* ids below this are reserved on disk */
    _Atomic uint64_t activity_seq;
    _Atomic int fail_writes;    /* test fault injection */
    _Atomic int cold_reads;     /* test fault injection: non-blocking reads decline */
    _Atomic int writes_failing; /* logged once per episode of failures */
};

struct store_batch {
    store_t *st;
    rocksdb_writebatch_t *wb;
};

/* ---------------------------------------------------------------- helpers */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Consumes a RocksDB error: logs it with what was being done. */
static store_status_t store_fail(char *err, const char *what)
{
    log_error("storage: %s failed: %s", what, err);
    rocksdb_free(err);
    return STORE_IO;
}

/* Write failures (disk full, I/O errors) come in episodes: the first is
 * logged with its cause, the rest quietly, and the recovery once. err is
 * freed with free() (inject) or rocksdb_free() (RocksDB). */
static store_status_t store_write_failed(store_t *st, const char *err, const char *what)
{
    if (atomic_exchange(&st->writes_failing, 1) == 0)
        log_error("storage: %s failed: %s; writes are refused until the store accepts them "
                  "again (reads keep working)",
                  what, err);
    else
        log_debug("storage: %s failed again: %s", what, err);
    return STORE_IO;
}

static void store_write_ok(store_t *st)
{
    if (atomic_load_explicit(&st->writes_failing, memory_order_relaxed) &&
        atomic_exchange(&st->writes_failing, 0))
        log_info("storage: writes are accepted again");
}

static void *store_pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf == NULL) abort();
    protobuf_c_message_pack(m, buf);
    return buf;
}

void store_record_free(void *record)
{
    if (record) protobuf_c_message_free_unpacked(record, NULL);
}

/* Reads one key; *out is the decoded record (caller frees). mem_only: from
 * memory or not at all (STORE_WOULD_BLOCK). */
static store_status_t store_get_record_opt(store_t *st, int cf, const void *key, size_t klen,
                                           const ProtobufCMessageDescriptor *desc, void **out,
                                           int mem_only)
{
    char *err = NULL;
    rocksdb_pinnableslice_t *v = rocksdb_get_pinned_cf(st->db, mem_only ? st->ropts_mem : st->ropts,
                                                       st->cf[cf], key, klen, &err);
    if (err && mem_only && strstr(err, "incomplete") != NULL) {
        rocksdb_free(err); /* Status::Incomplete: the block is not in memory */
        return STORE_WOULD_BLOCK;
    }
    if (err) return store_fail(err, "get");
    if (v == NULL) return STORE_NOT_FOUND;
    size_t len;
    const char *val = rocksdb_pinnableslice_value(v, &len);
    *out = protobuf_c_message_unpack(desc, NULL, len, (const uint8_t *)val);
    rocksdb_pinnableslice_destroy(v);
    if (*out == NULL) {
        log_error("storage: undecodable record in column family %s", store_cf_names[cf]);
        return STORE_CORRUPT;
    }
    return STORE_OK;
}

static store_status_t store_get_record(store_t *st, int cf, const void *key, size_t klen,
                                       const ProtobufCMessageDescriptor *desc, void **out)
{
    return store_get_record_opt(st, cf, key, klen, desc, out, 0);
}

static store_status_t store_get_u64(store_t *st, int cf, const void *key, size_t klen,
                                    uint64_t *out)
{
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(st->db, st->ropts, st->cf[cf], key, klen, &err);
    if (err) return store_fail(err, "get");
    if (v == NULL) return STORE_NOT_FOUND;
    size_t len;
    const char *val = rocksdb_pinnableslice_value(v, &len);
    store_status_t s = STORE_CORRUPT;
    if (len == 8) {
        *out = get_u64((const uint8_t *)val);
        s = STORE_OK;
    }
    rocksdb_pinnableslice_destroy(v);
    return s;
}

void store_set_fail_writes(store_t *st, int on)
{
    atomic_store(&st->fail_writes, on);
}

/* The injected fault, reported like a real RocksDB write error. */
static int store_injected_fault(store_t *st, const char *what)
{
    if (!atomic_load(&st->fail_writes)) return 0;
    store_write_failed(st, "injected fault (no space left on device)", what);
    return 1;
}

static store_status_t store_put_u64(store_t *st, int cf, const char *key, uint64_t v)
{
    if (store_injected_fault(st, "put meta")) return STORE_IO;
    uint8_t buf[8];
    put_u64(buf, v);
    char *err = NULL;
    rocksdb_put_cf(st->db, st->wsync, st->cf[cf], key, strlen(key), (const char *)buf, 8, &err);
    return err ? store_fail(err, "put meta") : STORE_OK;
}

/* ---------------------------------------------------------------- open */

static void store_destroy(store_t *st)
{
    for (int i = 0; i < CF__COUNT; i++) {
        if (st->cf[i]) rocksdb_column_family_handle_destroy(st->cf[i]);
    }
    if (st->db) rocksdb_close(st->db);
    for (int i = 0; i < CF__COUNT; i++) {
        if (st->cf_opts[i]) rocksdb_options_destroy(st->cf_opts[i]);
        if (st->table_opts[i]) rocksdb_block_based_options_destroy(st->table_opts[i]);
    }
    if (st->opts) rocksdb_options_destroy(st->opts);
    if (st->cache) rocksdb_cache_destroy(st->cache);
    if (st->ropts) rocksdb_readoptions_destroy(st->ropts);
    if (st->ropts_mem) rocksdb_readoptions_destroy(st->ropts_mem);
    if (st->wsync) rocksdb_writeoptions_destroy(st->wsync);
    if (st->wnosync) rocksdb_writeoptions_destroy(st->wnosync);
    pthread_mutex_destroy(&st->id_lock);
    free(st);
}

static char *store_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *store_strdupf(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return strdup(buf);
}

store_t *store_open(const char *dir, const store_options_t *opt, char **errmsg)
{
    store_t *st = calloc(1, sizeof(*st));
    if (st == NULL) abort();
    pthread_mutex_init(&st->id_lock, NULL);

    size_t cache_bytes =
        opt && opt->block_cache_bytes ? opt->block_cache_bytes : STORE_DEFAULT_CACHE;
    st->cache = rocksdb_cache_create_lru(cache_bytes);
    st->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(st->opts, 1);
    rocksdb_options_set_create_missing_column_families(st->opts, 1);
    rocksdb_options_increase_parallelism(st->opts, 2);
    rocksdb_options_set_max_background_jobs(st->opts, 2);
    /* Every table stays open from start: a cold Verify then goes straight
     * to the file's reader instead of through the table cache (an LRU
     * lookup and release per Get; measured: about 7% of a cold Verify).
     * Opening costs each file's footer, index and filter; at a million
     * tokens that is about ten files, each a descriptor (patd raises its
     * descriptor limit at start). */
    rocksdb_options_set_max_open_files(st->opts, -1);

    for (int i = 0; i < CF__COUNT; i++) {
        st->cf_opts[i] = rocksdb_options_create();
        st->table_opts[i] = rocksdb_block_based_options_create();
        rocksdb_block_based_options_set_block_cache(st->table_opts[i], st->cache);
        /* The hash index's index and filter blocks live with the open table
         * (about 3 MB at a million tokens), not in the block cache: a cold
         * Verify then costs one block-cache lookup instead of three. */
        rocksdb_block_based_options_set_cache_index_and_filter_blocks(st->table_opts[i],
                                                                      i != CF_TOKEN_BY_HASH);
        if (i == CF_TOKEN_BY_HASH || i == CF_TOKENS || i == CF_USERS) {
            /* Point lookups by exact key: a bloom filter lets an unknown
             * (well-formed) token miss without reading a data block. */
            rocksdb_block_based_options_set_filter_policy(
                st->table_opts[i], rocksdb_filterpolicy_create_bloom_full(10));
        }
        if (i == CF_TOKEN_BY_HASH) {
            /* Keys are SHA-256 digests: random bytes do not compress, so
             * compression would only cost a decompression per cold Verify.
             * The in-block hash index finds the key without a binary search. */
            rocksdb_options_set_compression(st->cf_opts[i], rocksdb_no_compression);
            rocksdb_block_based_options_set_data_block_index_type(
                st->table_opts[i],
                rocksdb_block_based_table_data_block_index_type_binary_search_and_hash);
            /* Random keys share no prefix to delta-encode, so a restart
             * point per key costs 4 bytes and lets the hash index land on
             * the key itself rather than on a run of 16 to scan. */
            rocksdb_block_based_options_set_block_restart_interval(st->table_opts[i], 1);
        }
        if (i == CF_LAST_USED || i == CF_ACTIVITY) {
            /* Written in bulk by the usage flusher, a row per token used.
             * Smaller memtables keep the skiplist shallow and in cache. */
            rocksdb_options_set_write_buffer_size(st->cf_opts[i], STORE_USAGE_MEMTABLE);
        }
        rocksdb_options_set_block_based_table_factory(st->cf_opts[i], st->table_opts[i]);
    }

    const rocksdb_options_t *cf_opts_c[CF__COUNT];
    for (int i = 0; i < CF__COUNT; i++)
        cf_opts_c[i] = st->cf_opts[i];
    char *err = NULL;
    st->db = rocksdb_open_column_families(st->opts, dir, CF__COUNT, store_cf_names, cf_opts_c,
                                          st->cf, &err);
    if (err) {
        if (errmsg) *errmsg = store_strdupf("cannot open store in %s: %s", dir, err);
        rocksdb_free(err);
        st->db = NULL;
        memset(st->cf, 0, sizeof(st->cf));
        store_destroy(st);
        return NULL;
    }
    st->ropts = rocksdb_readoptions_create();
    st->ropts_mem = rocksdb_readoptions_create();
    rocksdb_readoptions_set_read_tier(st->ropts_mem, 1 /* kBlockCacheTier */);
    st->wsync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wsync, 1);
    st->wnosync = rocksdb_writeoptions_create();

    /* Schema version: written on first open, refused if newer than us. */
    uint64_t schema = 0;
    store_status_t s = store_get_u64(st, CF_META, "schema_version", 14, &schema);
    if (s == STORE_NOT_FOUND) {
        s = store_put_u64(st, CF_META, "schema_version", STORE_SCHEMA_VERSION);
        schema = STORE_SCHEMA_VERSION;
    }
    if (s != STORE_OK || schema != STORE_SCHEMA_VERSION) {
        if (errmsg)
            *errmsg = store_strdupf("store in %s has schema version %llu, this patd reads %d", dir,
                                    (unsigned long long)schema, STORE_SCHEMA_VERSION);
        store_destroy(st);
        return NULL;
    }
    uint64_t hw = 1;
    s = store_get_u64(st, CF_META, "token_id_hw", 11, &hw);
    if (s != STORE_OK && s != STORE_NOT_FOUND) {
        if (errmsg) *errmsg = store_strdupf("cannot read the token id counter in %s", dir);
        store_destroy(st);
        return NULL;
    }
    st->id_next = st->id_hw = hw ? hw : 1;
    /* Sequence numbers start from the wall clock in nanoseconds so that they
     * keep growing across restarts without being stored. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    st->activity_seq = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    return st;
}

void store_close(store_t *st)
{
    if (st == NULL) return;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < CF__COUNT; i++) {
        char *err = NULL;
        rocksdb_flush_cf(st->db, fo, st->cf[i], &err);
        if (err) store_fail(err, "flush at close"); /* the WAL still has it all */
    }
    rocksdb_flushoptions_destroy(fo);
    store_destroy(st);
}

void store_compact(store_t *st)
{
    for (int i = 0; i < CF__COUNT; i++)
        rocksdb_compact_range_cf(st->db, st->cf[i], NULL, 0, NULL, 0);
}

store_status_t store_next_token_id(store_t *st, uint64_t *id)
{
    store_status_t s = STORE_OK;
    pthread_mutex_lock(&st->id_lock);
    if (st->id_next >= st->id_hw) {
        s = store_put_u64(st, CF_META, "token_id_hw", st->id_next + STORE_ID_BLOCK);
        if (s == STORE_OK) st->id_hw = st->id_next + STORE_ID_BLOCK;
    }
    if (s == STORE_OK) *id = st->id_next++;
    pthread_mutex_unlock(&st->id_lock);
    return s;
}

/* ---------------------------------------------------------------- reads */

store_status_t store_user_get(store_t *st, const char *user_id, Patd__Store__UserRecord **out)
{
    return store_get_record(st, CF_USERS, user_id, strlen(user_id),
                            &patd__store__user_record__descriptor, (void **)out);
}

store_status_t store_token_get(store_t *st, uint64_t id, Patd__Store__TokenRecord **out)
{
    uint8_t key[8];
    put_u64(key, id);
    return store_get_record(st, CF_TOKENS, key, 8, &patd__store__token_record__descriptor,
                            (void **)out);
}

void store_set_cold_reads(store_t *st, int on)
{
    atomic_store(&st->cold_reads, on);
}

store_status_t store_token_get_by_hash_cached(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                              Patd__Store__TokenRecord **out)
{
    if (atomic_load_explicit(&st->cold_reads, memory_order_relaxed)) return STORE_WOULD_BLOCK;
    return store_get_record_opt(st, CF_TOKEN_BY_HASH, hash, STORE_HASH_BYTES,
                                &patd__store__token_record__descriptor, (void **)out, 1);
}

store_status_t store_user_get_cached(store_t *st, const char *user_id,
                                     Patd__Store__UserRecord **out)
{
    if (atomic_load_explicit(&st->cold_reads, memory_order_relaxed)) return STORE_WOULD_BLOCK;
    return store_get_record_opt(st, CF_USERS, user_id, strlen(user_id),
                                &patd__store__user_record__descriptor, (void **)out, 1);
}

store_status_t store_token_get_by_hash(store_t *st, const uint8_t hash[STORE_HASH_BYTES],
                                       Patd__Store__TokenRecord **out)
{
    return store_get_record(st, CF_TOKEN_BY_HASH, hash, STORE_HASH_BYTES,
                            &patd__store__token_record__descriptor, (void **)out);
}

size_t store_owner_key(int32_t kind, const char *owner, const char *name, uint8_t *out,
                       size_t out_cap)
{
    size_t olen = strlen(owner);
    size_t nlen = name ? strlen(name) : 0;
    if (olen > STORE_OWNER_MAX) olen = STORE_OWNER_MAX;
    if (2 + olen + nlen > out_cap) return 0;
    out[0] = (uint8_t)kind;
    out[1] = (uint8_t)olen;
    memcpy(out + 2, owner, olen);
    if (nlen) memcpy(out + 2 + olen, name, nlen);
    return 2 + olen + nlen;
}

store_status_t store_token_id_by_name(store_t *st, int32_t kind, const char *owner,
                                      const char *name, uint64_t *id)
{
    size_t cap = 2 + STORE_OWNER_MAX + strlen(name);
    uint8_t *key = malloc(cap);
    if (key == NULL) abort();
    size_t klen = store_owner_key(kind, owner, name, key, cap);
    store_status_t s = store_get_u64(st, CF_TOKENS_BY_OWNER, key, klen, id);
    free(key);
    return s;
}

store_status_t store_last_used_get(store_t *st, uint64_t id, int64_t *ms)
{
    uint8_t key[8];
    put_u64(key, id);
    uint64_t v = 0;
    store_status_t s = store_get_u64(st, CF_LAST_USED, key, 8, &v);
    if (s == STORE_NOT_FOUND) {
        *ms = 0;
        return STORE_OK;
    }
    *ms = (int64_t)v;
    return s;
}

static store_status_t store_iter_status(rocksdb_iterator_t *it)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    return err ? store_fail(err, "iterate") : STORE_OK;
}

store_status_t store_tokens_scan(store_t *st, int32_t kind, const char *owner, const void *after,
                                 size_t after_len, store_token_cb cb, void *arg)
{
    uint8_t prefix[2 + STORE_OWNER_MAX];
    size_t plen = 1;
    prefix[0] = (uint8_t)kind;
    if (owner) plen = store_owner_key(kind, owner, NULL, prefix, sizeof(prefix));

    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(st->db, st->ropts, st->cf[CF_TOKENS_BY_OWNER]);
    if (after_len) {
        rocksdb_iter_seek(it, after, after_len);
        if (rocksdb_iter_valid(it)) {
            size_t kl;
            const char *k = rocksdb_iter_key(it, &kl);
            if (kl == after_len && memcmp(k, after, kl) == 0) rocksdb_iter_next(it);
        }
    } else {
        rocksdb_iter_seek(it, (const char *)prefix, plen);
    }
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0) break;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl < 2 || vl != 8 || kl < 2u + k[1]) continue;
        if (cb(arg, (const char *)k + 2 + k[1], kl - 2 - k[1], get_u64(v))) break;
    }
    store_status_t s = store_iter_status(it);
    rocksdb_iter_destroy(it);
    return s;
}

store_status_t store_users_scan(store_t *st, const char *after, store_user_cb cb, void *arg)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->ropts, st->cf[CF_USERS]);
    if (after && *after) {
        rocksdb_iter_seek(it, after, strlen(after));
        if (rocksdb_iter_valid(it)) {
            size_t kl;
            const char *k = rocksdb_iter_key(it, &kl);
            if (kl == strlen(after) && memcmp(k, after, kl) == 0) rocksdb_iter_next(it);
        }
    } else {
        rocksdb_iter_seek_to_first(it);
    }
    store_status_t s = STORE_OK;
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t vl;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        Patd__Store__UserRecord *u = patd__store__user_record__unpack(NULL, vl, v);
        if (u == NULL) {
            s = STORE_CORRUPT;
            break;
        }
        int stop = cb(arg, u);
        patd__store__user_record__free_unpacked(u, NULL);
        if (stop) break;
    }
    if (s == STORE_OK) s = store_iter_status(it);
    rocksdb_iter_destroy(it);
    return s;
}

static void store_activity_key(uint8_t key[STORE_ACTIVITY_KEYLEN], uint64_t id, uint64_t time,
                               uint64_t seq)
{
    put_u64(key, id);
    put_u64(key + 8, time);
    put_u64(key + 16, seq);
}

store_status_t store_activity_scan(store_t *st, uint64_t id, store_activity_cb cb, void *arg)
{
    uint8_t hi[STORE_ACTIVITY_KEYLEN];
    store_activity_key(hi, id, UINT64_MAX, UINT64_MAX);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->ropts, st->cf[CF_ACTIVITY]);
    store_status_t s = STORE_OK;
    for (rocksdb_iter_seek_for_prev(it, (const char *)hi, sizeof(hi)); rocksdb_iter_valid(it);
         rocksdb_iter_prev(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != STORE_ACTIVITY_KEYLEN || get_u64(k) != id) break;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        Patd__Store__ActivityRecord *ev = patd__store__activity_record__unpack(NULL, vl, v);
        if (ev == NULL) {
            s = STORE_CORRUPT;
            break;
        }
        int stop = cb(arg, ev);
        patd__store__activity_record__free_unpacked(ev, NULL);
        if (stop) break;
    }
    if (s == STORE_OK) s = store_iter_status(it);
    rocksdb_iter_destroy(it);
    return s;
}

static int store_newest_cb(void *arg, const Patd__Store__ActivityRecord *ev)
{
    size_t len = patd__store__activity_record__get_packed_size(ev);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) abort();
    patd__store__activity_record__pack(ev, buf);
    *(Patd__Store__ActivityRecord **)arg = patd__store__activity_record__unpack(NULL, len, buf);
    free(buf);
    return 1;
}

store_status_t store_activity_newest(store_t *st, uint64_t id, Patd__Store__ActivityRecord **out)
{
    *out = NULL;
    store_status_t s = store_activity_scan(st, id, store_newest_cb, out);
    if (s == STORE_OK && *out == NULL) s = STORE_NOT_FOUND;
    return s;
}

store_status_t store_activity_trim(store_t *st, uint64_t id, unsigned keep)
{
    uint8_t hi[STORE_ACTIVITY_KEYLEN];
    store_activity_key(hi, id, UINT64_MAX, UINT64_MAX);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->ropts, st->cf[CF_ACTIVITY]);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    unsigned seen = 0, doomed = 0;
    /* Point deletes of the (few) rows past the newest `keep`: a range
     * tombstone per trim would pile up in the memtable and slow reads. */
    for (rocksdb_iter_seek_for_prev(it, (const char *)hi, sizeof(hi)); rocksdb_iter_valid(it);
         rocksdb_iter_prev(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != STORE_ACTIVITY_KEYLEN || get_u64(k) != id) break;
        if (++seen > keep) {
            rocksdb_writebatch_delete_cf(wb, st->cf[CF_ACTIVITY], (const char *)k, kl);
            doomed++;
        }
    }
    store_status_t s = store_iter_status(it);
    rocksdb_iter_destroy(it);
    char *err = NULL;
    if (s == STORE_OK && doomed) rocksdb_write(st->db, st->wnosync, wb, &err);
    rocksdb_writebatch_destroy(wb);
    if (err) return store_fail(err, "trim activity");
    return s;
}

store_status_t store_activity_next_id(store_t *st, uint64_t after, uint64_t *id)
{
    if (after == UINT64_MAX) return STORE_NOT_FOUND;
    uint8_t lo[STORE_ACTIVITY_KEYLEN];
    store_activity_key(lo, after + 1, 0, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->ropts, st->cf[CF_ACTIVITY]);
    rocksdb_iter_seek(it, (const char *)lo, sizeof(lo));
    store_status_t s = STORE_NOT_FOUND;
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl == STORE_ACTIVITY_KEYLEN) {
            *id = get_u64(k);
            s = STORE_OK;
        }
    } else {
        s = store_iter_status(it) == STORE_OK ? STORE_NOT_FOUND : STORE_IO;
    }
    rocksdb_iter_destroy(it);
    return s;
}

/* ---------------------------------------------------------------- batches */

store_batch_t *store_batch_new(store_t *st)
{
    store_batch_t *b = malloc(sizeof(*b));
    if (b == NULL) abort();
    b->st = st;
    b->wb = rocksdb_writebatch_create();
    return b;
}

void store_batch_free(store_batch_t *b)
{
    if (b == NULL) return;
    rocksdb_writebatch_destroy(b->wb);
    free(b);
}

static void store_batch_put(store_batch_t *b, int cf, const void *k, size_t kl, const void *v,
                            size_t vl)
{
    rocksdb_writebatch_put_cf(b->wb, b->st->cf[cf], k, kl, v, vl);
}

static void store_batch_del(store_batch_t *b, int cf, const void *k, size_t kl)
{
    rocksdb_writebatch_delete_cf(b->wb, b->st->cf[cf], k, kl);
}

void store_batch_put_user(store_batch_t *b, const Patd__Store__UserRecord *u)
{
    size_t len;
    void *buf = store_pack(&u->base, &len);
    store_batch_put(b, CF_USERS, u->user_id, strlen(u->user_id), buf, len);
    free(buf);
}

void store_batch_delete_user(store_batch_t *b, const char *user_id)
{
    store_batch_del(b, CF_USERS, user_id, strlen(user_id));
}

void store_batch_put_token(store_batch_t *b, const Patd__Store__TokenRecord *t)
{
    uint8_t id[8];
    put_u64(id, t->id);
    size_t len;
    void *buf = store_pack(&t->base, &len);
    store_batch_put(b, CF_TOKENS, id, 8, buf, len);
    store_batch_put(b, CF_TOKEN_BY_HASH, t->hash.data, t->hash.len, buf, len);
    free(buf);
    size_t cap = 2 + STORE_OWNER_MAX + strlen(t->name);
    uint8_t *okey = malloc(cap);
    if (okey == NULL) abort();
    size_t olen = store_owner_key(t->kind, t->owner_id, t->name, okey, cap);
    store_batch_put(b, CF_TOKENS_BY_OWNER, okey, olen, id, 8);
    free(okey);
}

void store_batch_delete_token(store_batch_t *b, const Patd__Store__TokenRecord *t)
{
    uint8_t id[8];
    put_u64(id, t->id);
    store_batch_del(b, CF_TOKENS, id, 8);
    store_batch_del(b, CF_TOKEN_BY_HASH, t->hash.data, t->hash.len);
    size_t cap = 2 + STORE_OWNER_MAX + strlen(t->name);
    uint8_t *okey = malloc(cap);
    if (okey == NULL) abort();
    size_t olen = store_owner_key(t->kind, t->owner_id, t->name, okey, cap);
    store_batch_del(b, CF_TOKENS_BY_OWNER, okey, olen);
    free(okey);
    store_batch_del(b, CF_LAST_USED, id, 8);
}

void store_batch_put_last_used(store_batch_t *b, uint64_t id, int64_t ms)
{
    uint8_t k[8], v[8];
    put_u64(k, id);
    put_u64(v, (uint64_t)ms);
    store_batch_put(b, CF_LAST_USED, k, 8, v, 8);
}

uint64_t store_activity_seq(store_t *st)
{
    return atomic_fetch_add(&st->activity_seq, 1);
}

void store_batch_put_activity(store_batch_t *b, uint64_t id, uint64_t seq,
                              const Patd__Store__ActivityRecord *ev)
{
    uint8_t key[STORE_ACTIVITY_KEYLEN];
    store_activity_key(key, id, (uint64_t)ev->time, seq);
    size_t len;
    void *buf = store_pack(&ev->base, &len);
    store_batch_put(b, CF_ACTIVITY, key, sizeof(key), buf, len);
    free(buf);
}

static uint64_t store_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void store_write_observe(store_t *st, uint64_t ns)
{
    size_t i = 0;
    while (i < STORE_WRITE_BUCKETS && ns > store_write_le_ns[i])
        i++;
    atomic_fetch_add_explicit(&st->write_counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->write_sum_ns, ns, memory_order_relaxed);
}

void store_write_stats(const store_t *st, store_write_stats_t *out)
{
    memcpy(out->le_ns, store_write_le_ns, sizeof(out->le_ns));
    for (size_t i = 0; i <= STORE_WRITE_BUCKETS; i++)
        out->counts[i] = atomic_load_explicit(&st->write_counts[i], memory_order_relaxed);
    out->sum_ns = atomic_load_explicit(&st->write_sum_ns, memory_order_relaxed);
}

store_status_t store_batch_commit(store_batch_t *b, int sync)
{
    store_t *st = b->st;
    if (store_injected_fault(st, "write batch")) return STORE_IO;
    char *err = NULL;
    uint64_t t0 = store_now_ns();
    rocksdb_write(st->db, sync ? st->wsync : st->wnosync, b->wb, &err);
    store_write_observe(st, store_now_ns() - t0);
    if (err) {
        store_write_failed(st, err, "write batch");
        rocksdb_free(err);
        return STORE_IO;
    }
    store_write_ok(st);
    return STORE_OK;
}

/* ---------------------------------------------------------------- check */

static long store_check_tokens(store_t *st, FILE *out)
{
    long problems = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->ropts, st->cf[CF_TOKENS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        Patd__Store__TokenRecord *t = patd__store__token_record__unpack(NULL, vl, v);
        if (kl != 8 || t == NULL) {
            fprintf(out, "tokens: undecodable record (key %zu bytes)\n", kl);
            problems++;
            store_record_free(t);
            continue;
        }
        uint64_t id = get_u64(k), got = 0;
        if (t->id != id) {
            fprintf(out, "tokens: key %llu holds record of id %llu\n", (unsigned long long)id,
                    (unsigned long long)t->id);
            problems++;
        }
        Patd__Store__TokenRecord *byhash = NULL;
        if (t->hash.len != STORE_HASH_BYTES ||
            store_token_get_by_hash(st, t->hash.data, &byhash) != STORE_OK || byhash->id != id) {
            fprintf(out, "token_by_hash: no entry pointing to token %llu\n",
                    (unsigned long long)id);
            problems++;
        } else if (byhash->active != t->active || byhash->expiration != t->expiration ||
                   strcmp(byhash->owner_id, t->owner_id) != 0 ||
                   strcmp(byhash->name, t->name) != 0) {
            fprintf(out, "token_by_hash: copy of token %llu differs from its record\n",
                    (unsigned long long)id);
            problems++;
        }
        store_record_free(byhash);
        if (store_token_id_by_name(st, t->kind, t->owner_id, t->name, &got) != STORE_OK ||
            got != id) {
            fprintf(out, "tokens_by_owner: no entry pointing to token %llu\n",
                    (unsigned long long)id);
            problems++;
        }
        Patd__Store__UserRecord *u = NULL;
        if (store_user_get(st, t->owner_id, &u) != STORE_OK) {
            fprintf(out, "users: owner of token %llu does not exist\n", (unsigned long long)id);
            problems++;
        }
        store_record_free(u);
        if (id >= st->id_hw) {
            fprintf(out, "meta: token id %llu is not below the id high-water mark\n",
                    (unsigned long long)id);
            problems++;
        }
        store_record_free(t);
    }
    rocksdb_iter_destroy(it);
    return problems;
}

/* Every index entry must point at a token whose fields produce that entry. */
static long store_check_index(store_t *st, int cf, FILE *out)
{
    long problems = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, st->ropts, st->cf[cf]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        uint64_t id;
        if (cf == CF_TOKEN_BY_HASH) {
            Patd__Store__TokenRecord *copy = patd__store__token_record__unpack(NULL, vl, v);
            if (copy == NULL) {
                fprintf(out, "%s: undecodable record\n", store_cf_names[cf]);
                problems++;
                continue;
            }
            id = copy->id;
            store_record_free(copy);
        } else if (vl == 8) {
            id = get_u64(v);
        } else {
            fprintf(out, "%s: value of %zu bytes\n", store_cf_names[cf], vl);
            problems++;
            continue;
        }
        Patd__Store__TokenRecord *t = NULL;
        if (store_token_get(st, id, &t) != STORE_OK) {
            fprintf(out, "%s: entry points to missing token %llu\n", store_cf_names[cf],
                    (unsigned long long)id);
            problems++;
            continue;
        }
        int match;
        if (cf == CF_TOKEN_BY_HASH) {
            match = kl == t->hash.len && memcmp(k, t->hash.data, kl) == 0;
        } else {
            uint8_t buf[2 + STORE_OWNER_MAX + 256];
            size_t ol = store_owner_key(t->kind, t->owner_id, t->name, buf, sizeof(buf));
            match = ol == kl && memcmp(k, buf, kl) == 0;
        }
        if (!match) {
            fprintf(out, "%s: entry for token %llu does not match its record\n", store_cf_names[cf],
                    (unsigned long long)id);
            problems++;
        }
        store_record_free(t);
    }
    rocksdb_iter_destroy(it);
    return problems;
}

long store_check(store_t *st, FILE *out)
{
    long p = store_check_tokens(st, out);
    p += store_check_index(st, CF_TOKEN_BY_HASH, out);
    p += store_check_index(st, CF_TOKENS_BY_OWNER, out);
    return p;
}
