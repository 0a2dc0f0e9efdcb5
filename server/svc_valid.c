/* svc_valid: validation of what callers send: text and names, roles,
 * API paths (for SCIM scoping and activity), page sizes and page tokens. */
#include <stdio.h>
#include <string.h>

#include "svc_internal.h"
#include "token.h"
#include "wire.h"

/* Code points refused in names and text fields besides C0 controls and
 * DEL: they let one name pass for another in a list (CVE-2021-42574's
 * bidirectional overrides, zero-width characters) or break its line. */
static int svc_refused_cp(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) /* C0, DEL, C1 */
           || (cp >= 0x200b && cp <= 0x200d)                     /* zero-width */
           || cp == 0xfeff                                       /* BOM / ZWNBSP */
           || cp == 0x2028 || cp == 0x2029                       /* line, paragraph sep. */
           || (cp >= 0x202a && cp <= 0x202e)                     /* bidi embeddings */
           || (cp >= 0x2066 && cp <= 0x2069);                    /* bidi isolates */
}

int svc_valid_text(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    uint32_t cp;
    for (size_t i = 0, n; i < len; i += n)
        if ((n = wire_utf8_next(p + i, len - i, &cp)) == 0 || svc_refused_cp(cp)) return 0;
    return 1;
}

/* Validates a text field: required or not, at most max bytes, UTF-8. */
int svc_check_text(svc_call_t *call, const char *field, const char *v, size_t max, int required)
{
    size_t len = strlen(v);
    if (required && len == 0) {
        svc_fail(call, PAT_E_INVALID_FIELD, "%s is required", field);
        return -1;
    }
    if (len > max) {
        svc_fail(call, PAT_E_INVALID_FIELD, "%s is %zu bytes; at most %zu bytes of UTF-8", field,
                 len, max);
        return -1;
    }
    if (!svc_valid_text(v, len)) {
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "%s must be valid UTF-8 without control, bidirectional or zero-width "
                 "characters",
                 field);
        return -1;
    }
    return 0;
}

int svc_valid_role(int r)
{
    return r >= PAT__V1__ROLE__ROLE_UNSPECIFIED && r <= ROLE_ADMIN;
}

unsigned svc_page_size(uint32_t requested)
{
    if (requested == 0) return SVC_PAGE_DEFAULT;
    return requested > SVC_PAGE_MAX ? SVC_PAGE_MAX : requested;
}

void svc_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---------------------------------------------------------------- page tokens */

_Static_assert(STORE_CURSOR_MAX <= TOKEN_SEAL_MAX, "a cursor fits a seal");
_Static_assert(TOKEN_SEALED_LEN(STORE_CURSOR_MAX) + 1 <= SVC_PAGE_TOKEN_MAX, "page token room");

void svc_page_seal(const svc_t *svc, const char *context, const store_cursor_t *c, char *out)
{
    out[0] = '\0';
    if (c->len && token_seal(svc->page_key, context, c->bytes, c->len, out) == 0)
        out[0] = '\0'; /* no random IV: the list ends here rather than leak */
}

int svc_page_open(svc_call_t *call, const char *context, const char *token, store_cursor_t *c)
{
    c->len = 0;
    if (token[0] == '\0') return 0;
    long n = token_open(call->svc->page_key, context, token, c->bytes, sizeof(c->bytes));
    if (n <= 0) {
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "page_token is not one this store's patd returned for this list");
        return -1;
    }
    c->len = (uint16_t)n;
    return 0;
}

/* ---------------------------------------------------------------- paths */

static int svc_hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* 1 for the bytes a path may hold that mean nothing to normalization:
 * printable ASCII but '%' (escapes), '\\', ';' (parameters), '?' and '#'
 * (the end), '/' and '.' (looked at by the caller). */
static int svc_path_plain(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '%' && c != '\\' && c != ';' && c != '?' && c != '#' &&
           c != '/' && c != '.';
}

/* A path that is its own normal form: "/a/b.c", no empty, dot or
 * parameter segment, no escape, no trailing '/', nothing past ASCII. Most
 * paths a gateway sends are: the general loop below costs five times as
 * much. Returns its length, or 0 to take that loop. */
