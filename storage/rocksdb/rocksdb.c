/* rocksdb: the embedded backend's open and close, keys, records and reads
 * (changes are in changes.c, the consistency walk in check.c).
 *
 * DESIGN. RocksDB errors (char **err) become store_status_t here and are
 * logged once with their cause; nothing outside storage/rocksdb/ sees a
 * RocksDB type. The token id counter uses a high-water mark reserved in
 * blocks: the mark is written synced before any id below it is handed out,
 * so an id is never reused, even after kill -9, without a synced meta
 * write per token. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#define RDB_USAGE_MEMTABLE (8u << 20)
#define RDB_HASH_PREFIX    2 /* bytes of a token's digest that its index hashes */
#define RDB_DEFAULT_CACHE  (256u << 20)

const char *const rdb_cf_names[CF__COUNT] = {"default",   "meta",          "users",
                                             "tokens",    "token_by_hash", "tokens_by_owner",
                                             "last_used", "activity"};

/* ---------------------------------------------------------------- helpers */

void rdb_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t rdb_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

store_status_t rdb_fail(char *err, const char *what)
{
    store_log(STORE_LOG_ERROR, "rocksdb: %s failed: %s", what, err);
    rocksdb_free(err);
    return STORE_UNAVAILABLE;
}

store_status_t rdb_iter_status(rocksdb_iterator_t *it)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    return err ? rdb_fail(err, "iterate") : STORE_OK;
}

size_t rdb_owner_key(int32_t kind, const char *owner, const char *name, uint8_t *out,
                     size_t out_cap)
{
    size_t olen = strnlen(owner, STORE_ID_MAX);
    size_t nlen = name ? strnlen(name, STORE_NAME_MAX) : 0;
    if (2 + olen + nlen > out_cap) return 0;
    out[0] = (uint8_t)kind;
    out[1] = (uint8_t)olen;
    memcpy(out + 2, owner, olen);
    if (nlen) memcpy(out + 2 + olen, name, nlen);
    return 2 + olen + nlen;
}

void rdb_event_key(uint8_t key[RDB_EVENT_KEYLEN], uint64_t id, uint64_t time, uint64_t seq)
{
    rdb_put_u64(key, id);
    rdb_put_u64(key + 8, time);
    rdb_put_u64(key + 16, seq);
}

pthread_mutex_t *rdb_owner_lock(rdb_t *r, const char *owner)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)owner; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &r->owner_locks[h % RDB_OWNER_LOCKS];
}

static void *rdb_arena_alloc(void *data, size_t size)
{
    rdb_arena_t *a = data;
    size_t need = (size + 15) & ~(size_t)15;
    if (need <= RDB_ARENA_BYTES - a->used) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    void **s = malloc(16 + size);
    if (s == NULL) return NULL;
    *s = a->spill;
    a->spill = s;
    return (uint8_t *)s + 16;
}

static void rdb_arena_free(void *data, void *p)
{
    (void)data;
    (void)p; /* everything goes in rdb_arena_done */
}

void rdb_arena_init(rdb_arena_t *a)
{
    a->al.alloc = rdb_arena_alloc;
    a->al.free = rdb_arena_free;
    a->al.allocator_data = a;
    a->used = 0;
    a->spill = NULL;
}

void rdb_arena_done(rdb_arena_t *a)
{
    while (a->spill) {
        void **s = a->spill;
        a->spill = *s;
        free(s);
    }
    a->used = 0;
}

/* One point read: STORE_OK with *v (the caller destroys it), or the
 * status (mem_only: STORE_DECLINED when the block is not in memory). */
static store_status_t rdb_read(rdb_t *r, int cf, const void *key, size_t klen, int mem_only,
                               rocksdb_pinnableslice_t **v)
{
    char *err = NULL;
    *v = rocksdb_get_pinned_cf(r->db, mem_only ? r->ropts_mem : r->ropts_point, r->cf[cf], key,
                               klen, &err);
    if (err && mem_only && strstr(err, "ncomplete") != NULL) {
        rocksdb_free(err); /* Status::Incomplete: the block is not in memory */
        return STORE_DECLINED;
    }
    if (err) return rdb_fail(err, "get");
    return *v == NULL ? STORE_NOT_FOUND : STORE_OK;
}

