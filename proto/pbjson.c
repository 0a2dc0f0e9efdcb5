/* pbjson: messages to and from JSON through their descriptors (the form
 * is described in pbjson.h). */
#include "pbjson.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* jansson copies every string it is given, a new token's secret among
 * them, and frees the copies without clearing them. Its allocator is
 * process-wide; this one wipes each block before freeing it, so no
 * secret stays in freed heap. Set before main, so no jansson call can run
 * with the other. */
static void pbjson_free(void *p)
{
    if (p == NULL) return;
    explicit_bzero(p, malloc_usable_size(p));
    free(p);
}

__attribute__((constructor)) static void pbjson_setup(void)
{
    json_set_alloc_funcs(malloc, pbjson_free);
}

/* The int64 fields that hold Unix milliseconds. A name table rather than
 * an option in the .proto: protobuf-c 1.4 does not expose custom options,
 * and these names mean a time wherever they appear in pat.proto. */
static const char *const pbjson_time_fields[] = {"created", "expiration", "last_used",
                                                 "time",    "first_time", "now"};

int pbjson_is_time(const ProtobufCFieldDescriptor *f)
{
    if (f->type != PROTOBUF_C_TYPE_INT64) return 0;
    for (size_t i = 0; i < sizeof(pbjson_time_fields) / sizeof(pbjson_time_fields[0]); i++)
        if (strcmp(f->name, pbjson_time_fields[i]) == 0) return 1;
    return 0;
}

__attribute__((format(printf, 3, 4))) static int pbjson_fail(char *err, size_t errlen,
                                                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---------------------------------------------------------------- times */

void pbjson_time_text(int64_t ms, char out[PBJSON_TIME_LEN + 1])
{
    int64_t s = ms / 1000, r = ms % 1000;
    if (r < 0) s--, r += 1000;
    time_t t = (time_t)s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        snprintf(out, PBJSON_TIME_LEN + 1, "%s", "9999-12-31T23:59:59.999Z");
        return;
    }
    char buf[64]; /* the compiler cannot see that every field has its width */
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)r);
    memcpy(out, buf, PBJSON_TIME_LEN);
    out[PBJSON_TIME_LEN] = '\0';
}

static int pbjson_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p)) return -1;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return 0;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm); the fraction
 * is cut to milliseconds. */
int pbjson_time_parse(const char *s, int64_t *ms)
{
    const char *p = s;
    int y, mo, d, h, mi, se, frac = 0;
    if (pbjson_digits(&p, 4, &y) || *p++ != '-' || pbjson_digits(&p, 2, &mo) || *p++ != '-' ||
        pbjson_digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
        return -1;
    p++;
    if (pbjson_digits(&p, 2, &h) || *p++ != ':' || pbjson_digits(&p, 2, &mi) || *p++ != ':' ||
        pbjson_digits(&p, 2, &se))
        return -1;
    if (*p == '.') {
        p++;
        int n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n < 3) frac = frac * 10 + (*p - '0');
            n++, p++;
        }
        if (n == 0) return -1;
        for (; n < 3; n++)
            frac *= 10;
    }
    int offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (pbjson_digits(&p, 2, &oh) || *p++ != ':' || pbjson_digits(&p, 2, &om) || oh > 23 ||
            om > 59)
            return -1;
        offset = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = se};
    time_t t = timegm(&tm);
    /* timegm normalizes: 31 February comes back as March. */
    if (tm.tm_mday != d || tm.tm_mon != mo - 1) return -1;
    *ms = ((int64_t)t - (int64_t)offset * 60) * 1000 + frac;
    return 0;
}

/* ---------------------------------------------------------------- enums */

/* The value names' common prefix: the enum's name in UPPER_SNAKE and "_"
 * (TokenStatus: "TOKEN_STATUS_"); "" when a value does not start with it. */
static size_t pbjson_enum_prefix(const ProtobufCEnumDescriptor *e, const char *value_name)
{
    char want[128];
    size_t n = 0;
    for (const char *c = e->short_name; *c && n < sizeof(want) - 2; c++) {
        if (isupper((unsigned char)*c) && c != e->short_name) want[n++] = '_';
        want[n++] = (char)toupper((unsigned char)*c);
    }
    want[n++] = '_';
    return strncmp(value_name, want, n) == 0 && value_name[n] ? n : 0;
}

void pbjson_enum_word(const ProtobufCEnumDescriptor *e, int value, char *out, size_t cap)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(e, value);
    if (v == NULL) {
        snprintf(out, cap, "%d", value);
        return;
    }
    const char *w = v->name + pbjson_enum_prefix(e, v->name);
    size_t i = 0;
    for (; w[i] && i + 1 < cap; i++)
        out[i] = (char)tolower((unsigned char)w[i]);
    out[i] = '\0';
}

