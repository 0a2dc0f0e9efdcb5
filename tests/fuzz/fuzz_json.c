/* libFuzzer target: the JSON form (proto/pbjson.c). Each input is parsed
 * as the body of every request message the REST API takes; what parses
 * is printed again, and that text must parse back to the same text (the
 * form round-trips), so no input crashes the parser or makes output the
 * parser refuses. The seed corpus holds the bodies of docs/http.md
 * (tests/fuzz/corpus/json). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "pat/v1/pat.pb-c.h"
#include "pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ProtobufCMessageDescriptor *const msgs[] = {
        &pat__v1__create_token_request__descriptor,
        &pat__v1__update_token_request__descriptor,
        &pat__v1__user__descriptor,
        &pat__v1__upsert_user_request__descriptor,
        &pat__v1__create_service_user_request__descriptor,
        &pat__v1__revoke_credentials_request__descriptor,
        &pat__v1__list_tokens_request__descriptor,
    };
    static const char *const omit[] = {"id", "user_id", NULL};
    disp_arena_t *a = disp_arena_new();
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        ProtobufCMessage *m = disp_arena_alloc(a, msgs[i]->sizeof_message);
        msgs[i]->message_init(m);
        char err[PBJSON_ERR_MAX];
        if (pbjson_parse((const char *)data, size, m, disp_arena_allocator(a), i & 1 ? omit : NULL,
                         err, sizeof(err)) != 0) {
            if (err[0] == '\0') abort(); /* every refusal says why */
            continue;
        }
        char *once = pbjson_dumps(m, 0);
        ProtobufCMessage *again = disp_arena_alloc(a, msgs[i]->sizeof_message);
        msgs[i]->message_init(again);
        if (pbjson_parse(once, strlen(once), again, disp_arena_allocator(a), NULL, err,
                         sizeof(err)) != 0)
            abort(); /* output the parser refuses */
        char *twice = pbjson_dumps(again, 0);
        if (strcmp(once, twice) != 0) abort(); /* the form does not round-trip */
        free(once);
        free(twice);
    }
    disp_arena_free(a);
    return 0;
}
