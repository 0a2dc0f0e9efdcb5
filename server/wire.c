/* wire: string checks on protobuf bytes, UTF-8 helpers, and the hot
 * Verify's codec by hand. */
#include "wire.h"

#include <stdio.h>
#include <string.h>

#include "pat/v1/pat.pb-c.h"

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

/* ---------------------------------------------------------------- the hot Verify: reading */

/* A varint of at most 64 bits, as protobuf-c reads it; -1 past the end or
 * for a tenth byte carrying more than the 64th bit (left to protobuf-c). */
static inline int wire_varint64(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    uint64_t x = 0;
    for (int k = 0; k < 10; k++) {
        if (*i >= len) return -1;
        uint8_t b = p[(*i)++];
        if (k == 9 && b > 1) return -1;
        x |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* A length-delimited field's bytes: 0 with *v and *n, or -1. */
static inline int wire_bytes(const uint8_t *p, size_t len, size_t *i, const uint8_t **v, size_t *n)
{
    uint64_t m;
    if (wire_varint64(p, len, i, &m) != 0 || m > len - *i) return -1;
    *v = p + *i;
    *n = (size_t)m;
    *i += (size_t)m;
    return 0;
}

static const char wire_verify_method[] = "pat.v1.TokenService/Verify";

/* A clean string into out->buf at *used, NUL-terminated; NULL to decline. */
static const char *wire_keep(wire_verify_t *out, size_t *used, const uint8_t *v, size_t n)
{
    if (n > sizeof(out->buf) - 1 - *used || wire_text(v, n, 0) != 0) return NULL;
    char *s = out->buf + *used;
    memcpy(s, v, n);
    s[n] = '\0';
    *used += n + 1;
    return s;
}

int wire_read_verify(const uint8_t *p, size_t len, wire_verify_t *out)
{
    const uint8_t *method = NULL, *pl = NULL, *v;
    size_t method_len = 0, pl_len = 0, n, i = 0;
    uint64_t key, x;
    out->id = 0;
    /* The envelope: fields 1-3 only; later ones win, as protobuf-c reads. */
    while (i < len) {
        if (wire_varint64(p, len, &i, &key) != 0) return 0;
        if (key == (1 << 3 | 0)) {
            if (wire_varint64(p, len, &i, &out->id) != 0) return 0;
        } else if (key == (2 << 3 | 2)) {
            /* Every method string is checked, a replaced one too, as
             * wire_check does (the fuzzer found "pat.\0..." then a Verify). */
            if (wire_bytes(p, len, &i, &method, &method_len) != 0 ||
                wire_text(method, method_len, 0) != 0)
                return 0;
        } else if (key == (3 << 3 | 2)) {
            if (wire_bytes(p, len, &i, &pl, &pl_len) != 0) return 0;
        } else {
            return 0; /* metadata, unknown fields, odd wire types */
        }
    }
    if (method_len != sizeof(wire_verify_method) - 1 ||
        memcmp(method, wire_verify_method, method_len) != 0 || pl_len > WIRE_VERIFY_MAX)
        return 0;
    /* The VerifyRequest. */
    out->bearer_token = out->path = out->client_ip = "";
    out->required_role = 0;
    size_t used = 0;
    i = 0;
    while (i < pl_len) {
        if (wire_varint64(pl, pl_len, &i, &key) != 0) return 0;
        if (key == (3 << 3 | 0)) {
            if (wire_varint64(pl, pl_len, &i, &x) != 0) return 0;
            out->required_role = (int32_t)(uint32_t)x; /* an enum: its low 32 bits */
            continue;
        }
        if ((key & 7) != 2 || wire_bytes(pl, pl_len, &i, &v, &n) != 0) return 0;
        const char **dst = key == (1 << 3 | 2)   ? &out->bearer_token
                           : key == (2 << 3 | 2) ? &out->path
                           : key == (4 << 3 | 2) ? &out->client_ip
                                                 : NULL;
        if (dst == NULL || (*dst = wire_keep(out, &used, v, n)) == NULL) return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- the hot Verify: packing */

static inline size_t wire_varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* An enum is an int32 on the wire, a negative one ten bytes long; its C
 * type may be unsigned, so it goes through int32_t. */
#define WIRE_ENUM(v) ((uint64_t)(int64_t)(int32_t)(v))

static inline size_t wire_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Sizes first, then every byte written once in its place: packing the
 * User into a buffer and the TokenInfo into another, then copying both,
 * was a quarter of a hot Verify. */
static inline size_t wire_uint_size(uint64_t v)
{
    return v ? 1 + wire_varint_len(v) : 0;
}

static inline size_t wire_len_size(size_t n)
{
    return 1 + wire_varint_len(n) + n;
}

static inline size_t wire_str_size(size_t n)
{
    return n ? wire_len_size(n) : 0;
}

static inline size_t wire_slen(const char *s)
{
    return s ? strlen(s) : 0;
}

typedef struct {
    size_t len[5]; /* user_id, user_name, email, name, created_by */
    size_t size;   /* of the User's fields */
} wire_user_sizes_t;

static void wire_user_size(const Pat__V1__User *u, wire_user_sizes_t *z)
{
    const char *s[5] = {u->user_id, u->user_name, u->email, u->name, u->created_by};
    z->size = 0;
    for (int k = 0; k < 5; k++) {
        z->len[k] = wire_slen(s[k]);
        z->size += wire_str_size(z->len[k]);
    }
    z->size += wire_uint_size(WIRE_ENUM(u->role)) + wire_uint_size(WIRE_ENUM(u->user_type)) +
               wire_uint_size(u->active ? 1 : 0) + wire_uint_size((uint64_t)u->created);
}

/* Writers into a buffer the sizes have shown to be large enough. */
static inline uint8_t *wire_put_uint(uint8_t *p, unsigned field, uint64_t v)
{
    if (v == 0) return p;
    *p++ = (uint8_t)(field << 3);
    return p + wire_varint_put(p, v);
}

static inline uint8_t *wire_put_len(uint8_t *p, unsigned field, size_t n)
{
    *p++ = (uint8_t)(field << 3 | 2);
    return p + wire_varint_put(p, n);
}

static inline uint8_t *wire_put_str(uint8_t *p, unsigned field, const char *s, size_t n)
{
    if (n == 0) return p;
    p = wire_put_len(p, field, n);
    memcpy(p, s, n);
    return p + n;
}

static uint8_t *wire_put_user(uint8_t *p, unsigned field, const Pat__V1__User *u,
                              const wire_user_sizes_t *z)
{
    p = wire_put_len(p, field, z->size);
    p = wire_put_str(p, 1, u->user_id, z->len[0]);
    p = wire_put_str(p, 2, u->user_name, z->len[1]);
    p = wire_put_str(p, 3, u->email, z->len[2]);
    p = wire_put_str(p, 4, u->name, z->len[3]);
    p = wire_put_uint(p, 5, WIRE_ENUM(u->role));
    p = wire_put_uint(p, 6, WIRE_ENUM(u->user_type));
    p = wire_put_uint(p, 7, u->active ? 1 : 0);
    p = wire_put_uint(p, 8, (uint64_t)u->created);
    return wire_put_str(p, 9, u->created_by, z->len[4]);
}

static size_t wire_pack_verify_response(const Pat__V1__VerifyResponse *r, uint8_t *out, size_t cap,
                                        size_t *last_used_at)
{
    *last_used_at = SIZE_MAX;
    const Pat__V1__TokenInfo *t = r->token;
    if (r->base.n_unknown_fields || (t && t->base.n_unknown_fields) ||
        (r->user && r->user->base.n_unknown_fields) ||
        (t && t->user && t->user->base.n_unknown_fields))
        return 0;
    wire_user_sizes_t zu = {{0}, 0}, zt = {{0}, 0};
    if (r->user) wire_user_size(r->user, &zu);
    size_t total = r->user ? wire_len_size(zu.size) : 0, ti = 0, name_len = 0, by_len = 0;
    if (t != NULL) {
        if (t->user == r->user)
            zt = zu;
        else if (t->user)
            wire_user_size(t->user, &zt);
        name_len = wire_slen(t->name);
        by_len = wire_slen(t->created_by);
        ti = wire_uint_size(t->id) + wire_str_size(name_len) +
             wire_uint_size((uint64_t)t->created) + wire_uint_size((uint64_t)t->expiration) +
             wire_uint_size((uint64_t)t->last_used) + wire_uint_size(t->active ? 1 : 0) +
             wire_uint_size(WIRE_ENUM(t->status)) + wire_uint_size(WIRE_ENUM(t->kind)) +
             wire_uint_size(t->scim_endpoints_only ? 1 : 0) +
             (t->user ? wire_len_size(zt.size) : 0) + wire_str_size(by_len);
        total += wire_len_size(ti);
    }
    if (total > cap) return 0;
    uint8_t *p = out;
    if (r->user) p = wire_put_user(p, 1, r->user, &zu);
    if (t != NULL) {
        p = wire_put_len(p, 2, ti);
        p = wire_put_uint(p, 1, t->id);
        p = wire_put_str(p, 2, t->name, name_len);
        p = wire_put_uint(p, 3, (uint64_t)t->created);
        p = wire_put_uint(p, 4, (uint64_t)t->expiration);
        if (t->last_used) *last_used_at = (size_t)(p - out) + 1; /* after its one-byte key */
        p = wire_put_uint(p, 5, (uint64_t)t->last_used);
        p = wire_put_uint(p, 6, t->active ? 1 : 0);
        p = wire_put_uint(p, 7, WIRE_ENUM(t->status));
        p = wire_put_uint(p, 8, WIRE_ENUM(t->kind));
        p = wire_put_uint(p, 9, t->scim_endpoints_only ? 1 : 0);
        if (t->user) p = wire_put_user(p, 10, t->user, &zt);
        p = wire_put_str(p, 11, t->created_by, by_len);
    }
    return (size_t)(p - out);
}

size_t wire_pack_answer(const ProtobufCMessage *msg, uint8_t *out, size_t cap, size_t *last_used_at)
{
    size_t at;
    if (last_used_at == NULL) last_used_at = &at;
    *last_used_at = SIZE_MAX;
    if (msg->descriptor == &pat__v1__verify_response__descriptor)
        return wire_pack_verify_response((const Pat__V1__VerifyResponse *)msg, out, cap,
                                         last_used_at);
    return 0;
}

int wire_varint_rewrite(uint8_t *p, size_t avail, uint64_t v)
{
    size_t n = 0;
    while (n < avail && (p[n] & 0x80))
        n++;
    if (n == avail || wire_varint_len(v) != n + 1) return -1;
    wire_varint_put(p, v);
    return 0;
}

size_t wire_pack_ok(uint64_t id, const uint8_t *payload, size_t payload_len, uint8_t *out)
{
    /* Response {id = 1; status = 2 {http_status = 2: 200}; payload = 3} */
    static const uint8_t status_200[] = {2 << 3 | 2, 3, 2 << 3 | 0, 0xc8, 0x01};
    size_t n = 0;
    if (id != 0) {
        out[n++] = 1 << 3 | 0;
        n += wire_varint_put(out + n, id);
    }
    memcpy(out + n, status_200, sizeof(status_200));
    n += sizeof(status_200);
    if (payload_len != 0) {
        out[n++] = 3 << 3 | 2;
        n += wire_varint_put(out + n, payload_len);
        memcpy(out + n, payload, payload_len);
        n += payload_len;
    }
    return n;
}
