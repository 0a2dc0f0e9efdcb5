/* http_verify: GET /v1/verify, the gateway's question on every request
 * (nginx auth_request, Envoy ext_authz, Traefik forwardAuth, Caddy
 * forward_auth): answered with headers only, inline from memory when it
 * can be and on a worker when storage must be read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "http_internal.h"
#include "log.h"
#include "metrics.h"
#include "token.h"
#include "wire.h"

/* ---------------------------------------------------------------- verify */

static const char *http_role_word(int role)
{
    switch (role) {
    case PAT__V1__ROLE__ROLE_ADMIN:
        return "admin";
    case PAT__V1__ROLE__ROLE_MANAGER:
        return "manager";
    default:
        return "member";
    }
}

/* The identity headers are written through a cursor into room reserved
 * once (HTTP_VERIFY_FIXED plus the user id at 3 bytes a byte): through
 * http_put_*'s three indirections they were 900 instructions a Verify. */
#define HTTP_VERIFY_FIXED 512 /* the header names, words, numbers and date */

static char *http_cpy(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define HTTP_LIT(p, s) http_cpy((p), (s), sizeof(s) - 1)

/* A header value: printable ASCII but '%' as is, the rest percent-encoded
 * (RFC 3986), so any user id crosses a header intact. */
static char *http_put_pct(char *p, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '%') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    return p;
}

static char *http_put_time(char *p, int64_t ms)
{
    clock_utc_t t;
    clock_utc(ms, &t);
    p = http_fmt_digits(p, (unsigned)t.year, 4);
    *p++ = '-';
    p = http_fmt_digits(p, t.month, 2);
    *p++ = '-';
    p = http_fmt_digits(p, t.day, 2);
    *p++ = 'T';
    p = http_fmt_digits(p, t.hour, 2);
    *p++ = ':';
    p = http_fmt_digits(p, t.min, 2);
    *p++ = ':';
    p = http_fmt_digits(p, t.sec, 2);
    *p++ = '.';
    p = http_fmt_digits(p, t.ms, 3);
    *p++ = 'Z';
    return p;
}

typedef struct {
    http_out_t o;
    const http_cfg_t *cfg;
    const http_ctx_t *ctx;
    int emitted;
} http_vemit_t;

/* The end of a 200 answer, after its identity headers. */
static void http_verify_close(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx)
{
    http_end(o, ctx, "text/plain; charset=utf-8", "ok\n", 3);
    http_log(cfg, ctx, 200, "");
}

/* The 200 answer, with the identity in headers; every header, always. The
 * headers are the same until the token or its user changes: kept for the
 * token's next Verifies if this one may be (service.h). */
static void http_verify_emit(void *arg, const ProtobufCMessage *answer)
{
    http_vemit_t *e = arg;
    const Pat__V1__VerifyResponse *r = (const Pat__V1__VerifyResponse *)answer;
    const Pat__V1__User *u = r->user;
    const Pat__V1__TokenInfo *t = r->token;
    http_out_t *o = &e->o;
    http_begin(o, e->ctx, 200, "ok");
    size_t uid = strlen(u->user_id);
    http_out_ready(o, HTTP_VERIFY_FIXED + 3 * uid);
    char *start = (char *)*o->buf + *o->len, *p = start;
    p = HTTP_LIT(p, "X-Patd-User-Id: ");
    p = http_put_pct(p, u->user_id, uid);
    p = HTTP_LIT(p, "\r\nX-Patd-User-Role: ");
    const char *role = http_role_word(u->role);
    p = http_cpy(p, role, strlen(role));
    p = u->user_type == PAT__V1__USER_TYPE__USER_TYPE_SERVICE
            ? HTTP_LIT(p, "\r\nX-Patd-User-Type: service\r\nX-Patd-Token-Id: ")
            : HTTP_LIT(p, "\r\nX-Patd-User-Type: human\r\nX-Patd-Token-Id: ");
    p = http_fmt_u64(p, t->id);
    p = t->kind == PAT__V1__TOKEN_KIND__TOKEN_KIND_SERVICE
            ? HTTP_LIT(p, "\r\nX-Patd-Token-Kind: service\r\nX-Patd-Token-Scim: ")
            : HTTP_LIT(p, "\r\nX-Patd-Token-Kind: personal\r\nX-Patd-Token-Scim: ");
    p = t->scim_endpoints_only ? HTTP_LIT(p, "true\r\nX-Patd-Token-Expires: ")
                               : HTTP_LIT(p, "false\r\nX-Patd-Token-Expires: ");
    p = t->expiration == 0 ? HTTP_LIT(p, "never") : http_put_time(p, t->expiration);
    p = HTTP_LIT(p, "\r\n");
    *o->len += (size_t)(p - start);
    svc_prepare(SVC_FORM_HTTP, start, (size_t)(p - start), SIZE_MAX);
    http_verify_close(o, e->cfg, e->ctx);
    e->emitted = 1;
}