static int pbjson_enum_value(const ProtobufCEnumDescriptor *e, const char *word, int *out)
{
    char w[128];
    for (unsigned i = 0; i < e->n_values; i++) {
        pbjson_enum_word(e, e->values[i].value, w, sizeof(w));
        if (strcmp(w, word) == 0 && !strstr(e->values[i].name, "UNSPECIFIED")) {
            *out = e->values[i].value;
            return 0;
        }
    }
    return -1;
}

/* "member, manager, admin": the words an enum takes, for an error. */
static void pbjson_enum_words(const ProtobufCEnumDescriptor *e, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < e->n_values && n < cap; i++) {
        if (strstr(e->values[i].name, "UNSPECIFIED")) continue;
        char w[64];
        pbjson_enum_word(e, e->values[i].value, w, sizeof(w));
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", w);
    }
}

/* ---------------------------------------------------------------- encoding */

static size_t pbjson_elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* A C string as a JSON string. Strings reaching here were checked as
 * UTF-8 on the wire; should one not be (a peer that is not patd), its
 * bytes beyond ASCII become '?', so the output stays valid JSON. */
static json_t *pbjson_string(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    char *copy = strdup(s);
    if (copy == NULL) abort();
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80) *c = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

/* One value of f at p; NULL means "leave the key out". */
static json_t *pbjson_value(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: {
        int64_t v = *(const int64_t *)p;
        if (!pbjson_is_time(f)) return json_integer(v);
        if (v == 0) return json_null();
        char t[PBJSON_TIME_LEN + 1];
        pbjson_time_text(v, t);
        return json_string(t);
    }
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t v = *(const uint64_t *)p;
        if (v <= INT64_MAX) return json_integer((json_int_t)v);
        char t[24];
        snprintf(t, sizeof(t), "%" PRIu64, v);
        return json_string(t);
    }
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        if (v == 0) return NULL;
        char w[64];
        pbjson_enum_word(f->descriptor, v, w, sizeof(w));
        return json_string(w);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return pbjson_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES:
        return NULL;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? pbjson_encode(m) : json_null();
    }
    }
    return NULL;
}

json_t *pbjson_encode(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    json_t *o = json_object();
    if (o == NULL) abort();
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        if (f->type == PROTOBUF_C_TYPE_BYTES) continue;
        json_t *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            v = json_array();
            if (v == NULL) abort();
            for (size_t k = 0; k < n; k++) {
                json_t *e = pbjson_value(f, arr + k * pbjson_elem_size(f->type));
                json_array_append_new(v, e ? e : json_null());
            }
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t chosen = *(const uint32_t *)(base + f->quantifier_offset);
            v = chosen == f->id ? pbjson_value(f, base + f->offset) : json_null();
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
                   f->type != PROTOBUF_C_TYPE_STRING &&
                   !*(const protobuf_c_boolean *)(base + f->quantifier_offset)) {
            v = json_null();
        } else {
            v = pbjson_value(f, base + f->offset);
        }
        if (v) json_object_set_new(o, f->name, v);
    }
    return o;
}

char *pbjson_dumps(const ProtobufCMessage *m, int pretty)
{
    json_t *o = pbjson_encode(m);
    char *s = json_dumps(o, pretty ? JSON_INDENT(2) | JSON_PRESERVE_ORDER
                                   : JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s == NULL) abort();
    if (pretty) {
        size_t n = strlen(s);
        char *t = realloc(s, n + 2);
        if (t == NULL) abort();
        t[n] = '\n';
        t[n + 1] = '\0';
        s = t;
    }
    return s;
}

/* ---------------------------------------------------------------- decoding */

static const char *pbjson_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "a value";
}

static int pbjson_decode_msg(const json_t *obj, ProtobufCMessage *out, ProtobufCAllocator *al,
                             const char *const *omit, const char *path, char *err, size_t errlen);

static void *pbjson_alloc(ProtobufCAllocator *al, size_t n)
{
    void *p = al->alloc(al->allocator_data, n ? n : 1);
    if (p == NULL) abort();
    return p;
}

static int pbjson_integer(const json_t *v, const char *name, int64_t min, uint64_t max,
                          uint64_t *out, char *err, size_t errlen)
{
    if (!json_is_integer(v))
        return pbjson_fail(err, errlen, "field '%s' must be an integer, not %s", name,
                           pbjson_kind(v));
    json_int_t i = json_integer_value(v);
    if (i < min || (i >= 0 && (uint64_t)i > max))
        return pbjson_fail(err, errlen, "field '%s': %lld is out of range", name, (long long)i);
    *out = (uint64_t)i;
    return 0;
}