static store_status_t rdb_undecodable(int cf)
{
    store_log(STORE_LOG_ERROR, "rocksdb: undecodable record in column family %s", rdb_cf_names[cf]);
    return STORE_CORRUPT;
}

store_status_t rdb_get_record(rdb_t *r, int cf, const void *key, size_t klen,
                              const ProtobufCMessageDescriptor *desc, void **out, int mem_only,
                              ProtobufCAllocator *al)
{
    rocksdb_pinnableslice_t *v;
    store_status_t s = rdb_read(r, cf, key, klen, mem_only, &v);
    if (s != STORE_OK) return s;
    size_t len;
    const char *val = rocksdb_pinnableslice_value(v, &len);
    *out = protobuf_c_message_unpack(desc, al, len, (const uint8_t *)val);
    rocksdb_pinnableslice_destroy(v);
    return *out == NULL ? rdb_undecodable(cf) : STORE_OK;
}

store_status_t rdb_get_u64_value(rdb_t *r, int cf, const void *key, size_t klen, uint64_t *out)
{
    rocksdb_pinnableslice_t *v;
    store_status_t s = rdb_read(r, cf, key, klen, 0, &v);
    if (s != STORE_OK) return s;
    size_t len;
    const char *val = rocksdb_pinnableslice_value(v, &len);
    s = STORE_CORRUPT;
    if (len == 8) {
        *out = rdb_get_u64((const uint8_t *)val);
        s = STORE_OK;
    }
    rocksdb_pinnableslice_destroy(v);
    return s;
}

static store_status_t rdb_put_meta(rdb_t *r, const char *key, const void *v, size_t vlen)
{
    if (store_injected_fault(&r->base, "put meta")) return STORE_UNAVAILABLE;
    char *err = NULL;
    rocksdb_put_cf(r->db, r->wsync, r->cf[CF_META], key, strlen(key), v, vlen, &err);
    return err ? rdb_fail(err, "put meta") : STORE_OK;
}

static store_status_t rdb_put_meta_u64(rdb_t *r, const char *key, uint64_t v)
{
    uint8_t buf[8];
    rdb_put_u64(buf, v);
    return rdb_put_meta(r, key, buf, 8);
}

store_status_t rdb_reserve_ids(rdb_t *r, uint64_t hw)
{
    return rdb_put_meta_u64(r, "token_id_hw", hw);
}

store_status_t rdb_next_token_id(rdb_t *r, uint64_t *id)
{
    store_status_t s = STORE_OK;
    pthread_mutex_lock(&r->id_lock);
    if (r->id_next >= r->id_hw) {
        s = rdb_reserve_ids(r, r->id_next + RDB_ID_BLOCK);
        if (s == STORE_OK) r->id_hw = r->id_next + RDB_ID_BLOCK;
    }
    if (s == STORE_OK) *id = r->id_next++;
    pthread_mutex_unlock(&r->id_lock);
    return s;
}

/* ---------------------------------------------------------------- records */

#define RDB_COPY(dst, src) store_copy_str((dst), sizeof(dst), (src), strlen((src) ? (src) : ""))

/* ---------------------------------------------------------------- token records by hand
 *
 * A cold Verify decodes the token's record; protobuf-c's generic unpack,
 * driven by the descriptor, was 7% of it (about 1,400 instructions). This
 * reads the same wire format field by field into the domain value, with
 * the same result as protobuf_c_message_unpack + rdb_token_from_rec for
 * every input both accept, and a refusal wherever protobuf-c refuses
 * (tests/unit/test_store.c compares them on random and broken records). */
/* A varint of at most max (<= 10) bytes: its value, bits past 64 dropped. */
static int rdb_varint(const uint8_t **p, const uint8_t *end, unsigned max, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < max && *p < end; i++) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1; /* truncated, or too long */
}

static void rdb_copy_text(char *dst, size_t cap, const uint8_t *src, size_t len)
{
    /* as RDB_COPY: up to a NUL, cut at a character's start */
    const uint8_t *nul = memchr(src, 0, len);
    store_copy_str(dst, cap, (const char *)src, nul ? (size_t)(nul - src) : len);
}

