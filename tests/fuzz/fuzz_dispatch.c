/* libFuzzer target: request decoding and dispatch. Each input is a frame
 * body (a pat.v1.Request, or garbage) handed to the loop thread's inline
 * path and to the full dispatcher, against a real RocksDB store in a
 * temporary directory with a user and a token in it. The seed corpus
 * carries the platform key below, so the fuzzer reaches every handler.
 * Whatever the hand-made Verify reader (wire.h) takes must be what
 * protobuf-c and wire_check read from the same bytes. */
#include "fuzz_svc.h" /* first: it sets _XOPEN_SOURCE for nftw */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framed.h"
#include "pat/v1/pat.pb-c.h"
#include "wire.h"

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

/* The hand-made reader against protobuf-c: aborts on any difference. */
static void fuzz_same_as_protobuf_c(const uint8_t *data, size_t size)
{
    static wire_verify_t w;
    if (!wire_read_verify(data, size, &w)) return;
    char why[256];
    if (wire_check(&pat__v1__request__descriptor, data, size, why, sizeof(why)) != 0) abort();
    Pat__V1__Request *r = pat__v1__request__unpack(NULL, size, data);
    if (r == NULL || r->id != w.id || strcmp(r->method, "pat.v1.TokenService/Verify") != 0 ||
        r->n_metadata != 0)
        abort();
    if (wire_check(&pat__v1__verify_request__descriptor, r->payload.data, r->payload.len, why,
                   sizeof(why)) != 0)
        abort();
    Pat__V1__VerifyRequest *v =
        pat__v1__verify_request__unpack(NULL, r->payload.len, r->payload.data);
    if (v == NULL || strcmp(v->bearer_token, w.bearer_token) != 0 || strcmp(v->path, w.path) != 0 ||
        strcmp(v->client_ip, w.client_ip) != 0 || (int32_t)v->required_role != w.required_role ||
        v->base.n_unknown_fields != 0)
        abort();
    pat__v1__verify_request__free_unpacked(v, NULL);
    pat__v1__request__free_unpacked(r, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_same_as_protobuf_c(data, size);
    size_t n = 0;
    uint8_t *out = framed_handle_inline(&f.svc, data, size, &n);
    free(out);
    out = framed_handle(&f.svc, data, size, &n);
    if (out == NULL || n == 0) abort(); /* every request gets an answer */
    free(out);
    if (++runs % 4096 == 0) usage_flush(f.usage);
    return 0;
}