static size_t svc_path_normal(const char *in, size_t out_cap)
{
    size_t i = 0;
    for (;;) {
        if (in[i] != '/') return 0;
        size_t start = ++i;
        if (in[i] == '.') return 0; /* ".", "..", ".x": the loop decides */
        while (svc_path_plain((unsigned char)in[i]) || (in[i] == '.' && i > start))
            i++;
        if (i == start) return 0; /* "//" or a trailing '/' */
        if (in[i] == '\0') return i < out_cap ? i : 0;
    }
}

int svc_normalize_path(const char *in, char *out, size_t out_cap)
{
    size_t n = out_cap < 2 ? 0 : svc_path_normal(in, out_cap);
    if (n != 0) {
        memcpy(out, in, n + 1);
        return 0;
    }
    return svc_normalize_path_general(in, out, out_cap);
}

int svc_normalize_path_general(const char *in, char *out, size_t out_cap)
{
    if (in[0] != '/' || out_cap < 2) return -1;
    size_t o = 0;
    size_t seg_starts[SVC_PATH_MAX / 2 + 1];
    size_t depth = 0;
    const char *p = in;
    while (*p && *p != '?' && *p != '#') {
        while (*p == '/')
            p++;
        if (!*p || *p == '?' || *p == '#') break;
        /* One segment. %2e is '.'; an encoded separator, NUL or '%', a %u
         * escape, a malformed escape and a control byte are refused; what
         * the escapes decode to must be valid UTF-8 (no overlong "%c0%ae"
         * that another decoder reads as "."). Other escapes stay as text. */
        char seg[SVC_PATH_MAX + 1];
        uint8_t dec[SVC_PATH_MAX + 1];
        size_t sl = 0, dl = 0;
        while (*p && *p != '/' && *p != '?' && *p != '#') {
            char c = *p;
            unsigned char uc = (unsigned char)c;
            if (c == '\\' || uc < 0x20 || uc == 0x7f) return -1;
            if (sl >= SVC_PATH_MAX) return -1;
            if (c == '%') {
                int hi = svc_hex_digit(p[1]), lo = hi < 0 ? -1 : svc_hex_digit(p[2]);
                if (hi < 0 || lo < 0) return -1; /* "%u002e", "%zz", a lone '%' */
                unsigned b = (unsigned)(hi << 4 | lo);
                if (b == '/' || b == '\\' || b == 0 || b == '%') return -1;
                dec[dl++] = (uint8_t)b;
                if (b == '.') {
                    seg[sl++] = '.';
                    p += 3;
                    continue;
                }
            } else {
                dec[dl++] = uc;
            }
            seg[sl++] = c;
            p++;
        }
        if (!wire_utf8_valid(dec, dl)) return -1;
        /* "..;x" is ".." to Tomcat and Jetty: a dot segment with parameters
         * is refused, so no backend can read it as a step up. */
        const char *semi = memchr(seg, ';', sl);
        size_t base = semi ? (size_t)(semi - seg) : sl;
        if (semi && ((base == 1 && seg[0] == '.') || (base == 2 && seg[0] == '.' && seg[1] == '.')))
            return -1;
        if (sl == 1 && seg[0] == '.') continue;
        if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            if (depth == 0) return -1; /* would escape the root */
            o = seg_starts[--depth];
            continue;
        }
        if (o + 1 + sl + 1 > out_cap) return -1;
        seg_starts[depth++] = o;
        out[o++] = '/';
        memcpy(out + o, seg, sl);
        o += sl;
    }
    if (o == 0) out[o++] = '/';
    out[o] = '\0';
    return 0;
}

int svc_path_is_scim(const svc_t *svc, const char *path)
{
    for (int i = 0; i < svc->n_scim_prefixes; i++) {
        const char *pre = svc->scim_prefixes[i];
        size_t n = strlen(pre);
        if (strncmp(path, pre, n) == 0 && (path[n] == '\0' || path[n] == '/')) return 1;
    }
    return 0;
}

int svc_add_scim_prefix(svc_t *svc, const char *prefix)
{
    if (svc->n_scim_prefixes >= SVC_SCIM_PREFIXES) return -1;
    svc->scim_prefixes[svc->n_scim_prefixes++] = prefix;
    return 0;
}
