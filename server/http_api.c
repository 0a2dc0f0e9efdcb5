/* http_api: the platform's REST API under /api/ (docs/http.md,
 * docs/openapi.yaml): one table maps each route to a TokenService method,
 * and the request and the answer cross as that method's messages in their
 * one JSON form (proto/pbjson.h).
 *
 * DESIGN. The loop thread matches the route, decodes the path's
 * parameters, checks the headers and the rate limit, and copies what the
 * call needs (body, query, credential, client address) into one work item;
 * a worker builds the input message (path parameters, the route's fixed
 * fields, the query or the body, in that order, refusing a field given
 * twice), runs disp_call with the same handler as the framed port, and
 * writes the whole HTTP answer, so JSON is never parsed or printed on the
 * loop. The answer keeps its place in the connection's queue. An answer
 * that carries a new token's secret is wiped from every buffer this module
 * owns once it has been copied out (jansson's own frees are wiped by
 * pbjson's allocator). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "http_internal.h"
#include "log.h"
#include "pbjson.h"
#include "wire.h"

/* ---------------------------------------------------------------- the table */

/* Placeholders name the input field they fill, by path when it lies in a
 * submessage ({user.user_id}); documents show the last part ({user_id}).
 * "fixed" sets fields the route implies; "body" names where the JSON body
 * goes: "" the input message itself, a field name a submessage of it, NULL
 * no body (the route takes its fields from the query string). */
static const http_api_route_t http_api_table[] = {
    {"GET", "/api/health", "Health", 200, NULL, NULL, NULL, 0},
    {"GET", "/api/user-tokens", "ListTokens", 200, "kind=personal", NULL, NULL, 0},
    {"POST", "/api/user-tokens", "CreateToken", 201, NULL, "", "/api/user-tokens/{token.id}", 0},
    {"GET", "/api/user-tokens/service", "ListTokens", 200, "kind=service", NULL, NULL, 0},
    {"GET", "/api/user-tokens/self", "GetCurrentToken", 200, NULL, NULL, NULL, 0},
    {"GET", "/api/user-tokens/{id}", "GetToken", 200, NULL, NULL, NULL, 0},
    {"PUT", "/api/user-tokens/{id}", "UpdateToken", 200, NULL, "", NULL, 0},
    {"DELETE", "/api/user-tokens/{id}", "DeleteToken", 204, NULL, NULL, NULL, 0},
    {"GET", "/api/user-tokens/{id}/activity", "ListTokenActivity", 200, NULL, NULL, NULL, 0},
    {"GET", "/api/service-users", "ListServiceUsers", 200, NULL, NULL, NULL, 0},
    {"POST", "/api/service-users", "CreateServiceUser", 201, NULL, "",
     "/api/service-users/{user_id}", 0},
    {"GET", "/api/service-users/{user_id}", "GetUser", 200, "user_type=service", NULL, NULL, 0},
    {"DELETE", "/api/service-users/{user_id}", "DeleteServiceUser", 204, NULL, NULL, NULL, 0},
    {"POST", "/api/service-users/{user_id}/deactivate", "DeactivateUser", 200, "user_type=service",
     "", NULL, 0},
    {"POST", "/api/service-users/{user_id}/activate", "ActivateUser", 200, "user_type=service", "",
     NULL, 0},
    {"GET", "/api/users", "ListUsers", 200, NULL, NULL, NULL, 0},
    {"PUT", "/api/users/{user.user_id}", "UpsertUser", 200, NULL, "user", NULL, 0},
    {"GET", "/api/users/{user_id}", "GetUser", 200, NULL, NULL, NULL, 0},
    {"POST", "/api/users/{user_id}/deactivate", "DeactivateUser", 200, NULL, "", NULL, 0},
    {"POST", "/api/users/{user_id}/activate", "ActivateUser", 200, NULL, "", NULL, 0},
    {"POST", "/api/users/{user_id}/ui-link", "CreateUiLink", 200, NULL, "", NULL, 0},
    {"POST", "/api/credentials/revoke", "RevokeCredentials", 202, NULL, "", NULL,
     HTTP_API_PUBLIC | HTTP_API_RATE_LIMITED},
};