/* Stores one JSON value v into the element at p of field f. */
static int pbjson_element(const json_t *v, const ProtobufCFieldDescriptor *f, void *p,
                          ProtobufCAllocator *al, const char *name, char *err, size_t errlen)
{
    uint64_t u;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (pbjson_integer(v, name, INT32_MIN, INT32_MAX, &u, err, errlen)) return -1;
        *(int32_t *)p = (int32_t)(int64_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (pbjson_integer(v, name, 0, UINT32_MAX, &u, err, errlen)) return -1;
        *(uint32_t *)p = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (pbjson_is_time(f)) {
            int64_t ms;
            if (!json_is_string(v) || pbjson_time_parse(json_string_value(v), &ms) != 0)
                return pbjson_fail(err, errlen,
                                   "field '%s' must be an RFC 3339 time such as "
                                   "\"2026-12-02T09:30:00.000Z\", or null",
                                   name);
            *(int64_t *)p = ms;
            return 0;
        }
        if (pbjson_integer(v, name, INT64_MIN, INT64_MAX, &u, err, errlen)) return -1;
        *(int64_t *)p = (int64_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (pbjson_integer(v, name, 0, UINT64_MAX, &u, err, errlen)) return -1;
        *(uint64_t *)p = u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!json_is_number(v))
            return pbjson_fail(err, errlen, "field '%s' must be a number, not %s", name,
                               pbjson_kind(v));
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)p = (float)json_number_value(v);
        else
            *(double *)p = json_number_value(v);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return pbjson_fail(err, errlen, "field '%s' must be true or false, not %s", name,
                               pbjson_kind(v));
        *(protobuf_c_boolean *)p = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        char words[256];
        int e;
        if (json_is_string(v) && pbjson_enum_value(f->descriptor, json_string_value(v), &e) == 0) {
            *(int *)p = e;
            return 0;
        }
        pbjson_enum_words(f->descriptor, words, sizeof(words));
        if (!json_is_string(v))
            return pbjson_fail(err, errlen, "field '%s' must be one of: %s (not %s)", name, words,
                               pbjson_kind(v));
        return pbjson_fail(err, errlen, "field '%s': '%.64s' is not one of: %s", name,
                           json_string_value(v), words);
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v))
            return pbjson_fail(err, errlen, "field '%s' must be a string, not %s", name,
                               pbjson_kind(v));
        size_t n = json_string_length(v);
        char *s = pbjson_alloc(al, n + 1);
        memcpy(s, json_string_value(v), n + 1);
        *(char **)p = s;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return pbjson_fail(err, errlen, "field '%s' is bytes, which the JSON form does not carry",
                           name);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *d = f->descriptor;
        if (!json_is_object(v))
            return pbjson_fail(err, errlen, "field '%s' must be an object (%s), not %s", name,
                               d->short_name, pbjson_kind(v));
        ProtobufCMessage *m = pbjson_alloc(al, d->sizeof_message);
        d->message_init(m);
        *(ProtobufCMessage **)p = m;
        return pbjson_decode_msg(v, m, al, NULL, name, err, errlen);
    }
    }
    return pbjson_fail(err, errlen, "field '%s' has a type the JSON form does not carry", name);
}

/* "name, expires_in_days, ...": a message's keys, for an error. */
static void pbjson_field_names(const ProtobufCMessageDescriptor *d, const char *const *omit,
                               char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < d->n_fields && n < cap; i++) {
        int skip = d->fields[i].type == PROTOBUF_C_TYPE_BYTES;
        for (const char *const *o = omit; o && *o && !skip; o++)
            skip = strcmp(*o, d->fields[i].name) == 0;
        if (!skip)
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", d->fields[i].name);
    }
}