/* A refusal, with the challenge RFC 6750 asks for. */
static void http_verify_refuse(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx,
                               pat_err_t e, const char *message)
{
    unsigned status = pat_err_http(e);
    if (status != 401 && status != 403) {
        http_error(o, cfg, ctx, e, message);
        return;
    }
    char desc[SVC_MESSAGE_MAX];
    size_t n = 0;
    for (const char *p = message; *p && n < sizeof(desc) - 1; p++)
        desc[n++] = (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') ? *p : ' ';
    desc[n] = '\0';
    char extra[SVC_MESSAGE_MAX + 128];
    if (e == PAT_E_MISSING_CREDENTIAL)
        snprintf(extra, sizeof(extra), "WWW-Authenticate: Bearer realm=\"patd\"\r\n");
    else
        snprintf(extra, sizeof(extra),
                 "WWW-Authenticate: Bearer realm=\"patd\", error=\"%s\", "
                 "error_description=\"%s\"\r\n",
                 status == 401 ? "invalid_token" : "insufficient_scope", desc);
    char text[SVC_MESSAGE_MAX + 64];
    snprintf(text, sizeof(text), "%u %s: %s\n", status, pat_err_reason(e), message);
    http_simple(o, cfg, ctx, status, pat_err_reason(e), extra, text);
}

/* Runs Verify on in; builds the answer into o. inline_only (the loop
 * thread): the prepared answer if there is one, else from memory; 0 when
 * the call declined and must go to a worker. */
static int http_verify_call(const http_cfg_t *cfg, const http_ctx_t *ctx,
                            const Pat__V1__VerifyRequest *in, http_out_t *o, int inline_only)
{
    svc_prepared_t pa;
    if (inline_only && disp_verify_prepared(cfg->svc, &cfg->verify, in, SVC_FORM_HTTP, &pa)) {
        http_begin(o, ctx, 200, "ok");
        http_put_bytes(o, pa.bytes, pa.len);
        http_verify_close(o, cfg, ctx);
        return 1;
    }
    http_vemit_t e = {.o = *o, .cfg = cfg, .ctx = ctx};
    disp_meta_t meta = {0};
    disp_outcome_t out;
    if (inline_only) {
        if (!disp_call_inline(cfg->svc, &cfg->verify, &meta, &in->base, http_verify_emit, &e, &out))
            return 0;
    } else {
        disp_call(cfg->svc, &cfg->verify, &meta, &in->base, http_verify_emit, &e, &out);
    }
    if (out.err != PAT_E_OK || !e.emitted)
        http_verify_refuse(o, cfg, ctx, out.err == PAT_E_OK ? PAT_E_INTERNAL : out.err,
                           out.message);
    return 1;
}

static void http_vwork_run(conn_work_t *w)
{
    http_vwork_t *v = (http_vwork_t *)w;
    http_out_t o = {&v->out, &v->out_len, &v->out_cap};
    http_verify_call(v->cfg, &v->ctx, &v->in, &o, 0);
}

static void http_vwork_done(conn_work_t *w, int alive)
{
    http_vwork_t *v = (http_vwork_t *)w;
    http_conn_t *hc = conn_protocol_state(w->conn);
    (void)alive; /* sent regardless: on a closed connection it only counts */
    v->slot->data = v->out;
    v->slot->len = v->out_len;
    v->slot->close_after = v->ctx.close;
    v->slot->ready = 1;
    free(v);
    http_flush(hc);
}

/* The strings a Verify needs, NUL-terminated, packed into dst. */
typedef struct {
    const char *token, *path;
    size_t token_len, path_len;
    char ip[INET6_ADDRSTRLEN];
} http_vargs_t;

static size_t http_vargs_size(const http_vargs_t *a)
{
    return a->token_len + 1 + a->path_len + 1 + strlen(a->ip) + 1;
}

static void http_vargs_pack(const http_vargs_t *a, char *dst, Pat__V1__VerifyRequest *in)
{
    in->bearer_token = dst;
    memcpy(dst, a->token, a->token_len);
    dst += a->token_len;
    *dst++ = '\0';
    in->path = dst;
    memcpy(dst, a->path, a->path_len);
    dst += a->path_len;
    *dst++ = '\0';
    in->client_ip = dst;
    strcpy(dst, a->ip);
}

static int http_parse_role(const char *v, size_t len, Pat__V1__Role *out)
{
    static const struct {
        const char *word;
        Pat__V1__Role role;
    } roles[] = {{"member", PAT__V1__ROLE__ROLE_MEMBER},
                 {"manager", PAT__V1__ROLE__ROLE_MANAGER},
                 {"admin", PAT__V1__ROLE__ROLE_ADMIN}};
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (strlen(roles[i].word) == len && strncasecmp(v, roles[i].word, len) == 0) {
            *out = roles[i].role;
            return 0;
        }
    }
    return -1;
}