#define HTTP_API_N (sizeof(http_api_table) / sizeof(http_api_table[0]))
_Static_assert(HTTP_API_N <= HTTP_API_ROUTES, "HTTP_API_ROUTES is too small for the table");

const http_api_route_t *http_api_routes(size_t *n)
{
    *n = HTTP_API_N;
    return http_api_table;
}

int http_api_init(http_cfg_t *cfg)
{
    for (size_t i = 0; i < HTTP_API_N; i++) {
        char full[128];
        snprintf(full, sizeof(full), "pat.v1.TokenService/%s", http_api_table[i].rpc);
        if (disp_find(cfg->svc, full, &cfg->api[i]) != 0) return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the rate limit */

/* Leak reports per client address: a token bucket of `per_minute`
 * reports, refilled continuously, in a fixed table (loop thread only). An
 * address that finds its slot taken by another evicts the stalest of the
 * slots it may use, so the table never grows and a flood of addresses
 * only forgets old ones. */
#define HTTP_RATE_SLOTS 4096
#define HTTP_RATE_PROBE 8

typedef struct {
    char ip[INET6_ADDRSTRLEN];
    double tokens;
    int64_t last_ms;
} http_rate_slot_t;

struct http_rate {
    http_rate_slot_t slot[HTTP_RATE_SLOTS];
};

http_rate_t *http_rate_new(void)
{
    http_rate_t *r = calloc(1, sizeof(*r));
    if (r == NULL) abort();
    return r;
}

void http_rate_free(http_rate_t *r)
{
    free(r);
}

/* 1 if ip may make one more report now; 0 with *retry_s if not. */
static int http_rate_take(http_rate_t *r, unsigned per_minute, const char *ip, unsigned *retry_s)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *c = ip; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    if (per_minute == 0) per_minute = 1; /* config.c's bound; a caller that left it unset */
    int64_t now = clock_now_ms();
    http_rate_slot_t *s = NULL, *stalest = NULL;
    for (unsigned i = 0; i < HTTP_RATE_PROBE; i++) {
        http_rate_slot_t *c = &r->slot[(h + i) % HTTP_RATE_SLOTS];
        if (strcmp(c->ip, ip) == 0) {
            s = c;
            break;
        }
        if (stalest == NULL || c->last_ms < stalest->last_ms) stalest = c;
    }
    if (s == NULL) {
        s = stalest;
        snprintf(s->ip, sizeof(s->ip), "%s", ip);
        s->tokens = per_minute;
        s->last_ms = now;
    }
    double rate = per_minute / 60000.0; /* per ms */
    if (now > s->last_ms) s->tokens += (double)(now - s->last_ms) * rate;
    if (s->tokens > per_minute) s->tokens = per_minute;
    s->last_ms = now;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
        return 1;
    }
    *retry_s = (unsigned)((1.0 - s->tokens) / rate / 1000.0) + 1;
    return 0;
}

/* ---------------------------------------------------------------- answers */

/* Ends the headers of a JSON answer and adds text and a newline; for
 * HEAD only the headers, with Content-Length 0. Every JSON answer of the
 * API ends here. */
static void http_api_json_end(http_out_t *o, const http_ctx_t *ctx, const char *text)
{
    size_t n = ctx->head ? 0 : strlen(text) + 1;
    http_puts(o, "Content-Type: application/json\r\nContent-Length: ");
    http_putu(o, n);
    http_puts(o, "\r\n\r\n");
    if (n) {
        http_put_bytes(o, text, n - 1);
        http_puts(o, "\n");
    }
}

/* The AIP-193 error shape: {"error": {code, status, reason, message}}. */
static void http_api_error_json(http_out_t *o, const http_ctx_t *ctx, unsigned http_status,
                                const char *status_word, const char *reason, const char *message)
{
    json_t *e = json_pack("{s:{s:i,s:s,s:s,s:s}}", "error", "code", (int)http_status, "status",
                          status_word, "reason", reason, "message", message);
    if (e == NULL) abort();
    char *text = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(e);
    if (text == NULL) abort();
    http_api_json_end(o, ctx, text);
    free(text);
}

