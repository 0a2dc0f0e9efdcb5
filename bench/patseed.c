/* patseed: bulk-loads synthetic users and tokens into a patd data directory
 * for benchmarks, and writes the tokens (the secrets) to a file for
 * patbench. Runs offline (patd must not be running on that directory).
 * The store is opened in bulk mode (commits unsynced, flushed at close):
 * loading is not what a benchmark measures, serving is. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
    char url[4096];
    snprintf(url, sizeof(url), "rocksdb:%s/db", dir);
    char *err = NULL;
    store_options_t opt = {.bulk = 1};
    store_t *st = store_open(url, &opt, &err);
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
    for (long u = 0; u < users; u++) {
        store_user_t rec = {
            .role = STORE_ROLE_MEMBER, .user_type = STORE_USER_HUMAN, .active = 1, .created = now};
        snprintf(rec.user_id, sizeof(rec.user_id), "seed-user-%ld", u);
        snprintf(rec.user_name, sizeof(rec.user_name), "seed-user-%ld", u);
        snprintf(rec.created_by, sizeof(rec.created_by), "patseed");
        if (store_user_create(st, &rec) != STORE_OK) {
            fprintf(stderr, "patseed: cannot make user %ld\n", u);
            return 1;
        }
    }
    int rc = 0;
    for (long i = 0; i < n; i++) {
        char tok[TOKEN_MAX_LEN + 1];
        store_token_t t = {.kind = STORE_KIND_PERSONAL,
                           .active = 1,
                           .created = now,
                           .expiration = now + 365LL * 86400000};
        if (token_generate(TOKEN_PREFIX_PERSONAL, tok) != 0) {
            fprintf(stderr, "patseed: cannot make token %ld\n", i);
            return 1;
        }
        token_hash(tok, strlen(tok), t.hash);
        snprintf(t.owner_id, sizeof(t.owner_id), "seed-user-%ld", i % users);
        snprintf(t.created_by, sizeof(t.created_by), "seed-user-%ld", i % users);
        snprintf(t.name, sizeof(t.name), "seed-%ld", i);
        /* No CREATED events: the benchmark store holds tokens and users
         * only, as it did before the store interface (comparable runs). */
        if (store_token_create(st, &t, NULL) != STORE_OK) {
            fprintf(stderr, "patseed: cannot store token %ld\n", i);
            rc = 1;
            break;
        }
        fprintf(f, "%s\n", tok);
        if ((i + 1) % 10000 == 0 && isatty(STDERR_FILENO))
            fprintf(stderr, "\rseeded %ld/%ld", i + 1, n);
    }
    /* Leave the store as a long-running server's would be: flushed and
     * compacted, so a benchmark measures serving, not leftover compaction. */
    store_compact(st);
    store_close(st);
    if (fclose(f) != 0) rc = 1;
    if (isatty(STDERR_FILENO)) fprintf(stderr, "\n");
    return rc;
}