int rdb_token_decode(const uint8_t *p, size_t len, store_token_t *out)
{
    const uint8_t *end = p + len;
    store_token_t t;
    memset(&t, 0, sizeof(t));
    while (p < end) {
        uint64_t key, v = 0;
        const uint8_t *tag = p;
        if (rdb_varint(&p, end, 5, &key) != 0) return -1; /* a tag is 5 bytes at most */
        uint64_t field = (key & 0xffffffffu) >> 3;
        unsigned wt = key & 7;
        /* protobuf-c refuses field 0 in a one-byte tag only; in a longer
         * one it is an unknown field */
        if (field == 0 && p - tag == 1) return -1;
        /* The member's bytes after its tag, [m, p), and its payload. */
        const uint8_t *m = p, *b = NULL;
        if (wt == 0) {
            if (rdb_varint(&p, end, 10, &v) != 0) return -1;
        } else if (wt == 2) {
            if (rdb_varint(&p, end, 5, &v) != 0) return -1;
            v &= 0xffffffffu; /* protobuf-c reads a length as 32 bits */
            if (v > (uint64_t)(end - p)) return -1;
            b = p;
            p += v;
        } else if (wt == 1 || wt == 5) {
            if ((size_t)(end - p) < (wt == 1 ? 8u : 4u)) return -1;
            p += wt == 1 ? 8 : 4;
        } else {
            return -1; /* groups, and wire types 6 and 7 */
        }
        if (field == 6 || field == 9) {
            /* protobuf-c reads a bool from any wire type: true if any of
             * the member's bits is set, a length's included */
            int nz = 0;
            for (const uint8_t *q = m; q < p; q++)
                nz |= *q & 0x7f;
            if (field == 6)
                t.scim = nz != 0;
            else
                t.active = nz != 0;
        } else if (field == 3 || field == 4 || field == 10 || field == 11) {
            if (wt != 2) return -1;
            if (field == 3) rdb_copy_text(t.name, sizeof(t.name), b, v);
            if (field == 4) rdb_copy_text(t.owner_id, sizeof(t.owner_id), b, v);
            if (field == 11) rdb_copy_text(t.created_by, sizeof(t.created_by), b, v);
            if (field == 10) {
                memset(t.hash, 0, sizeof(t.hash));
                if (v == STORE_HASH_BYTES) memcpy(t.hash, b, STORE_HASH_BYTES);
            }
        } else if (field == 1 || field == 2 || field == 5 || field == 7 || field == 8) {
            /* numbers: schema, id, kind, created, expiration */
            if (wt != 0) return -1;
            if (field == 2) t.id = v;
            if (field == 5) t.kind = (int32_t)v;
            if (field == 7) t.created = (int64_t)v;
            if (field == 8) t.expiration = (int64_t)v;
        } /* else an unknown field, skipped */
    }
    *out = t;
    return 0;
}

/* One token record, read and decoded: rdb_get_record's statuses. */
static store_status_t rdb_get_token(rdb_t *r, int cf, const void *key, size_t klen,
                                    store_token_t *out, int mem_only)
{
    rocksdb_pinnableslice_t *v;
    store_status_t s = rdb_read(r, cf, key, klen, mem_only, &v);
    if (s != STORE_OK) return s;
    size_t len;
    const uint8_t *val = (const uint8_t *)rocksdb_pinnableslice_value(v, &len);
    int rc = rdb_token_decode(val, len, out);
    rocksdb_pinnableslice_destroy(v);
    return rc != 0 ? rdb_undecodable(cf) : STORE_OK;
}

void rdb_user_from_rec(const rdb_user_rec_t *rec, store_user_t *out)
{
    RDB_COPY(out->user_id, rec->user_id);
    RDB_COPY(out->user_name, rec->user_name);
    RDB_COPY(out->email, rec->email);
    RDB_COPY(out->name, rec->name);
    RDB_COPY(out->created_by, rec->created_by);
    out->role = rec->role;
    out->user_type = rec->user_type;
    out->active = rec->active;
    out->created = rec->created;
}

void rdb_token_from_rec(const rdb_token_rec_t *rec, store_token_t *out)
{
    out->id = rec->id;
    memset(out->hash, 0, sizeof(out->hash));
    if (rec->hash.len == STORE_HASH_BYTES) memcpy(out->hash, rec->hash.data, STORE_HASH_BYTES);
    RDB_COPY(out->name, rec->name);
    RDB_COPY(out->owner_id, rec->owner_id);
    RDB_COPY(out->created_by, rec->created_by);
    out->kind = rec->kind;
    out->scim = rec->scim;
    out->active = rec->active;
    out->created = rec->created;
    out->expiration = rec->expiration;
}