static const char *http_api_status_word(pat_err_t e)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&pat__v1__code__descriptor, (int)pat_err_code(e));
    return v ? v->name : "UNKNOWN";
}

/* An outcome of the error table as a JSON answer, with the headers its
 * status asks for (RFC 6750's challenge on 401, Retry-After on 503). */
void http_api_error(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx, pat_err_t e,
                    const char *message, unsigned retry_s)
{
    unsigned status = pat_err_http(e);
    http_begin(o, ctx, status, pat_err_reason(e));
    if (status == 401) {
        http_puts(o, e == PAT_E_MISSING_CREDENTIAL
                         ? "WWW-Authenticate: Bearer realm=\"patd\"\r\n"
                         : "WWW-Authenticate: Bearer realm=\"patd\", error=\"invalid_token\"\r\n");
    }
    if (retry_s == 0 && (status == 503 || status == 429)) retry_s = HTTP_RETRY_AFTER_S;
    if (retry_s) {
        http_puts(o, "Retry-After: ");
        http_putu(o, retry_s);
        http_puts(o, "\r\n");
    }
    http_api_error_json(o, ctx, status, http_api_status_word(e), pat_err_reason(e), message);
    http_log(cfg, ctx, status, pat_err_reason(e));
}

void http_api_fail_json(http_out_t *o, const http_ctx_t *ctx, unsigned status, const char *reason,
                        const char *message)
{
    http_api_error_json(o, ctx, status, status == 400 ? "INVALID_ARGUMENT" : "RESOURCE_EXHAUSTED",
                        reason, message);
}

/* ---------------------------------------------------------------- matching */

#define HTTP_API_PARAMS 2 /* placeholders in one pattern */

/* One placeholder's text in the path, still percent-encoded. */
typedef struct {
    const char *at;
    size_t len;
} http_api_span_t;

/* Compares the path with a pattern segment by segment. Returns the number
 * of literal segments matched (more is more specific), or -1; params (may
 * be NULL) receives where each placeholder's segment is. */
static int http_api_match(const char *pattern, const char *path, size_t plen,
                          http_api_span_t params[HTTP_API_PARAMS])
{
    const char *p = pattern, *u = path, *end = path + plen;
    int literal = 0, np = 0;
    while (*p && u < end) {
        if (*p != '/' || *u != '/') return -1;
        p++, u++;
        const char *pe = strchr(p, '/'), *ue = memchr(u, '/', (size_t)(end - u));
        if (pe == NULL) pe = p + strlen(p);
        if (ue == NULL) ue = end;
        if (*p == '{') {
            if (ue == u) return -1; /* an empty parameter */
            if (params && np < HTTP_API_PARAMS)
                params[np++] = (http_api_span_t){u, (size_t)(ue - u)};
        } else {
            if ((size_t)(pe - p) != (size_t)(ue - u) || memcmp(p, u, (size_t)(pe - p)) != 0)
                return -1;
            literal++;
        }
        p = pe, u = ue;
    }
    return *p == '\0' && u == end ? literal : -1;
}

static int http_hex(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes len bytes into out (NUL-terminated); plus: '+' is a
 * blank (query strings). -1 for a bad escape, a NUL or invalid UTF-8. */
static int http_api_unescape(const char *s, size_t len, int plus, char *out, size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= len || http_hex(s[i + 1]) < 0 || http_hex(s[i + 2]) < 0) return -1;
            c = http_hex(s[i + 1]) * 16 + http_hex(s[i + 2]);
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        if (c == 0) return -1;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    *out_len = n;
    return wire_utf8_valid((const uint8_t *)out, n) ? 0 : -1;
}

/* ---------------------------------------------------------------- the work */

typedef struct {
    conn_work_t work;
    http_slot_t *slot;
    const http_cfg_t *cfg;
    const http_api_route_t *route;
    const disp_method_t *m;
    http_ctx_t ctx;
    const char *param[HTTP_API_PARAMS];
    const char *query; /* raw, undecoded; NULL for none */
    const char *body;
    size_t body_len;
    disp_meta_t meta;
    uint8_t *out;
    size_t out_len, out_cap;
    char data[]; /* everything the pointers above point to */
} http_awork_t;

