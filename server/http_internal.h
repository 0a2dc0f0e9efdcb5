/* http_internal: what the HTTP protocol's files share: the connection's
 * state, answers in request order and the header helpers (http.c), and
 * the routes that live in files of their own (http_verify.c). Nothing
 * outside server/http*.c includes it. */
#ifndef PAT_HTTP_INTERNAL_H
#define PAT_HTTP_INTERNAL_H

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "http.h"
#include "llhttp.h"
#include "pat/v1/pat.pb-c.h"

#define HTTP_HEADERS_HARD    256 /* the most max_headers may be */
#define HTTP_ID_MAX          128 /* X-Request-Id taken from a request */
#define HTTP_TRACE_MAX       55  /* traceparent: version-traceid-parentid-flags */
#define HTTP_RETRY_AFTER_S   1
#define HTTP_QUERY_VALUE_MAX 1024 /* one decoded query value (a page token is ~100 bytes) */

/* ---------------------------------------------------------------- state */

/* One answer waiting for its turn (answers leave in request order). */
typedef struct http_slot {
    struct http_slot *next;
    int ready;
    int close_after;
    uint8_t *data;
    size_t len;
} http_slot_t;

typedef struct {
    uint32_t n_off, n_len, v_off, v_len;
} http_hdr_t;

/* What the log line and the answer need, copied so it can travel. */
typedef struct {
    char request_id[HTTP_ID_MAX + 1];
    char traceparent[HTTP_TRACE_MAX + 1];
    char orig_method[16];
    const char *method;
    const char *route;
    uint64_t t0_ns;
    int head;                  /* HEAD: no body */
    int no_body;               /* /v1/verify: every answer is headers only (see http_end) */
    int close;                 /* Connection: close after this answer */
    const char *cache_control; /* NULL: no-store */
} http_ctx_t;

typedef struct {
    conn_t *conn;
    const http_cfg_t *cfg;
    llhttp_t parser;
    /* The request being parsed. */
    char *hb; /* URL, header names and values, max_header_bytes */
    size_t hlen;
    uint32_t url_len;
    http_hdr_t hdr[HTTP_HEADERS_HARD];
    unsigned nh;
    int last_was_value;
    size_t body_len;
    size_t raw_header_bytes; /* bytes fed while in the headers */
    int in_request;
    int headers_done;
    const char *chunk; /* the bytes being fed, and the last byte of those before */
    char prev_last;
    uint64_t deadline_ms;
    uint64_t t0_ns;
    int limit_status; /* set by a callback that refused: 413, 414, 431 */
    /* The connection. */
    int paused; /* the parser was paused at the in-flight bound */
    int done;   /* an answer that closes was queued: no more input */
    http_slot_t *head, *tail;
    char peer_ip[INET6_ADDRSTRLEN];
    struct sockaddr_storage peer;
    int peer_trusted;
    char *body; /* the request's body, max_body_bytes, made at its first byte */
    char *sbuf; /* scratch for the inline Verify's strings */
    uint8_t *ob;
    size_t ob_len, ob_cap;
} http_conn_t;

/* A Verify on a worker: its input, context and answer travel whole. */
typedef struct {
    conn_work_t work;
    http_slot_t *slot;
    const http_cfg_t *cfg;
    http_ctx_t ctx;
    Pat__V1__VerifyRequest in;
    uint8_t *out;
    size_t out_len, out_cap;
    char strings[]; /* token, path and client address */
} http_vwork_t;

/* Where an answer is written: a growing buffer. */
typedef struct {
    uint8_t **buf;
    size_t *len, *cap;
} http_out_t;

/* The answer's bytes, inline: every header of every answer goes through
 * these, across the files of the protocol. */
/* A fresh connection has no buffer yet: make one before the first write
 * (arithmetic on a NULL buffer is undefined, even with a zero offset). */
static inline void http_out_ready(http_out_t *o, size_t need)
{
    if (*o->buf && *o->cap - *o->len >= need) return;
    size_t cap = *o->cap ? *o->cap : 1024;
    while (cap - *o->len < need)
        cap *= 2;
    *o->buf = realloc(*o->buf, cap);
    if (*o->buf == NULL) abort();
    *o->cap = cap;
}

