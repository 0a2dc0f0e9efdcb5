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

#define WIRE_HIGH 0x8080808080808080ull
#define WIRE_ONES 0x0101010101010101ull

/* 0 when len bytes at p are valid UTF-8 (with nul_ok, NUL included); 1 for
 * a NUL byte, 2 for invalid UTF-8. Eight bytes at a time while they are
 * ASCII and not NUL, which is nearly every byte patd sees: the check was
 * 1,200 instructions of a pipelined Verify byte by byte. */
static int wire_text(const uint8_t *p, size_t len, int nul_ok)
{
    size_t i = 0;
    uint32_t cp;
    while (i < len) {
        if (len - i >= 8) {
            uint64_t x;
            memcpy(&x, p + i, 8);
            if (!(x & WIRE_HIGH) && (nul_ok || !((x - WIRE_ONES) & ~x & WIRE_HIGH))) {
                i += 8;
                continue;
            }
        }
        if (p[i] < 0x80) {
            if (p[i] == 0 && !nul_ok) return 1;
            i++;
            continue;
        }
        size_t n = wire_utf8_next(p + i, len - i, &cp);
        if (n == 0) return 2;
        i += n;
    }
    return 0;
}

int wire_utf8_valid(const uint8_t *p, size_t len)
{
    return wire_text(p, len, 1) == 0;
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

static inline int wire_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    if (*i < len && p[*i] < 0x80) { /* tags and short lengths: one byte */
        *v = p[(*i)++];
        return 0;
    }
    *v = 0;
    for (int shift = 0; shift < 64 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* The fields from the top message down to the one being read: the dotted
 * name is composed from them only when a string is refused (building it
 * for every field was 4% of a pipelined Verify's CPU, in snprintf). */
typedef struct {
    const ProtobufCFieldDescriptor *f[WIRE_MAX_DEPTH + 1];
    int n;
} wire_stack_t;

static void wire_refuse(const wire_stack_t *st, const char *bad, char *why, size_t cap)
{
    size_t o = 0;
    for (int k = 0; k < st->n && o < cap; k++) {
        int m = snprintf(why + o, cap - o, "%s%s", k ? "." : "", st->f[k]->name);
        if (m < 0) break;
        o += (size_t)m;
    }
    if (o < cap) snprintf(why + o, cap - o, " %s", bad);
}

static int wire_walk(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                     wire_stack_t *st, char *why, size_t cap)
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
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            int t = wire_text(v, (size_t)n, 0);
            if (t != 0) {
                const char *bad = t == 1 ? "contains a NUL byte" : "is not valid UTF-8";
                st->f[st->n++] = f;
                wire_refuse(st, bad, why, cap);
                return -1;
            }
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && st->n < WIRE_MAX_DEPTH) {
            st->f[st->n++] = f;
            if (wire_walk(f->descriptor, v, (size_t)n, st, why, cap)) return -1;
            st->n--;
        }
    }
    return 0;
}

int wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, char *why,
               size_t cap)
{
    wire_stack_t st = {.n = 0};
    return wire_walk(d, p, len, &st, why, cap);
}
