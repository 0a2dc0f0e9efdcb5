/* wire: checks on a protobuf message's bytes, before protobuf-c unpacks
 * them into C strings, where a NUL byte would silently cut a string short
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

#endif
