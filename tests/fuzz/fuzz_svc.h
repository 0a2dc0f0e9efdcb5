/* fuzz_svc: the service every fuzz target runs against: a real RocksDB
 * store in a temporary directory, the usage table, a small verification
 * cache and the fuzz platform key (the seed corpora carry it, so that
 * mutations start inside every handler). Header-only, one per target
 * binary; fuzz_svc_close() removes the store, so no run leaves a
 * /tmp/patd-fuzz-* directory behind. */
#ifndef PAT_FUZZ_SVC_H
#define PAT_FUZZ_SVC_H

#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "service.h"
#include "store.h"
#include "usage.h"

#define FUZZ_PLATFORM_KEY "fuzz-platform-key-0123456789abcdef"

typedef struct {
    char dir[64];
    store_t *st;
    usage_t *usage;
    stats_t stats;
    svc_t svc;
} fuzz_svc_t;

static int fuzz_svc_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Opens it all under a fresh directory named after the target; aborts on failure. */
static void fuzz_svc_open(fuzz_svc_t *f, const char *name)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/patd-fuzz-%s-XXXXXX", name);
    if (mkdtemp(f->dir) == NULL) abort();
    char url[96];
    snprintf(url, sizeof(url), "rocksdb:%s", f->dir);
    f->st = store_open(url, NULL, NULL);
    if (f->st == NULL) abort();
    f->usage = usage_new(f->st);
    svc_init(&f->svc, f->st, f->usage, cache_new(1000), &f->stats, strdup(FUZZ_PLATFORM_KEY));
    svc_add_scim_prefix(&f->svc, "/scim/v2");
}

/* Writes what is pending, closes everything and removes the store. */
static void fuzz_svc_close(fuzz_svc_t *f)
{
    usage_flush(f->usage);
    svc_destroy(&f->svc);
    cache_free(f->svc.cache);
    usage_free(f->usage);
    store_close(f->st);
    nftw(f->dir, fuzz_svc_rm, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