/* The names a request may not set itself: path parameters and fixed
 * fields, relative to where the body goes. */
static void http_api_omit(const http_api_route_t *r, const char *prefix, const char **omit,
                          char names[][64], size_t cap)
{
    size_t n = 0, pl = strlen(prefix);
    for (const char *p = strchr(r->pattern, '{'); p && n + 1 < cap; p = strchr(p + 1, '{')) {
        const char *e = strchr(p, '}');
        size_t len = (size_t)(e - p - 1);
        if (pl && (len <= pl + 1 || strncmp(p + 1, prefix, pl) != 0 || p[1 + pl] != '.')) continue;
        if (!pl && memchr(p + 1, '.', len)) continue;
        size_t skip = pl ? pl + 1 : 0;
        snprintf(names[n], 64, "%.*s", (int)(len - skip), p + 1 + skip);
        omit[n] = names[n];
        n++;
    }
    for (const char *f = r->fixed; f && *f && !pl && n + 1 < cap;) {
        const char *eq = strchr(f, '=');
        snprintf(names[n], 64, "%.*s", (int)(eq - f), f);
        omit[n] = names[n];
        n++;
        f = strchr(eq, ',');
        f = f ? f + 1 : NULL;
    }
    omit[n] = NULL;
}

/* The field at a dotted path of m, making submessages on the way. */
static const ProtobufCFieldDescriptor *http_api_field(ProtobufCMessage **m, const char *path,
                                                      size_t len, ProtobufCAllocator *al)
{
    for (;;) {
        const char *dot = memchr(path, '.', len);
        char name[64];
        size_t nl = dot ? (size_t)(dot - path) : len;
        snprintf(name, sizeof(name), "%.*s", (int)nl, path);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name((*m)->descriptor, name);
        if (f == NULL || dot == NULL) return f;
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) return NULL;
        ProtobufCMessage **sub = (ProtobufCMessage **)((char *)*m + f->offset);
        if (*sub == NULL) {
            const ProtobufCMessageDescriptor *d = f->descriptor;
            *sub = al->alloc(al->allocator_data, d->sizeof_message);
            if (*sub == NULL) abort();
            d->message_init(*sub);
        }
        *m = *sub;
        len -= nl + 1;
        path = dot + 1;
    }
}

