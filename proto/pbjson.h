/* pbjson: the one JSON form of patd's messages, driven by protobuf-c's
 * descriptors, so no message is written to or read from JSON by hand. The
 * HTTP API (server/http_api.c) and patctl --json both speak it.
 *
 * The form (docs/http.md says the same for users):
 *   - keys are the proto's field names (snake_case), in the proto's order;
 *   - strings and booleans as they are; other integers as JSON numbers
 *     (ids stay below 2^53, the most a JSON number holds exactly);
 *   - times (the int64 fields named created, expiration, last_used, time,
 *     first_time and now: Unix milliseconds on the wire) as RFC 3339 UTC
 *     text with milliseconds, "2026-12-02T09:30:00.000Z", and null for 0
 *     (never);
 *   - an enum as its value's name without the enum's prefix, in lower case
 *     (TOKEN_STATUS_ACTIVE is "active", ROLE_ADMIN "admin"); the
 *     ..._UNSPECIFIED value is left out of output;
 *   - a repeated field as an array, always present; a message field that
 *     is not set, and a oneof member that is not chosen, as null;
 *   - bytes fields are not part of the form (only the framed envelope has
 *     them, and JSON has no envelope): left out of output, refused in input.
 * Input is strict: a key the message does not have is an error naming it
 * (a typo must not silently become a default), as is a value of the wrong
 * type, an integer out of the field's range, an unknown enum word or a
 * malformed time; null means "not set". Duplicate keys are refused.
 *
 * Ownership: pbjson_encode returns a new jansson reference (json_decref);
 * pbjson_dumps a malloc'd string (free). pbjson_decode allocates what it
 * fills in (strings, arrays, submessages) with the caller's allocator, so
 * the message goes with the caller's arena. No function keeps a pointer
 * to its arguments. Thread-safe: no state. */
#ifndef PAT_PBJSON_H
#define PAT_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#define PBJSON_ERR_MAX  256
#define PBJSON_TIME_LEN 24 /* "2026-12-02T09:30:00.000Z" */

/* m as a JSON object. */
json_t *pbjson_encode(const ProtobufCMessage *m);
/* m as JSON text: compact, or indented by two spaces with a final newline. */
char *pbjson_dumps(const ProtobufCMessage *m, int pretty);

/* Fills out, initialized with its descriptor's init, from the JSON object
 * obj. omit: NULL, or a NULL-terminated list of field names that obj may
 * not carry (the HTTP API takes them from the path). 0, or -1 with a
 * sentence in err naming the field. */
int pbjson_decode(const json_t *obj, ProtobufCMessage *out, ProtobufCAllocator *al,
                  const char *const *omit, char *err, size_t errlen);
/* The same from JSON text of len bytes; malformed JSON is an error that
 * names the byte offset. */
int pbjson_parse(const char *text, size_t len, ProtobufCMessage *out, ProtobufCAllocator *al,
                 const char *const *omit, char *err, size_t errlen);
/* Sets one scalar field of m from text, as a query string or a path
 * segment carries it: a number, true/false, an enum word, a time or a
 * string; a repeated or message field is refused. 0, or -1 with err. */
int pbjson_set_text(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const char *text,
                    ProtobufCAllocator *al, char *err, size_t errlen);

/* The enum value's JSON word ("active") into out; the number for an
 * unknown one. */
void pbjson_enum_word(const ProtobufCEnumDescriptor *e, int value, char *out, size_t cap);
/* 1 if f is one of the time fields. */
int pbjson_is_time(const ProtobufCFieldDescriptor *f);
/* RFC 3339 text of ms (PBJSON_TIME_LEN + 1 bytes), and back: 0, or -1. */
void pbjson_time_text(int64_t ms, char out[PBJSON_TIME_LEN + 1]);
int pbjson_time_parse(const char *s, int64_t *ms);

#endif
