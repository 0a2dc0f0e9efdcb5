/* libFuzzer target: the RocksDB backend's token records read by hand
 * (rdb_token_decode) against protobuf-c's unpack and rdb_token_from_rec on
 * arbitrary bytes: the same verdict, and for an accepted record the same
 * token, field by field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rocksdb/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    store_token_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    rdb_token_rec_t *rec = patd__store__token_record__unpack(NULL, size, data);
    if (rec) {
        rdb_token_from_rec(rec, &a);
        patd__store__token_record__free_unpacked(rec, NULL);
    }
    int rb = rdb_token_decode(data, size, &b);
    if ((rec != NULL) != (rb == 0)) abort(); /* one accepts what the other refuses */
    if (rec == NULL) return 0;
    if (a.id != b.id || memcmp(a.hash, b.hash, sizeof(a.hash)) != 0 ||
        strcmp(a.name, b.name) != 0 || strcmp(a.owner_id, b.owner_id) != 0 ||
        strcmp(a.created_by, b.created_by) != 0 || a.kind != b.kind || a.scim != b.scim ||
        a.active != b.active || a.created != b.created || a.expiration != b.expiration)
        abort();
    return 0;
}