/* Builds the input message; 0, or -1 with a sentence in err. */
static int http_api_input(http_awork_t *w, ProtobufCMessage *in, ProtobufCAllocator *al, char *err,
                          size_t errlen)
{
    const http_api_route_t *r = w->route;
    /* The body first, then what the path says, so the path always wins
     * (and a body that tries to set it was refused already). */
    if (r->body) {
        ProtobufCMessage *target = in;
        if (r->body[0]) {
            /* The body is a submessage (UpsertUser's user). */
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field_by_name(in->descriptor, r->body);
            const ProtobufCMessageDescriptor *sd = f->descriptor;
            target = al->alloc(al->allocator_data, sd->sizeof_message);
            if (target == NULL) abort();
            sd->message_init(target);
            *(ProtobufCMessage **)((char *)in + f->offset) = target;
        }
        const char *omit[8];
        char names[8][64];
        http_api_omit(r, r->body, omit, names, 8);
        if (w->body_len && pbjson_parse(w->body, w->body_len, target, al, omit, err, errlen) != 0)
            return -1;
    }
    if (w->query) {
        const char *omit[8];
        char names[8][64];
        http_api_omit(r, "", omit, names, 8);
        const char *q = w->query;
        char seen[8][64];
        int n_seen = 0;
        while (*q) {
            const char *amp = strchr(q, '&');
            size_t len = amp ? (size_t)(amp - q) : strlen(q);
            const char *eq = memchr(q, '=', len);
            size_t kl = eq ? (size_t)(eq - q) : len;
            char key[64], val[HTTP_QUERY_VALUE_MAX + 1];
            size_t n;
            if (kl == 0 && len == 0) goto next; /* "a=1&&b=2" */
            if (kl >= sizeof(key) || http_api_unescape(q, kl, 1, key, &n) != 0) {
                snprintf(err, errlen, "a query parameter's name is not valid");
                return -1;
            }
            size_t vl = eq ? len - kl - 1 : 0;
            if (vl > HTTP_QUERY_VALUE_MAX ||
                http_api_unescape(eq ? eq + 1 : "", vl, 1, val, &n) != 0) {
                snprintf(err, errlen, "query parameter '%s': the value is not valid", key);
                return -1;
            }
            for (const char *const *o = omit; *o; o++)
                if (strcmp(*o, key) == 0) {
                    snprintf(err, errlen, "query parameter '%s' comes from the URL's path", key);
                    return -1;
                }
            for (int i = 0; i < n_seen; i++)
                if (strcmp(seen[i], key) == 0) {
                    snprintf(err, errlen, "query parameter '%s' is given twice", key);
                    return -1;
                }
            const ProtobufCFieldDescriptor *f =
                protobuf_c_message_descriptor_get_field_by_name(in->descriptor, key);
            if (f == NULL) {
                snprintf(err, errlen, "unknown query parameter '%.64s'", key);
                return -1;
            }
            if (n_seen == 8) {
                snprintf(err, errlen, "too many query parameters");
                return -1;
            }
            snprintf(seen[n_seen++], 64, "%s", key);
            if (pbjson_set_text(in, f, val, al, err, errlen) != 0) return -1;
        next:
            q += len + (amp != NULL);
        }
    }
    /* Path parameters and fixed fields. */
    int k = 0;
    for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{'), k++) {
        const char *e = strchr(p, '}');
        ProtobufCMessage *target = in;
        const ProtobufCFieldDescriptor *f = http_api_field(&target, p + 1, (size_t)(e - p - 1), al);
        if (pbjson_set_text(target, f, w->param[k], al, err, errlen) != 0) return -1;
    }
    for (const char *f = r->fixed; f && *f;) {
        const char *eq = strchr(f, '='), *comma = strchr(eq, ',');
        char name[64], val[64];
        snprintf(name, sizeof(name), "%.*s", (int)(eq - f), f);
        snprintf(val, sizeof(val), "%.*s", (int)(comma ? comma - eq - 1 : (long)strlen(eq + 1)),
                 eq + 1);
        const ProtobufCFieldDescriptor *fd =
            protobuf_c_message_descriptor_get_field_by_name(in->descriptor, name);
        if (fd == NULL || pbjson_set_text(in, fd, val, al, err, errlen) != 0)
            abort(); /* the table */
        f = comma ? comma + 1 : NULL;
    }
    return 0;
}

/* Location of a created resource: the route's pattern filled from the
 * answer (a string percent-encoded outside RFC 3986's unreserved set). */
static void http_api_location(http_out_t *o, const char *pattern, const ProtobufCMessage *m)
{
    http_puts(o, "Location: ");
    for (const char *p = pattern; *p;) {
        if (*p != '{') {
            http_put_bytes(o, p++, 1);
            continue;
        }
        const char *e = strchr(p, '}');
        const ProtobufCMessage *cur = m;
        const ProtobufCFieldDescriptor *f = NULL;
        const char *s = p + 1;
        while (cur && s < e) {
            const char *dot = memchr(s, '.', (size_t)(e - s));
            const char *end = dot ? dot : e;
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(end - s), s);
            f = protobuf_c_message_descriptor_get_field_by_name(cur->descriptor, name);
            if (f == NULL) abort(); /* the table names a field the answer lacks */
            if (dot) cur = *(ProtobufCMessage *const *)((const char *)cur + f->offset);
            s = end + 1;
        }
        if (cur && f && f->type == PROTOBUF_C_TYPE_UINT64) {
            http_putu(o, *(const uint64_t *)((const char *)cur + f->offset));
        } else if (cur && f && f->type == PROTOBUF_C_TYPE_STRING) {
            static const char hex[] = "0123456789ABCDEF";
            for (const unsigned char *c = *(unsigned char *const *)((const char *)cur + f->offset);
                 *c; c++) {
                if (isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '~') {
                    http_put_bytes(o, c, 1);
                } else {
                    char esc[3] = {'%', hex[*c >> 4], hex[*c & 15]};
                    http_put_bytes(o, esc, 3);
                }
            }
        }
        p = e + 1;
    }
    http_puts(o, "\r\n");
}