void rdb_event_from_rec(const rdb_event_rec_t *rec, store_event_t *out)
{
    out->seq = 0;
    out->kind = rec->kind;
    out->time = rec->time;
    out->count = rec->count;
    out->first_time = rec->first_time;
    RDB_COPY(out->path, rec->path);
    RDB_COPY(out->client_ip, rec->client_ip);
    RDB_COPY(out->actor, rec->actor);
    RDB_COPY(out->owner_id, rec->owner_id);
    out->token_kind = rec->token_kind;
}

static void *rdb_pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf == NULL) abort();
    protobuf_c_message_pack(m, buf);
    return buf;
}

void *rdb_pack_user(const store_user_t *u, size_t *len)
{
    rdb_user_rec_t rec = PATD__STORE__USER_RECORD__INIT;
    rec.schema = RDB_SCHEMA_VERSION;
    rec.user_id = (char *)u->user_id;
    rec.user_name = (char *)u->user_name;
    rec.email = (char *)u->email;
    rec.name = (char *)u->name;
    rec.created_by = (char *)u->created_by;
    rec.role = u->role;
    rec.user_type = u->user_type;
    rec.active = u->active;
    rec.created = u->created;
    return rdb_pack(&rec.base, len);
}

void *rdb_pack_token(const store_token_t *t, size_t *len)
{
    rdb_token_rec_t rec = PATD__STORE__TOKEN_RECORD__INIT;
    rec.schema = RDB_SCHEMA_VERSION;
    rec.id = t->id;
    rec.name = (char *)t->name;
    rec.owner_id = (char *)t->owner_id;
    rec.kind = t->kind;
    rec.scim = t->scim;
    rec.created = t->created;
    rec.expiration = t->expiration;
    rec.active = t->active;
    rec.hash.data = (uint8_t *)t->hash;
    rec.hash.len = STORE_HASH_BYTES;
    rec.created_by = (char *)t->created_by;
    return rdb_pack(&rec.base, len);
}

void *rdb_pack_event(const store_event_t *ev, size_t *len)
{
    rdb_event_rec_t rec = PATD__STORE__ACTIVITY_RECORD__INIT;
    rec.schema = RDB_SCHEMA_VERSION;
    rec.kind = ev->kind;
    rec.time = ev->time;
    rec.count = ev->count;
    rec.first_time = ev->first_time;
    rec.path = (char *)ev->path;
    rec.client_ip = (char *)ev->client_ip;
    rec.actor = (char *)ev->actor;
    rec.owner_id = (char *)ev->owner_id;
    rec.token_kind = ev->token_kind;
    return rdb_pack(&rec.base, len);
}

/* ---------------------------------------------------------------- open */

static void rdb_destroy(rdb_t *r)
{
    for (int i = 0; i < CF__COUNT; i++)
        if (r->cf[i]) rocksdb_column_family_handle_destroy(r->cf[i]);
    if (r->db) rocksdb_close(r->db);
    for (int i = 0; i < CF__COUNT; i++) {
        if (r->cf_opts[i]) rocksdb_options_destroy(r->cf_opts[i]);
        if (r->table_opts[i]) rocksdb_block_based_options_destroy(r->table_opts[i]);
    }
    if (r->opts) rocksdb_options_destroy(r->opts);
    if (r->cache) rocksdb_cache_destroy(r->cache);
    if (r->ropts) rocksdb_readoptions_destroy(r->ropts);
    if (r->ropts_mem) rocksdb_readoptions_destroy(r->ropts_mem);
    if (r->ropts_point) rocksdb_readoptions_destroy(r->ropts_point);
    if (r->wsync) rocksdb_writeoptions_destroy(r->wsync);
    if (r->wnosync) rocksdb_writeoptions_destroy(r->wnosync);
    pthread_mutex_destroy(&r->id_lock);
    for (int i = 0; i < RDB_OWNER_LOCKS; i++)
        pthread_mutex_destroy(&r->owner_locks[i]);
    explicit_bzero(r->base.page_key, sizeof(r->base.page_key));
    free(r);
}

