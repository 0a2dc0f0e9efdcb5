/* wire: string checks on protobuf bytes, and UTF-8 helpers. */
#include "wire.h"

#include <stdio.h>
#include <string.h>

#define WIRE_MAX_DEPTH 16 /* deeper than any message of the contract */

size_t wire_utf8_next(const uint8_t *p, size_t len, uint32_t *cp)
{
    if (len == 0) return 0;
    unsigned c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0; /* a continuation byte, 0xc0/0xc1 (overlong) or past 0xf4 */
    }
    if (len < n) return 0;
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xc0) != 0x80) return 0;
        v = v << 6 | (p[k] & 0x3f);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

int wire_utf8_valid(const uint8_t *p, size_t len)
{
    uint32_t cp;
    for (size_t i = 0, n; i < len; i += n)
        if ((n = wire_utf8_next(p + i, len - i, &cp)) == 0) return 0;
    return 1;
}

size_t wire_utf8_cut(const char *s, size_t max)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t len = strlen(s), i = 0, n;
    uint32_t cp;
    while (i < len && (n = wire_utf8_next(p + i, len - i, &cp)) != 0 && i + n <= max)
        i += n;
    return i;
}

static int wire_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

static int wire_walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, char *path,
                     size_t cap, size_t plen, char *why, size_t wcap, int depth)
{
    size_t i = 0;
    while (i < len) {
        uint64_t key, n;
        if (wire_varint(p, len, &i, &key) != 0) return 0; /* unpack refuses it */
        switch (key & 7) {
        case 0:
            if (wire_varint(p, len, &i, &n) != 0) return 0;
            continue;
        case 1:
            i += 8;
            continue;
        case 5:
            i += 4;
            continue;
        case 2:
            break;
        default:
            return 0; /* groups: unpack refuses them */
        }
        if (wire_varint(p, len, &i, &n) != 0 || n > len - i) return 0;
        const uint8_t *v = p + i;
        i += (size_t)n;
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
        if (f == NULL) continue; /* unknown fields are kept as bytes, never as strings */
        int m = snprintf(path + plen, cap - plen, "%s%s", plen ? "." : "", f->name);
        size_t sub = plen + (m > 0 && (size_t)m < cap - plen ? (size_t)m : 0);
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            const char *bad = memchr(v, 0, (size_t)n)          ? "contains a NUL byte"
                              : !wire_utf8_valid(v, (size_t)n) ? "is not valid UTF-8"
                                                               : NULL;
            if (bad) {
                snprintf(why, wcap, "%s %s", path, bad);
                return -1;
            }
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth < WIRE_MAX_DEPTH) {
            if (wire_walk(f->descriptor, v, (size_t)n, path, cap, sub, why, wcap, depth + 1))
                return -1;
        }
        path[plen] = '\0';
    }
    return 0;
}

int wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, char *why,
               size_t cap)
{
    char path[256] = "";
    return wire_walk(d, p, len, path, sizeof(path), 0, why, cap, 0);
}