typedef struct {
    http_awork_t *w;
    http_out_t o;
    int emitted;
} http_aemit_t;

/* The method's answer as the whole HTTP answer, while it is alive. */
static void http_api_emit(void *arg, const ProtobufCMessage *answer)
{
    http_aemit_t *e = arg;
    const http_api_route_t *r = e->w->route;
    const http_ctx_t *ctx = &e->w->ctx;
    http_begin(&e->o, ctx, r->status, "ok");
    if (r->location) http_api_location(&e->o, r->location, answer);
    if (r->status == 204) {
        http_puts(&e->o, "\r\n");
    } else {
        char *text = pbjson_dumps(answer, 0);
        http_api_json_end(&e->o, ctx, text);
        explicit_bzero(text, strlen(text)); /* a CreateToken answer holds the secret */
        free(text);
    }
    http_log(e->w->cfg, ctx, r->status, "");
    e->emitted = 1;
}

static void http_awork_run(conn_work_t *cw)
{
    http_awork_t *w = (http_awork_t *)cw;
    http_out_t o = {&w->out, &w->out_len, &w->out_cap};
    disp_arena_t *arena = disp_arena_new();
    ProtobufCAllocator *al = disp_arena_allocator(arena);
    const ProtobufCMessageDescriptor *d = w->m->desc->input;
    ProtobufCMessage *in = disp_arena_alloc(arena, d->sizeof_message);
    d->message_init(in);
    char err[PBJSON_ERR_MAX];
    if (http_api_input(w, in, al, err, sizeof(err)) != 0) {
        http_api_error(&o, w->cfg, &w->ctx,
                       strncmp(err, "invalid JSON", 12) == 0 ? PAT_E_BAD_REQUEST
                                                             : PAT_E_INVALID_FIELD,
                       err, 0);
    } else {
        http_aemit_t e = {.w = w, .o = o};
        disp_outcome_t out;
        disp_call(w->cfg->svc, w->m, &w->meta, in, http_api_emit, &e, &out);
        if (out.err != PAT_E_OK || !e.emitted)
            http_api_error(&o, w->cfg, &w->ctx, out.err == PAT_E_OK ? PAT_E_INTERNAL : out.err,
                           out.message, 0);
    }
    /* The request's copy of the body (a CreateToken's name, a leak
     * report's tokens) goes with the arena; wipe what may be secret. */
    if (w->body_len) explicit_bzero((char *)w->body, w->body_len);
    disp_arena_free(arena);
}

static void http_awork_done(conn_work_t *cw, int alive)
{
    http_awork_t *w = (http_awork_t *)cw;
    http_conn_t *hc = conn_protocol_state(cw->conn);
    (void)alive;
    w->slot->data = w->out;
    w->slot->len = w->out_len;
    w->slot->close_after = w->ctx.close;
    w->slot->ready = 1;
    free(w);
    http_flush(hc);
}

/* ---------------------------------------------------------------- the route */

static void http_api_refuse(http_conn_t *hc, http_ctx_t *ctx, pat_err_t e, const char *message,
                            unsigned retry_s)
{
    http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
    http_api_error(&o, hc->cfg, ctx, e, message, retry_s);
    http_answer(hc, ctx);
}

static int http_api_is_json(const char *v, size_t len)
{
    static const char want[] = "application/json";
    size_t wl = sizeof(want) - 1;
    while (len && (*v == ' ' || *v == '\t'))
        v++, len--;
    if (len < wl || strncasecmp(v, want, wl) != 0) return 0;
    v += wl, len -= wl;
    while (len && (*v == ' ' || *v == '\t'))
        v++, len--;
    return len == 0 || *v == ';';
}

