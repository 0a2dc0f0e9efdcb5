/* rocksdb/check: walks every column family and checks that the indexes
 * agree with the token records and with each other (patd check). */
#include <string.h>

#include "internal.h"

static long rdb_check_tokens(rdb_t *r, FILE *out)
{
    long problems = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ropts, r->cf[CF_TOKENS]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        rdb_token_rec_t *rec = patd__store__token_record__unpack(NULL, vl, v);
        if (kl != 8 || rec == NULL) {
            fprintf(out, "tokens: undecodable record (key %zu bytes)\n", kl);
            problems++;
            if (rec) patd__store__token_record__free_unpacked(rec, NULL);
            continue;
        }
        uint64_t id = rdb_get_u64(k), got = 0;
        if (rec->id != id) {
            fprintf(out, "tokens: key %llu holds record of id %llu\n", (unsigned long long)id,
                    (unsigned long long)rec->id);
            problems++;
        }
        store_token_t t, byhash;
        rdb_token_from_rec(rec, &t);
        int hash_ok = rec->hash.len == STORE_HASH_BYTES;
        patd__store__token_record__free_unpacked(rec, NULL);
        if (!hash_ok || store_token_get_by_hash(&r->base, t.hash, &byhash) != STORE_OK ||
            byhash.id != id) {
            fprintf(out, "token_by_hash: no entry pointing to token %llu\n",
                    (unsigned long long)id);
            problems++;
        } else if (byhash.active != t.active || byhash.expiration != t.expiration ||
                   strcmp(byhash.owner_id, t.owner_id) != 0 || strcmp(byhash.name, t.name) != 0) {
            fprintf(out, "token_by_hash: copy of token %llu differs from its record\n",
                    (unsigned long long)id);
            problems++;
        }
        if (rdb_token_id_by_name(r, t.kind, t.owner_id, t.name, &got) != STORE_OK || got != id) {
            fprintf(out, "tokens_by_owner: no entry pointing to token %llu\n",
                    (unsigned long long)id);
            problems++;
        }
        store_user_t u;
        if (rdb_user_read(r, t.owner_id, &u, 0) != STORE_OK) {
            fprintf(out, "users: owner of token %llu does not exist\n", (unsigned long long)id);
            problems++;
        }
        if (id >= r->id_hw) {
            fprintf(out, "meta: token id %llu is not below the id high-water mark\n",
                    (unsigned long long)id);
            problems++;
        }
    }
    rocksdb_iter_destroy(it);
    return problems;
}

/* Every index entry must point at a token whose fields produce that entry. */
static long rdb_check_index(rdb_t *r, int cf, FILE *out)
{
    long problems = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ropts, r->cf[cf]);
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl, vl;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        uint64_t id;
        if (cf == CF_TOKEN_BY_HASH) {
            rdb_token_rec_t *copy = patd__store__token_record__unpack(NULL, vl, v);
            if (copy == NULL) {
                fprintf(out, "%s: undecodable record\n", rdb_cf_names[cf]);
                problems++;
                continue;
            }
            id = copy->id;
            patd__store__token_record__free_unpacked(copy, NULL);
        } else if (vl == 8) {
            id = rdb_get_u64(v);
        } else {
            fprintf(out, "%s: value of %zu bytes\n", rdb_cf_names[cf], vl);
            problems++;
            continue;
        }
        store_token_t t;
        if (rdb_token_read(r, id, &t) != STORE_OK) {
            fprintf(out, "%s: entry points to missing token %llu\n", rdb_cf_names[cf],
                    (unsigned long long)id);
            problems++;
            continue;
        }
        int match;
        if (cf == CF_TOKEN_BY_HASH) {
            match = kl == STORE_HASH_BYTES && memcmp(k, t.hash, kl) == 0;
        } else {
            uint8_t buf[STORE_CURSOR_MAX];
            size_t ol = rdb_owner_key(t.kind, t.owner_id, t.name, buf, sizeof(buf));
            match = ol == kl && memcmp(k, buf, kl) == 0;
        }
        if (!match) {
            fprintf(out, "%s: entry for token %llu does not match its record\n", rdb_cf_names[cf],
                    (unsigned long long)id);
            problems++;
        }
    }
    rocksdb_iter_destroy(it);
    return problems;
}

long rdb_check(store_t *st, FILE *out)
{
    rdb_t *r = rdb_of(st);
    long p = rdb_check_tokens(r, out);
    p += rdb_check_index(r, CF_TOKEN_BY_HASH, out);
    p += rdb_check_index(r, CF_TOKENS_BY_OWNER, out);
    return p;
}