/* The flusher writes its batch in id order, but the memtable's skiplist
 * reuses its last insert position only for a key right after the one
 * before: with other tokens' rows in between, as in every batch but the
 * first, each insert searched from the top (measured: about 60% of the
 * flusher's time under a cold Verify storm, in key comparisons). With
 * memtable_insert_with_hint_prefix_extractor, set only through an options
 * string, an insert walks up from the last one with the same prefix, in
 * O(log distance). Every key of these families starts with a token id
 * below 2^56, so one byte is one prefix: one hint per memtable. */
static void rdb_insert_hints(rocksdb_options_t **o)
{
    rocksdb_options_t *n = rocksdb_options_create();
    char *err = NULL;
    rocksdb_get_options_from_string(
        *o, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1", n, &err);
    if (err) { /* a cost only: the inserts search from the top */
        store_log(STORE_LOG_WARN, "rocksdb: no memtable insert hints: %s", err);
        rocksdb_free(err);
        rocksdb_options_destroy(n);
        return;
    }
    rocksdb_options_destroy(*o);
    *o = n;
}

static void rdb_tune(rdb_t *r, size_t cache_bytes)
{
    r->cache = rocksdb_cache_create_lru(cache_bytes);
    r->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->opts, 1);
    rocksdb_options_set_create_missing_column_families(r->opts, 1);
    rocksdb_options_increase_parallelism(r->opts, 2);
    rocksdb_options_set_max_background_jobs(r->opts, 2);
    /* Every table stays open from start: a cold Verify then goes straight
     * to the file's reader instead of through the table cache (an LRU
     * lookup and release per Get; measured: about 7% of a cold Verify).
     * Opening costs each file's footer, index and filter; at a million
     * tokens that is about ten files, each a descriptor (patd raises its
     * descriptor limit at start). */
    rocksdb_options_set_max_open_files(r->opts, -1);

    for (int i = 0; i < CF__COUNT; i++) {
        r->cf_opts[i] = rocksdb_options_create();
        r->table_opts[i] = rocksdb_block_based_options_create();
        rocksdb_block_based_options_set_block_cache(r->table_opts[i], r->cache);
        /* The hash index's index and filter blocks live with the open table
         * (about 3 MB at a million tokens), not in the block cache: a cold
         * Verify then costs one block-cache lookup instead of three. */
        rocksdb_block_based_options_set_cache_index_and_filter_blocks(r->table_opts[i],
                                                                      i != CF_TOKEN_BY_HASH);
        if (i == CF_TOKEN_BY_HASH || i == CF_TOKENS || i == CF_USERS) {
            /* Point lookups by exact key: a bloom filter lets an unknown
             * (well-formed) token miss without reading a data block. */
            rocksdb_block_based_options_set_filter_policy(
                r->table_opts[i], rocksdb_filterpolicy_create_bloom_full(10));
        }
        if (i == CF_TOKEN_BY_HASH) {
            /* Keys are SHA-256 digests: random bytes do not compress, so
             * compression would only cost a decompression per cold Verify.
             * The in-block hash index finds the key without a binary search. */
            rocksdb_options_set_compression(r->cf_opts[i], rocksdb_no_compression);
            rocksdb_block_based_options_set_data_block_index_type(
                r->table_opts[i],
                rocksdb_block_based_table_data_block_index_type_binary_search_and_hash);
            /* Random keys share no prefix to delta-encode, so a restart
             * point per key costs 4 bytes and lets the hash index land on
             * the key itself rather than on a run of 16 to scan. */
            rocksdb_block_based_options_set_block_restart_interval(r->table_opts[i], 1);
            /* The index found by hashing the key's first bytes rather than
             * by binary search: at a million tokens the index is 3 MB, and
             * its search was 16 cache misses and 5k instructions of every
             * cold Verify. Iterators that must see every key say
             * total_order_seek (r->ropts). */
            rocksdb_block_based_options_set_index_type(
                r->table_opts[i], rocksdb_block_based_table_index_type_hash_search);
            rocksdb_options_set_prefix_extractor(
                r->cf_opts[i], rocksdb_slicetransform_create_fixed_prefix(RDB_HASH_PREFIX));
        }
        if (i == CF_LAST_USED || i == CF_ACTIVITY) {
            /* Written in bulk by the usage flusher, a row per token used.
             * Smaller memtables keep the skiplist shallow and in cache. */
            rocksdb_options_set_write_buffer_size(r->cf_opts[i], RDB_USAGE_MEMTABLE);
        }
        rocksdb_options_set_block_based_table_factory(r->cf_opts[i], r->table_opts[i]);
        if (i == CF_LAST_USED || i == CF_ACTIVITY) rdb_insert_hints(&r->cf_opts[i]);
    }
}

