/* wire: checks on a protobuf message's bytes, before protobuf-c unpacks
 * them into C strings, and a hand-made codec for the hot Verify. Checks
 * first: protobuf-c unpacks strings into C strings, where a NUL byte would silently cut a string
 * short
 * ("abc\0def" would become "abc", "alice\0evil" would be "alice").
 *
 * wire_check() walks the bytes with the message's descriptor and refuses
 * any string field, at any depth (metadata entries included), that holds a
 * NUL byte or is not valid UTF-8 (RFC 3629: no overlong forms, surrogates
 * or code points past U+10FFFF), as Google's protobuf refuses such strings
 * in every language but C. Malformed bytes are left to protobuf-c's own
 * unpack, which refuses them. Pure and thread-safe. */
#ifndef PAT_WIRE_H
#define PAT_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* 0 when every string is clean; -1 with the field's dotted name (e.g.
 * "metadata.key") and what is wrong in why (cap bytes). */
int wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, char *why,
               size_t cap);

/* Decodes one UTF-8 sequence at p (len bytes left): its length, with the
 * code point in *cp, or 0 if it is not a valid sequence. */
size_t wire_utf8_next(const uint8_t *p, size_t len, uint32_t *cp);
/* 1 if len bytes at p are valid UTF-8. */
int wire_utf8_valid(const uint8_t *p, size_t len);
/* The longest prefix of s, at most max bytes, of whole valid characters:
 * where to cut a string that must stay valid UTF-8 (an incomplete or
 * invalid sequence at the end is left out too). */
size_t wire_utf8_cut(const char *s, size_t max);

/* ---------------------------------------------------------------- the hot Verify
 *
 * A hot Verify cost 15-17k instructions, two fifths of them in protobuf-c's
 * descriptor-driven unpack, get_packed_size and pack (callgrind, bench/
 * instructions.sh). These read and write the few messages of that path by
 * hand. They are exact or they decline: wire_read_verify() takes only a
 * frame whose every byte it understands, and leaves anything else (unknown
 * fields, metadata, a string that wire_check() would refuse, odd wire
 * types) to the generic path, so errors and edge cases keep one source;
 * the packers give protobuf-c's bytes, checked byte for byte against it by
 * tests/unit/test_wire.c. */

/* A Request for pat.v1.TokenService/Verify, read in place. The strings are
 * NUL-terminated copies in buf; every pointer points into the struct. */
#define WIRE_VERIFY_MAX                                                                            \
    1024 /* bytes of payload read by hand; larger frames take the generic path */
typedef struct {
    uint64_t id;
    const char *bearer_token, *path, *client_ip;
    int32_t required_role;
    char buf[WIRE_VERIFY_MAX + 8];
} wire_verify_t;

/* 1 with out filled if frame (len bytes, a Request) is a Verify with no
 * metadata and nothing unusual; 0 to take the generic path. */
int wire_read_verify(const uint8_t *frame, size_t len, wire_verify_t *out);

/* Packs msg into out (cap bytes) as protobuf-c would, for the messages a
 * hot Verify answers with (pat.v1.VerifyResponse; its User is encoded once
 * when both fields carry the same one). Returns the length, or 0 if msg is
 * of another type or does not fit: pack it with protobuf-c. last_used_at
 * (may be NULL) receives the offset of token.last_used's varint, or
 * SIZE_MAX when it is not there. */
size_t wire_pack_answer(const ProtobufCMessage *msg, uint8_t *out, size_t cap,
                        size_t *last_used_at);
/* Writes v over the varint at p (avail bytes to the buffer's end) if v's
 * varint is exactly as long: 0, else -1 and nothing written. */
int wire_varint_rewrite(uint8_t *p, size_t avail, uint64_t v);

/* The packed pat.v1.Response of a call that succeeded: id, a Status of
 * HTTP 200 and the payload; out needs WIRE_OK_OVERHEAD + payload_len
 * bytes. Returns the length. */
#define WIRE_OK_OVERHEAD 32
size_t wire_pack_ok(uint64_t id, const uint8_t *payload, size_t payload_len, uint8_t *out);

#endif
