/* libFuzzer target: request decoding and dispatch. Each input is a frame
 * body (a pat.v1.Request, or garbage) handed to the loop thread's inline
 * path and to the full dispatcher, against a real RocksDB store in a
 * temporary directory with a user and a token in it. The seed corpus
 * carries the platform key below, so the fuzzer reaches every handler. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "framed.h"
#include "service.h"
#include "store.h"
#include "usage.h"

#define FUZZ_PLATFORM_KEY "fuzz-platform-key-0123456789abcdef"

static svc_t svc;
static stats_t stats;
static store_t *st;
static usage_t *usage;
static unsigned long runs;
static char dir[] = "/tmp/patd-fuzz-XXXXXX";

static int fuzz_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Closes everything and removes the store: each run used to leave a
 * /tmp/patd-fuzz-* directory behind. */
static void fuzz_cleanup(void)
{
    usage_flush(usage);
    svc_destroy(&svc);
    cache_free(svc.cache);
    usage_free(usage);
    store_close(st);
    nftw(dir, fuzz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (mkdtemp(dir) == NULL) abort();
    st = store_open(dir, NULL, NULL);
    if (st == NULL) abort();
    usage = usage_new(st);
    svc_init(&svc, st, usage, cache_new(1000), &stats, strdup(FUZZ_PLATFORM_KEY));
    svc_add_scim_prefix(&svc, "/scim/v2");
    atexit(fuzz_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0;
    uint8_t *out = framed_handle_inline(&svc, data, size, &n);
    free(out);
    out = framed_handle(&svc, data, size, &n);
    if (out == NULL || n == 0) abort(); /* every request gets an answer */
    free(out);
    if (++runs % 4096 == 0) usage_flush(usage);
    return 0;
}