/* The schema version, the id counter and the page key: written on first
 * open; a newer schema is refused. */
static int rdb_load_meta(rdb_t *r, const char *dir, char **errmsg)
{
    uint64_t schema = 0;
    store_status_t s = rdb_get_u64_value(r, CF_META, "schema_version", 14, &schema);
    if (s == STORE_NOT_FOUND) {
        s = rdb_put_meta_u64(r, "schema_version", RDB_SCHEMA_VERSION);
        schema = RDB_SCHEMA_VERSION;
    }
    if (s != STORE_OK || schema != RDB_SCHEMA_VERSION) {
        if (errmsg)
            *errmsg = store_errf("store in %s has schema version %llu, this patd reads %d", dir,
                                 (unsigned long long)schema, RDB_SCHEMA_VERSION);
        return -1;
    }
    uint64_t hw = 1;
    s = rdb_get_u64_value(r, CF_META, "token_id_hw", 11, &hw);
    if (s != STORE_OK && s != STORE_NOT_FOUND) {
        if (errmsg) *errmsg = store_errf("cannot read the token id counter in %s", dir);
        return -1;
    }
    r->id_next = r->id_hw = hw ? hw : 1;
    r->base.schema = r->base.schema_known = RDB_SCHEMA_VERSION;

    char *err = NULL;
    size_t len = 0;
    char *key = rocksdb_get_cf(r->db, r->ropts_point, r->cf[CF_META], "page_key", 8, &len, &err);
    if (err == NULL && key == NULL) {
        uint8_t fresh[STORE_PAGE_KEY];
        if (store_random_key(fresh) != 0 ||
            rdb_put_meta(r, "page_key", fresh, sizeof(fresh)) != STORE_OK) {
            if (errmsg) *errmsg = store_errf("cannot make the page-token key in %s", dir);
            return -1;
        }
        memcpy(r->base.page_key, fresh, STORE_PAGE_KEY);
        explicit_bzero(fresh, sizeof(fresh));
        return 0;
    }
    if (err || len != STORE_PAGE_KEY) {
        if (errmsg) *errmsg = store_errf("cannot read the page-token key in %s", dir);
        rocksdb_free(err);
        rocksdb_free(key);
        return -1;
    }
    memcpy(r->base.page_key, key, STORE_PAGE_KEY);
    explicit_bzero(key, len);
    rocksdb_free(key);
    return 0;
}

static store_t *rdb_open(const char *dir, const store_options_t *opt, char **errmsg)
{
    char probe[4096];
    struct stat sb;
    snprintf(probe, sizeof(probe), "%s/CURRENT", dir);
    if (opt->must_exist && stat(probe, &sb) != 0) {
        if (errmsg) *errmsg = store_errf("no store in %s", dir);
        return NULL;
    }
    rdb_t *r = calloc(1, sizeof(*r));
    if (r == NULL) abort();
    pthread_mutex_init(&r->id_lock, NULL);
    for (int i = 0; i < RDB_OWNER_LOCKS; i++)
        pthread_mutex_init(&r->owner_locks[i], NULL);
    rdb_tune(r, opt->cache_bytes ? opt->cache_bytes : RDB_DEFAULT_CACHE);

    const rocksdb_options_t *cf_opts_c[CF__COUNT];
    for (int i = 0; i < CF__COUNT; i++)
        cf_opts_c[i] = r->cf_opts[i];
    char *err = NULL;
    r->db =
        rocksdb_open_column_families(r->opts, dir, CF__COUNT, rdb_cf_names, cf_opts_c, r->cf, &err);
    if (err) {
        if (errmsg) *errmsg = store_errf("cannot open store in %s: %s", dir, err);
        rocksdb_free(err);
        r->db = NULL;
        memset(r->cf, 0, sizeof(r->cf));
        rdb_destroy(r);
        return NULL;
    }
    r->ropts = rocksdb_readoptions_create();
    rocksdb_readoptions_set_total_order_seek(r->ropts, 1);
    /* A point read of a whole key goes through the hash index, as the
     * loop's reads from memory do; in total order it binary-searched the
     * index instead, on every worker's cold read from the file. */
    r->ropts_point = rocksdb_readoptions_create();
    r->ropts_mem = rocksdb_readoptions_create();
    rocksdb_readoptions_set_read_tier(r->ropts_mem, 1 /* kBlockCacheTier */);
    r->wsync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(r->wsync, !opt->bulk);
    r->wnosync = rocksdb_writeoptions_create();
    if (rdb_load_meta(r, dir, errmsg) != 0) {
        rdb_destroy(r);
        return NULL;
    }
    return &r->base;
}

