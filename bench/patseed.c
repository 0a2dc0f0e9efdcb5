/* patseed: bulk-loads synthetic users and tokens into a patd data directory
 * for benchmarks, and writes the tokens (the secrets) to a file for
 * patbench. Runs offline (patd must not be running on that directory).
 * Writes go in unsynced batches of 10000 with one synced write at the end:
 * loading is not what a benchmark measures, serving is. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pat/v1/pat.pb-c.h"
#include "store.h"
#include "token.h"

int main(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    long n = 0, users = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--data-dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--tokens") == 0)
            n = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--users") == 0)
            users = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--out") == 0)
            out = argv[i + 1];
    }
    if (!dir || !out || n <= 0 || users <= 0) {
        fprintf(stderr, "usage: patseed --data-dir DIR --tokens N [--users U] --out FILE\n");
        return 2;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    char db[4096];
    snprintf(db, sizeof(db), "%s/db", dir);
    char *err = NULL;
    store_t *st = store_open(db, NULL, &err);
    if (st == NULL) {
        fprintf(stderr, "patseed: %s\n", err);
        return 1;
    }
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        perror(out);
        return 1;
    }
    int64_t now = (int64_t)time(NULL) * 1000;
    store_batch_t *b = store_batch_new(st);
    for (long u = 0; u < users; u++) {
        char id[32];
        snprintf(id, sizeof(id), "seed-user-%ld", u);
        Patd__Store__UserRecord rec = PATD__STORE__USER_RECORD__INIT;
        rec.schema = STORE_SCHEMA_VERSION;
        rec.user_id = id;
        rec.user_name = id;
        rec.role = PAT__V1__ROLE__ROLE_MEMBER;
        rec.user_type = PAT__V1__USER_TYPE__USER_TYPE_HUMAN;
        rec.active = 1;
        rec.created = now;
        rec.created_by = "patseed";
        store_batch_put_user(b, &rec);
    }
    for (long i = 0; i < n; i++) {
        char tok[TOKEN_MAX_LEN + 1], owner[32], name[32];
        uint8_t hash[TOKEN_HASH_BYTES];
        uint64_t id;
        if (token_generate(TOKEN_PREFIX_PERSONAL, tok) != 0 ||
            store_next_token_id(st, &id) != STORE_OK) {
            fprintf(stderr, "patseed: cannot make token %ld\n", i);
            return 1;
        }
        token_hash(tok, strlen(tok), hash);
        snprintf(owner, sizeof(owner), "seed-user-%ld", i % users);
        snprintf(name, sizeof(name), "seed-%ld", i);
        Patd__Store__TokenRecord t = PATD__STORE__TOKEN_RECORD__INIT;
        t.schema = STORE_SCHEMA_VERSION;
        t.id = id;
        t.name = name;
        t.owner_id = owner;
        t.kind = PAT__V1__TOKEN_KIND__TOKEN_KIND_PERSONAL;
        t.created = now;
        t.expiration = now + 365LL * 86400000;
        t.active = 1;
        t.hash.data = hash;
        t.hash.len = sizeof(hash);
        t.created_by = owner;
        store_batch_put_token(b, &t);
        fprintf(f, "%s\n", tok);
        if ((i + 1) % 10000 == 0) {
            if (store_batch_commit(b, 0) != STORE_OK) return 1;
            store_batch_free(b);
            b = store_batch_new(st);
            if (isatty(STDERR_FILENO)) fprintf(stderr, "\rseeded %ld/%ld", i + 1, n);
        }
    }
    int rc = store_batch_commit(b, 1) == STORE_OK ? 0 : 1;
    store_batch_free(b);
    /* Leave the store as a long-running server's would be: flushed and
     * compacted, so a benchmark measures serving, not leftover compaction. */
    store_compact(st);
    store_close(st);
    if (fclose(f) != 0) rc = 1;
    if (isatty(STDERR_FILENO)) fprintf(stderr, "\n");
    return rc;
}
