/* svc_fixture: a service over a real RocksDB store in a temporary
 * directory, for the unit tests that call the service's methods
 * (test_dispatch, test_svc_ui, test_conn). Header-only: each test is one file. */
#ifndef PAT_SVC_FIXTURE_H
#define PAT_SVC_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "service.h"
#include "store.h"
#include "usage.h"

#define SVC_FIXTURE_KEY "0123456789abcdef0123456789abcdef"

typedef struct {
    char dir[64];
    store_t *st;
    usage_t *usage;
    cache_t *cache;
    stats_t stats;
    svc_t svc;
} fixture_t;

/* A fresh service with platform key SVC_FIXTURE_KEY; NULL on failure. */
static inline fixture_t *svc_fixture_new(void)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/patd-unit-XXXXXX");
    if (mkdtemp(f->dir) == NULL) return NULL;
    char url[96];
    snprintf(url, sizeof(url), "rocksdb:%s", f->dir);
    f->st = store_open(url, NULL, NULL);
    if (f->st == NULL) return NULL;
    f->usage = usage_new(f->st);
    f->cache = cache_new(1000);
    svc_init(&f->svc, f->st, f->usage, f->cache, &f->stats, strdup(SVC_FIXTURE_KEY));
    return f;
}

/* Closes everything and removes the directory: 0, or -1. */
static inline int svc_fixture_free(fixture_t *f)
{
    svc_destroy(&f->svc);
    cache_free(f->cache);
    usage_free(f->usage);
    store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

#endif