/* Flushes memtables to table files, so the next open replays no WAL (a
 * fast start), then closes. */
static void rdb_close(store_t *st)
{
    rdb_t *r = rdb_of(st);
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < CF__COUNT; i++) {
        char *err = NULL;
        rocksdb_flush_cf(r->db, fo, r->cf[i], &err);
        if (err) rdb_fail(err, "flush at close"); /* the WAL still has it all */
    }
    rocksdb_flushoptions_destroy(fo);
    rdb_destroy(r);
}

static void rdb_compact(store_t *st)
{
    rdb_t *r = rdb_of(st);
    for (int i = 0; i < CF__COUNT; i++)
        rocksdb_compact_range_cf(r->db, r->cf[i], NULL, 0, NULL, 0);
}

/* ---------------------------------------------------------------- reads */

store_status_t rdb_user_read(rdb_t *r, const char *user_id, store_user_t *out, int mem_only)
{
    rdb_user_rec_t *rec = NULL;
    rdb_arena_t a;
    rdb_arena_init(&a);
    store_status_t s =
        rdb_get_record(r, CF_USERS, user_id, strlen(user_id), &patd__store__user_record__descriptor,
                       (void **)&rec, mem_only, &a.al);
    if (s == STORE_OK) rdb_user_from_rec(rec, out);
    rdb_arena_done(&a);
    return s;
}

store_status_t rdb_token_read(rdb_t *r, uint64_t id, store_token_t *out)
{
    uint8_t key[8];
    rdb_put_u64(key, id);
    return rdb_get_token(r, CF_TOKENS, key, 8, out, 0);
}

store_status_t rdb_token_id_by_name(rdb_t *r, int32_t kind, const char *owner, const char *name,
                                    uint64_t *id)
{
    uint8_t key[STORE_CURSOR_MAX];
    size_t klen = rdb_owner_key(kind, owner, name, key, sizeof(key));
    return rdb_get_u64_value(r, CF_TOKENS_BY_OWNER, key, klen, id);
}

static store_status_t rdb_user_get(store_t *st, const char *user_id, store_user_t *out,
                                   int try_only)
{
    return rdb_user_read(rdb_of(st), user_id, out, try_only);
}

static store_status_t rdb_token_get(store_t *st, uint64_t id, store_token_t *out)
{
    return rdb_token_read(rdb_of(st), id, out);
}

static store_status_t rdb_token_get_by_hash(store_t *st, const uint8_t *hash, store_token_t *out,
                                            int try_only)
{
    return rdb_get_token(rdb_of(st), CF_TOKEN_BY_HASH, hash, STORE_HASH_BYTES, out, try_only);
}

static store_status_t rdb_last_used_get(store_t *st, uint64_t id, int64_t *ms)
{
    uint8_t key[8];
    rdb_put_u64(key, id);
    uint64_t v = 0;
    store_status_t s = rdb_get_u64_value(rdb_of(st), CF_LAST_USED, key, 8, &v);
    if (s == STORE_NOT_FOUND) return STORE_OK;
    if (s == STORE_OK) *ms = (int64_t)v;
    return s;
}

/* Seeks it to the first key strictly after `after` (or to `start`). */
static void rdb_seek_after(rocksdb_iterator_t *it, const store_cursor_t *after, const void *start,
                           size_t start_len)
{
    if (after == NULL || after->len == 0) {
        if (start_len)
            rocksdb_iter_seek(it, start, start_len);
        else
            rocksdb_iter_seek_to_first(it);
        return;
    }
    rocksdb_iter_seek(it, (const char *)after->bytes, after->len);
    if (rocksdb_iter_valid(it)) {
        size_t kl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl == after->len && memcmp(k, after->bytes, kl) == 0) rocksdb_iter_next(it);
    }
}

