/* libFuzzer target: the parsers of untrusted strings: token format and
 * checksum, API path normalization (SCIM decisions), text validation, the
 * request-id peek, and sealed page tokens (token_open on any text must
 * refuse, never crash; only what token_seal made opens). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framed.h"
#include "service.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    token_prefix_t kind;
    if (token_parse((const char *)data, size, &kind) == 0) {
        /* A valid token must survive a round through the hash too. */
        uint8_t h[TOKEN_HASH_BYTES];
        token_hash((const char *)data, size, h);
        if (kind > TOKEN_PREFIX_SCIM) abort();
    }
    (void)svc_valid_text((const char *)data, size);
    (void)framed_peek_id(data, size);

    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char out[SVC_PATH_MAX + 1];
    if (strlen(s) <= SVC_PATH_MAX && svc_normalize_path(s, out, sizeof(out)) == 0) {
        /* Normalized paths are absolute, have no "." or ".." segments and
         * normalize to themselves. */
        char again[SVC_PATH_MAX + 1];
        if (out[0] != '/' || strstr(out, "/../") || strstr(out, "/./") || strstr(out, "//"))
            abort();
        if (svc_normalize_path(out, again, sizeof(again)) != 0 || strcmp(out, again) != 0) abort();
    }
    static const uint8_t key[32] = {7};
    uint8_t opened[TOKEN_SEAL_MAX];
    if (token_open(key, "fuzz", s, opened, sizeof(opened)) >= 0) abort(); /* no forgery */
    if (size <= TOKEN_SEAL_MAX) {
        char sealed[TOKEN_SEALED_LEN(TOKEN_SEAL_MAX) + 1];
        size_t n = token_seal(key, "fuzz", data, size, sealed);
        if (n == 0 || token_open(key, "fuzz", sealed, opened, sizeof(opened)) != (long)size ||
            memcmp(opened, data, size) != 0)
            abort();
    }
    free(s);
    return 0;
}