static inline void http_put_bytes(http_out_t *o, const void *p, size_t n)
{
    http_out_ready(o, n);
    memcpy(*o->buf + *o->len, p, n);
    *o->len += n;
}

/* The hot answer is built with these rather than printf: vfprintf was a
 * quarter of patd's user time on /v1/verify. */
static inline void http_puts(http_out_t *o, const char *s)
{
    http_put_bytes(o, s, strlen(s));
}

/* v in decimal at p (at most 20 bytes); returns the end. */
static inline char *http_fmt_u64(char *p, uint64_t v)
{
    char d[20];
    int n = 0;
    do {
        d[sizeof(d) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(p, d + sizeof(d) - n, (size_t)n);
    return p + n;
}

/* n decimal digits of v, zero-padded, at p; returns the end. */
static inline char *http_fmt_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

static inline void http_putu(http_out_t *o, uint64_t v)
{
    char d[20];
    http_put_bytes(o, d, (size_t)(http_fmt_u64(d, v) - d));
}

static inline void http_putd(http_out_t *o, unsigned v, int n)
{
    char d[8];
    http_put_bytes(o, d, (size_t)(http_fmt_digits(d, v, n) - d));
}

/* ---------------------------------------------------------------- http.c */

void http_begin(http_out_t *o, const http_ctx_t *ctx, unsigned status, const char *reason);
void http_end(http_out_t *o, const http_ctx_t *ctx, const char *type, const void *body, size_t len);
void http_log(const http_cfg_t *cfg, const http_ctx_t *ctx, unsigned status, const char *reason);
void http_simple(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx, unsigned status,
                 const char *reason, const char *extra_headers, const char *text);
void http_error(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx, pat_err_t e,
                const char *message);
http_slot_t *http_slot_new(http_conn_t *hc);
void http_flush(http_conn_t *hc);
void http_slot_fill(http_conn_t *hc, http_slot_t *s, const http_ctx_t *ctx);
void http_answer(http_conn_t *hc, const http_ctx_t *ctx);
const char *http_header(const http_conn_t *hc, const char *name, size_t *vlen, unsigned *count);
void http_client_ip(const http_conn_t *hc, char *out, size_t cap);

/* ---------------------------------------------------------------- routes */

/* GET /v1/verify: the gateway's question (http_verify.c). */
void http_route_verify(http_conn_t *hc, http_ctx_t *ctx, const char *rest, size_t rest_len);

/* /api/...: the REST API (http_api.c). url and plen: the path, without
 * the query. */
void http_route_api(http_conn_t *hc, http_ctx_t *ctx, const char *url, size_t plen);
int http_api_init(http_cfg_t *cfg);

/* /ui/...: the Access Tokens page (http_ui.c). */
void http_route_ui(http_conn_t *hc, http_ctx_t *ctx, const char *url, size_t plen);
/* 1 if the request is signed in to the page (a session cookie, or the
 * auth proxy's header from a trusted peer): its user, the CSRF token that
 * goes with it, and how ("session", "proxy"). */
int http_ui_user(const http_conn_t *hc, char user_id[SVC_USER_ID_MAX + 1],
                 char csrf[SVC_UI_SECRET_LEN + 1], const char **via);
/* 1 if X-CSRF-Token carries csrf (compared in constant time). */
int http_ui_csrf_ok(const http_conn_t *hc, const char *csrf);
http_rate_t *http_rate_new(void);
void http_rate_free(http_rate_t *r);
/* An outcome as a JSON error answer (AIP-193); retry_s: Retry-After, 0 for
 * the default of its status. */
void http_api_error(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx, pat_err_t e,
                    const char *message, unsigned retry_s);
/* The JSON error body alone, for a request the parser refused. */
void http_api_fail_json(http_out_t *o, const http_ctx_t *ctx, unsigned status, const char *reason,
                        const char *message);

#endif