void http_route_api(http_conn_t *hc, http_ctx_t *ctx, const char *url, size_t plen)
{
    const http_cfg_t *cfg = hc->cfg;
    const char *verb = llhttp_method_name((llhttp_method_t)hc->parser.method);
    if (hc->parser.method == HTTP_HEAD) verb = "GET";
    /* The most specific pattern that matches, then the verb among those. */
    int best = -1;
    const http_api_route_t *r = NULL;
    size_t ri = 0;
    for (size_t i = 0; i < HTTP_API_N; i++) {
        int s = http_api_match(http_api_table[i].pattern, url, plen, NULL);
        if (s > best) best = s, r = NULL;
        if (s == best && s >= 0 && strcmp(http_api_table[i].verb, verb) == 0)
            r = &http_api_table[i], ri = i;
    }
    if (best < 0) {
        ctx->route = "/api/unknown";
        http_api_refuse(hc, ctx, PAT_E_NO_ROUTE, "no such route: see docs/http.md", 0);
        return;
    }
    if (r == NULL) {
        char allow[96] = "", msg[160];
        size_t n = 0;
        for (size_t i = 0; i < HTTP_API_N; i++)
            if (http_api_match(http_api_table[i].pattern, url, plen, NULL) == best)
                n += (size_t)snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "",
                                      http_api_table[i].verb);
        ctx->route = "/api/method_not_allowed";
        snprintf(msg, sizeof(msg), "this route takes %s", allow);
        http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
        http_begin(&o, ctx, 405, "method_not_allowed");
        http_puts(&o, "Allow: ");
        http_puts(&o, allow);
        http_puts(&o, "\r\n");
        http_api_error_json(&o, ctx, 405, "UNIMPLEMENTED", "method_not_allowed", msg);
        http_log(cfg, ctx, 405, "method_not_allowed");
        http_answer(hc, ctx);
        return;
    }
    ctx->route = r->pattern;
    if (conn_draining(hc->conn)) {
        http_api_refuse(hc, ctx, PAT_E_SHUTTING_DOWN,
                        "server is shutting down; retry on another instance", 0);
        return;
    }
    /* The headers that become the call's metadata, each at most once. */
    size_t alen = 0, xlen = 0, tlen = 0;
    unsigned n_auth = 0, n_act = 0, n_type = 0;
    const char *auth = http_header(hc, "authorization", &alen, &n_auth);
    const char *act = http_header(hc, "x-act-as-user", &xlen, &n_act);
    const char *type = http_header(hc, "content-type", &tlen, &n_type);
    if (n_auth > 1 || n_act > 1 || n_type > 1) {
        http_api_refuse(hc, ctx, PAT_E_BAD_REQUEST,
                        n_auth > 1  ? "more than one Authorization header"
                        : n_act > 1 ? "more than one X-Act-As-User header"
                                    : "more than one Content-Type header",
                        0);
        return;
    }
    /* No Authorization: the Access Tokens page's user, if signed in; what
     * it changes needs the CSRF token too (a cookie or the proxy's header
     * comes with every request, a forged one included). A public route
     * needs no credential, so a cookie means nothing there. */
    char ui_user[SVC_USER_ID_MAX + 1] = "", csrf[SVC_UI_SECRET_LEN + 1];
    const char *via;
    if (auth == NULL && !(r->flags & HTTP_API_PUBLIC) && http_ui_user(hc, ui_user, csrf, &via)) {
        int safe = hc->parser.method == HTTP_GET || hc->parser.method == HTTP_HEAD;
        int ok = safe || http_ui_csrf_ok(hc, csrf);
        explicit_bzero(csrf, sizeof(csrf));
        if (!ok) {
            http_api_refuse(hc, ctx, PAT_E_CSRF,
                            "a change from the page needs its X-CSRF-Token (GET /ui/session)", 0);
            return;
        }
    }
    if ((auth && !wire_utf8_valid((const uint8_t *)auth, alen)) ||
        (act && !wire_utf8_valid((const uint8_t *)act, xlen))) {
        http_api_refuse(hc, ctx, PAT_E_INVALID_FIELD,
                        "Authorization and X-Act-As-User must be valid UTF-8", 0);
        return;
    }
    if (hc->body_len && r->body == NULL) {
        http_api_refuse(hc, ctx, PAT_E_BAD_REQUEST,
                        "this route takes no body: its fields go in the query string", 0);
        return;
    }
    if (hc->body_len && (type == NULL || !http_api_is_json(type, tlen))) {
        http_api_refuse(hc, ctx, PAT_E_UNSUPPORTED_MEDIA_TYPE,
                        "the body must be JSON: send Content-Type: application/json", 0);
        return;
    }
    const char *query = plen < hc->url_len ? hc->hb + plen + 1 : NULL;
    size_t qlen = query ? hc->url_len - plen - 1 : 0;
    if (query && r->body) {
        http_api_refuse(hc, ctx, PAT_E_BAD_REQUEST,
                        "this route takes its fields in the JSON body, not the query string", 0);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    http_client_ip(hc, ip, sizeof(ip));
    if (r->flags & HTTP_API_RATE_LIMITED) {
        unsigned retry = 0;
        if (!http_rate_take(cfg->rate, cfg->revoke_per_minute, ip, &retry)) {
            http_api_refuse(hc, ctx, PAT_E_RATE_LIMITED,
                            "too many reports from this address; retry later", retry);
            return;
        }
    }
    /* The path's parameters, where the chosen route's pattern puts them. */
    http_api_span_t pv[HTTP_API_PARAMS];
    int np = 0;
    for (const char *b = strchr(r->pattern, '{'); b; b = strchr(b + 1, '{'))
        np++;
    http_api_match(r->pattern, url, plen, pv);
    size_t ul = strlen(ui_user);
    size_t need = hc->body_len + 1 + qlen + 1 + alen + 1 + xlen + 1 + sizeof(ip) + ul + 1;
    for (int i = 0; i < np; i++)
        need += pv[i].len + 1;
    http_awork_t *w = calloc(1, sizeof(*w) + need);
    if (w == NULL) abort();
    char *d = w->data;
    for (int i = 0; i < np; i++) {
        size_t n;
        if (http_api_unescape(pv[i].at, pv[i].len, 0, d, &n) != 0) {
            free(w);
            http_api_refuse(hc, ctx, PAT_E_INVALID_FIELD,
                            "a path parameter has a bad %-escape, a NUL or invalid UTF-8", 0);
            return;
        }
        w->param[i] = d;
        d += n + 1;
    }
    w->body = d;
    w->body_len = hc->body_len;
    if (hc->body_len) memcpy(d, hc->body, hc->body_len);
    d += hc->body_len + 1;
    if (query) {
        w->query = d;
        memcpy(d, query, qlen);
        d += qlen + 1;
    }
    if (auth) {
        w->meta.authorization = d;
        memcpy(d, auth, alen);
        d += alen + 1;
    }
    if (act) {
        w->meta.act_as = d;
        memcpy(d, act, xlen);
        d += xlen + 1;
    }
    if (ul) {
        w->meta.trusted_user = d;
        memcpy(d, ui_user, ul + 1);
        d += ul + 1;
    }
    w->meta.client_ip = d;
    memcpy(d, ip, strlen(ip) + 1);
    w->meta.peer_verified = conn_peer_verified(hc->conn);
    w->cfg = cfg;
    w->route = r;
    w->m = &cfg->api[ri];
    w->ctx = *ctx;
    w->work.run = http_awork_run;
    w->work.done = http_awork_done;
    w->slot = http_slot_new(hc);
    if (hc->body_len) explicit_bzero(hc->body, hc->body_len);
    if (conn_submit(hc->conn, &w->work) != 0) {
        http_slot_t *s = w->slot;
        explicit_bzero(w->data, need);
        free(w);
        http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
        http_api_error(&o, cfg, ctx, PAT_E_OVERLOADED, "server is overloaded; retry with backoff",
                       0);
        http_slot_fill(hc, s, ctx);
        http_flush(hc);
    }
}
