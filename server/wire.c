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
            if (wire_bytes(p, len, &i, &method, &method_len) != 0) return 0;
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

/* A bounded writer: on overflow it stops writing and the result is 0. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
    int over;
} wire_out_t;

static inline void wire_raw(wire_out_t *w, const void *src, size_t n)
{
    if (w->over || n > w->cap - w->len) {
        w->over = 1;
        return;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

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

/* A varint field; zero is left out, as proto3 packs it. */
static inline void wire_uint(wire_out_t *w, unsigned field, uint64_t v)
{
    if (v == 0) return;
    uint8_t b[11];
    b[0] = (uint8_t)(field << 3);
    wire_raw(w, b, 1 + wire_varint_put(b + 1, v));
}

/* int32 fields and enums: a negative one is ten bytes, sign-extended. */
static inline void wire_int32(wire_out_t *w, unsigned field, int32_t v)
{
    wire_uint(w, field, (uint64_t)(int64_t)v);
}

static inline void wire_len(wire_out_t *w, unsigned field, const void *v, size_t n)
{
    uint8_t b[11];
    b[0] = (uint8_t)(field << 3 | 2);
    wire_raw(w, b, 1 + wire_varint_put(b + 1, n));
    wire_raw(w, v, n);
}

static inline void wire_str(wire_out_t *w, unsigned field, const char *s)
{
    if (s != NULL && s[0] != '\0') wire_len(w, field, s, strlen(s));
}

#define WIRE_USER_MAX 2048 /* the User of an answer: five strings cut to the store's sizes */

static size_t wire_pack_user(const Pat__V1__User *u, uint8_t *out, size_t cap)
{
    wire_out_t w = {.p = out, .cap = cap};
    wire_str(&w, 1, u->user_id);
    wire_str(&w, 2, u->user_name);
    wire_str(&w, 3, u->email);
    wire_str(&w, 4, u->name);
    wire_int32(&w, 5, u->role);
    wire_int32(&w, 6, u->user_type);
    wire_uint(&w, 7, u->active ? 1 : 0);
    wire_uint(&w, 8, (uint64_t)u->created);
    wire_str(&w, 9, u->created_by);
    return w.over ? (size_t)-1 : w.len;
}

/* A User field: the bytes of ub when u is the User they were packed from. */
static void wire_user(wire_out_t *w, unsigned field, const Pat__V1__User *u,
                      const Pat__V1__User *ub_of, const uint8_t *ub, size_t ub_len)
{
    if (u == NULL) return;
    if (u == ub_of) {
        wire_len(w, field, ub, ub_len);
        return;
    }
    uint8_t b[WIRE_USER_MAX];
    size_t n = wire_pack_user(u, b, sizeof(b));
    if (n == (size_t)-1)
        w->over = 1;
    else
        wire_len(w, field, b, n);
}

static size_t wire_pack_verify_response(const Pat__V1__VerifyResponse *r, uint8_t *out, size_t cap)
{
    if (r->base.n_unknown_fields || (r->token && r->token->base.n_unknown_fields)) return 0;
    uint8_t ub[WIRE_USER_MAX];
    size_t ub_len = 0;
    const Pat__V1__User *u = r->user ? r->user : r->token ? r->token->user : NULL;
    if (u != NULL) {
        if (u->base.n_unknown_fields) return 0;
        if ((ub_len = wire_pack_user(u, ub, sizeof(ub))) == (size_t)-1) return 0;
    }
    wire_out_t w = {.p = out, .cap = cap};
    wire_user(&w, 1, r->user, u, ub, ub_len);
    if (r->token != NULL) {
        const Pat__V1__TokenInfo *t = r->token;
        uint8_t tb[WIRE_USER_MAX + 512];
        wire_out_t tw = {.p = tb, .cap = sizeof(tb)};
        wire_uint(&tw, 1, t->id);
        wire_str(&tw, 2, t->name);
        wire_uint(&tw, 3, (uint64_t)t->created);
        wire_uint(&tw, 4, (uint64_t)t->expiration);
        wire_uint(&tw, 5, (uint64_t)t->last_used);
        wire_uint(&tw, 6, t->active ? 1 : 0);
        wire_int32(&tw, 7, t->status);
        wire_int32(&tw, 8, t->kind);
        wire_uint(&tw, 9, t->scim_endpoints_only ? 1 : 0);
        wire_user(&tw, 10, t->user, u, ub, ub_len);
        wire_str(&tw, 11, t->created_by);
        if (tw.over) return 0;
        wire_len(&w, 2, tb, tw.len);
    }
    return w.over ? 0 : w.len;
}

size_t wire_pack_answer(const ProtobufCMessage *msg, uint8_t *out, size_t cap)
{
    if (msg->descriptor == &pat__v1__verify_response__descriptor)
        return wire_pack_verify_response((const Pat__V1__VerifyResponse *)msg, out, cap);
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