static void rdb_cursor_set(store_cursor_t *c, const void *key, size_t len)
{
    c->len = (uint16_t)(len > STORE_CURSOR_MAX ? STORE_CURSOR_MAX : len);
    memcpy(c->bytes, key, c->len);
}

static store_status_t rdb_users_list(store_t *st, int32_t user_type, const store_cursor_t *after,
                                     unsigned limit, store_user_t *out, unsigned *n, int *more,
                                     store_cursor_t *next)
{
    rdb_t *r = rdb_of(st);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ropts, r->cf[CF_USERS]);
    store_status_t s = STORE_OK;
    for (rdb_seek_after(it, after, NULL, 0); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t vl;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        rdb_user_rec_t *u = patd__store__user_record__unpack(NULL, vl, v);
        if (u == NULL) {
            s = STORE_CORRUPT;
            break;
        }
        int want = user_type == 0 || u->user_type == user_type;
        if (want && *n == limit) {
            *more = 1;
            patd__store__user_record__free_unpacked(u, NULL);
            break;
        }
        if (want) {
            rdb_user_from_rec(u, &out[(*n)++]);
            size_t kl;
            const char *k = rocksdb_iter_key(it, &kl);
            rdb_cursor_set(next, k, kl);
        }
        patd__store__user_record__free_unpacked(u, NULL);
    }
    if (s == STORE_OK) s = rdb_iter_status(it);
    rocksdb_iter_destroy(it);
    if (!*more) next->len = 0;
    return s;
}

static store_status_t rdb_tokens_list(store_t *st, int32_t kind, const char *owner,
                                      const store_cursor_t *after, unsigned limit,
                                      store_token_t *out, unsigned *n, int *more,
                                      store_cursor_t *next)
{
    rdb_t *r = rdb_of(st);
    uint8_t prefix[2 + STORE_ID_MAX];
    size_t plen = 1;
    prefix[0] = (uint8_t)kind;
    if (owner) plen = rdb_owner_key(kind, owner, NULL, prefix, sizeof(prefix));
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ropts, r->cf[CF_TOKENS_BY_OWNER]);
    store_status_t s = STORE_OK;
    for (rdb_seek_after(it, after, prefix, plen); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl < plen || memcmp(k, prefix, plen) != 0) break;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl < 2 || vl != 8 || kl < 2u + k[1]) continue;
        if (*n == limit) {
            *more = 1;
            break;
        }
        store_status_t ts = rdb_token_read(r, rdb_get_u64(v), &out[*n]);
        if (ts == STORE_NOT_FOUND) continue; /* deleted since the index was read */
        if (ts != STORE_OK) {
            s = ts;
            break;
        }
        (*n)++;
        rdb_cursor_set(next, k, kl);
    }
    if (s == STORE_OK) s = rdb_iter_status(it);
    rocksdb_iter_destroy(it);
    if (!*more) next->len = 0;
    return s;
}

const store_backend_t store_rocksdb_backend = {
    .scheme = "rocksdb",
    .open = rdb_open,
    .close = rdb_close,
    .compact = rdb_compact,
    .check = rdb_check,
    .user_get = rdb_user_get,
    .user_create = rdb_user_create,
    .user_upsert = rdb_user_upsert,
    .user_set_active = rdb_user_set_active,
    .user_delete = rdb_user_delete,
    .users_list = rdb_users_list,
    .token_get = rdb_token_get,
    .token_get_by_hash = rdb_token_get_by_hash,
    .token_create = rdb_token_create,
    .token_set_active = rdb_token_set_active,
    .token_delete = rdb_token_delete,
    .tokens_list = rdb_tokens_list,
    .import_users = rdb_import_users,
    .import_tokens = rdb_import_tokens,
    .last_used_get = rdb_last_used_get,
    .usage_begin = rdb_usage_begin,
    .usage_last_used = rdb_usage_last_used,
    .usage_event = rdb_usage_event,
    .usage_commit = rdb_usage_commit,
    .usage_abandon = rdb_usage_abandon,
    .activity_list = rdb_activity_list,
    .activity_trim = rdb_activity_trim,
    .activity_next_id = rdb_activity_next_id,
};
