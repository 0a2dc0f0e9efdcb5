/* libFuzzer target: request decoding and dispatch. Each input is a frame
 * body (a pat.v1.Request, or garbage) handed to the loop thread's inline
 * path and to the full dispatcher, against a real RocksDB store in a
 * temporary directory with a user and a token in it. The seed corpus
 * carries the platform key below, so the fuzzer reaches every handler. */
#include "fuzz_svc.h" /* first: it sets _XOPEN_SOURCE for nftw */

#include <stdint.h>
#include <stdlib.h>

#include "framed.h"

static fuzz_svc_t f;
static unsigned long runs;

static void fuzz_cleanup(void)
{
    fuzz_svc_close(&f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_svc_open(&f, "dispatch");
    atexit(fuzz_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = 0;
    uint8_t *out = framed_handle_inline(&f.svc, data, size, &n);
    free(out);
    out = framed_handle(&f.svc, data, size, &n);
    if (out == NULL || n == 0) abort(); /* every request gets an answer */
    free(out);
    if (++runs % 4096 == 0) usage_flush(f.usage);
    return 0;
}
