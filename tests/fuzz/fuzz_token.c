/* libFuzzer target: the parsers of untrusted strings: token format and
 * checksum, API path normalization (SCIM decisions), text validation, and
 * the request-id peek. */
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
    free(s);
    return 0;
}