/* GET (or any method) /v1/verify[/rest]: forward-auth. */
void http_route_verify(http_conn_t *hc, http_ctx_t *ctx, const char *rest, size_t rest_len)
{
    const http_cfg_t *cfg = hc->cfg;
    http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
    size_t alen = 0;
    unsigned n_auth = 0, n_act = 0;
    const char *auth = http_header(hc, "authorization", &alen, &n_auth);
    http_header(hc, "x-act-as-user", NULL, &n_act);
    if (n_auth > 1 || n_act > 1) {
        http_error(&o, cfg, ctx, PAT_E_BAD_REQUEST,
                   n_auth > 1 ? "more than one Authorization header"
                              : "more than one X-Act-As-User header");
        http_answer(hc, ctx);
        return;
    }
    if (auth == NULL || alen < 7 || strncasecmp(auth, "Bearer ", 7) != 0) {
        http_verify_refuse(&o, cfg, ctx, PAT_E_MISSING_CREDENTIAL,
                           "no Authorization: Bearer header");
        http_answer(hc, ctx);
        return;
    }
    http_vargs_t a = {.token = auth + 7, .token_len = alen - 7};
    while (a.token_len && *a.token == ' ')
        a.token++, a.token_len--;
    while (a.token_len && a.token[a.token_len - 1] == ' ')
        a.token_len--;
    /* The original path: the rest of ours (Envoy's path_prefix), else what
     * nginx (X-Original-URI) or Traefik and Caddy (X-Forwarded-Uri) say. */
    a.path = rest;
    a.path_len = rest_len;
    if (a.path_len == 0) a.path = http_header(hc, "x-original-uri", &a.path_len, NULL);
    if (a.path == NULL) a.path = http_header(hc, "x-forwarded-uri", &a.path_len, NULL);
    if (a.path == NULL) a.path = "", a.path_len = 0;
    http_client_ip(hc, a.ip, sizeof(a.ip));
    /* Header values may be any bytes but NUL (llhttp refuses that); what
     * reaches the service as a string must be UTF-8, as on the framed port. */
    if (!wire_utf8_valid((const uint8_t *)a.token, a.token_len) ||
        !wire_utf8_valid((const uint8_t *)a.path, a.path_len)) {
        http_error(&o, cfg, ctx, PAT_E_INVALID_FIELD,
                   "the token and the original path must be valid UTF-8");
        http_answer(hc, ctx);
        return;
    }
    Pat__V1__VerifyRequest in = PAT__V1__VERIFY_REQUEST__INIT;
    size_t rlen = 0;
    const char *role = http_header(hc, "x-patd-required-role", &rlen, NULL);
    if (role && http_parse_role(role, rlen, &in.required_role) != 0) {
        http_error(&o, cfg, ctx, PAT_E_INVALID_FIELD,
                   "X-Patd-Required-Role is member, manager or admin");
        http_answer(hc, ctx);
        return;
    }
    http_vargs_pack(&a, hc->sbuf, &in);
    if (http_verify_call(cfg, ctx, &in, &o, 1)) {
        http_answer(hc, ctx);
        return;
    }
    /* Needs the disk: to a worker, with a copy of everything it reads. */
    http_vwork_t *v = calloc(1, sizeof(*v) + http_vargs_size(&a));
    if (v == NULL) abort();
    v->cfg = cfg;
    v->ctx = *ctx;
    v->in = in;
    http_vargs_pack(&a, v->strings, &v->in);
    v->work.run = http_vwork_run;
    v->work.done = http_vwork_done;
    v->work.urgent = 1;
    v->work.token = v->in.bearer_token; /* in v->strings */
    v->slot = http_slot_new(hc);
    if (conn_submit(hc->conn, &v->work) != 0) {
        http_slot_t *s = v->slot;
        free(v);
        http_error(&o, cfg, ctx, PAT_E_OVERLOADED, "server is overloaded; retry with backoff");
        http_slot_fill(hc, s, ctx); /* in the place it reserved */
        http_flush(hc);
    }
}