static int pbjson_decode_field(const json_t *v, const ProtobufCFieldDescriptor *f,
                               ProtobufCMessage *out, ProtobufCAllocator *al, const char *name,
                               char *err, size_t errlen)
{
    char *base = (char *)out;
    if (json_is_null(v)) return 0; /* not set: the default */
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (!json_is_array(v))
            return pbjson_fail(err, errlen, "field '%s' must be an array, not %s", name,
                               pbjson_kind(v));
        size_t n = json_array_size(v), es = pbjson_elem_size(f->type);
        char *arr = pbjson_alloc(al, n * es);
        memset(arr, 0, n * es);
        for (size_t k = 0; k < n; k++) {
            char item[160];
            snprintf(item, sizeof(item), "%s[%zu]", name, k);
            const json_t *e = json_array_get(v, k);
            if (json_is_null(e))
                return pbjson_fail(err, errlen, "field '%s' may not be null", item);
            if (pbjson_element(e, f, arr + k * es, al, item, err, errlen)) return -1;
        }
        *(size_t *)(base + f->quantifier_offset) = n;
        *(char **)(base + f->offset) = arr;
        return 0;
    }
    if (pbjson_element(v, f, base + f->offset, al, name, err, errlen)) return -1;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(base + f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
             f->type != PROTOBUF_C_TYPE_STRING)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
    return 0;
}

static int pbjson_decode_msg(const json_t *obj, ProtobufCMessage *out, ProtobufCAllocator *al,
                             const char *const *omit, const char *path, char *err, size_t errlen)
{
    const ProtobufCMessageDescriptor *d = out->descriptor;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        char name[160];
        snprintf(name, sizeof(name), "%s%s%s", path ? path : "", path ? "." : "", key);
        for (const char *const *o = omit; o && *o; o++)
            if (strcmp(*o, key) == 0)
                return pbjson_fail(err, errlen,
                                   "field '%s' comes from the URL's path, not the body", name);
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
        if (f == NULL || f->type == PROTOBUF_C_TYPE_BYTES) {
            char names[512];
            pbjson_field_names(d, omit, names, sizeof(names));
            return pbjson_fail(err, errlen, "unknown field '%.64s%s%.64s' (%s has: %s)",
                               path ? path : "", path ? "." : "", key, d->short_name, names);
        }
        if (pbjson_decode_field(v, f, out, al, name, err, errlen)) return -1;
    }
    return 0;
}

int pbjson_decode(const json_t *obj, ProtobufCMessage *out, ProtobufCAllocator *al,
                  const char *const *omit, char *err, size_t errlen)
{
    if (!json_is_object(obj))
        return pbjson_fail(err, errlen, "the body must be a JSON object (%s), not %s",
                           out->descriptor->short_name, pbjson_kind(obj));
    return pbjson_decode_msg(obj, out, al, omit, NULL, err, errlen);
}

int pbjson_parse(const char *text, size_t len, ProtobufCMessage *out, ProtobufCAllocator *al,
                 const char *const *omit, char *err, size_t errlen)
{
    json_error_t je;
    json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (obj == NULL)
        return pbjson_fail(err, errlen, "invalid JSON at byte %d: %s", je.position, je.text);
    int rc = pbjson_decode(obj, out, al, omit, err, errlen);
    json_decref(obj);
    return rc;
}

int pbjson_set_text(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const char *text,
                    ProtobufCAllocator *al, char *err, size_t errlen)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED || f->type == PROTOBUF_C_TYPE_MESSAGE ||
        f->type == PROTOBUF_C_TYPE_BYTES)
        return pbjson_fail(err, errlen, "'%s' cannot be given in the URL", f->name);
    json_t *v = NULL;
    if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_ENUM || pbjson_is_time(f)) {
        v = json_string(text);
    } else if (f->type == PROTOBUF_C_TYPE_BOOL) {
        v = strcmp(text, "true") == 0    ? json_true()
            : strcmp(text, "false") == 0 ? json_false()
                                         : NULL;
        if (v == NULL) return pbjson_fail(err, errlen, "'%s' must be true or false", f->name);
    } else if (f->type == PROTOBUF_C_TYPE_FLOAT || f->type == PROTOBUF_C_TYPE_DOUBLE) {
        char *end;
        errno = 0;
        double d = strtod(text, &end);
        if (errno || end == text || *end)
            return pbjson_fail(err, errlen, "'%s' must be a number", f->name);
        v = json_real(d);
    } else {
        /* Digits only, with an optional '-': no blanks, '+', hex or octal. */
        const char *c = text + (text[0] == '-');
        int ok = *c != '\0';
        for (; *c && ok; c++)
            ok = isdigit((unsigned char)*c);
        char *end;
        errno = 0;
        long long i = ok ? strtoll(text, &end, 10) : 0;
        if (!ok || errno)
            return pbjson_fail(err, errlen, "'%s' must be a decimal integer", f->name);
        v = json_integer(i);
    }
    if (v == NULL) return pbjson_fail(err, errlen, "'%s' must be valid UTF-8", f->name);
    int rc = pbjson_decode_field(v, f, m, al, f->name, err, errlen);
    json_decref(v);
    return rc;
}
