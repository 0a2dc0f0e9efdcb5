/* http: HTTP/1.1 over a connection: llhttp parsing, limits, in-order
 * answers, and the metrics and health routes (design in http.h; the
 * Verify route is http_verify.c, the REST API http_api.c). */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "http_internal.h"
#include "log.h"
#include "metrics.h"
#include "token.h"
#include "wire.h"

/* ---------------------------------------------------------------- answers */

/* printf into the answer, for the pages that are not hot (/metrics). */
__attribute__((format(printf, 2, 3))) static void http_put(http_out_t *o, const char *fmt, ...)
{
    http_out_ready(o, 1);
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = *o->cap - *o->len;
        int n = vsnprintf((char *)*o->buf + *o->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) abort();
        if ((size_t)n < room) {
            *o->len += (size_t)n;
            return;
        }
        *o->cap = *o->cap * 2 + (size_t)n + 256;
        *o->buf = realloc(*o->buf, *o->cap);
        if (*o->buf == NULL) abort();
    }
}

static const char *http_phrase(unsigned status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/* The status line and the headers every answer carries. */
void http_begin(http_out_t *o, const http_ctx_t *ctx, unsigned status, const char *reason)
{
    http_puts(o, "HTTP/1.1 ");
    http_putu(o, status);
    http_puts(o, " ");
    http_puts(o, http_phrase(status));
    http_puts(o, "\r\nCache-Control: ");
    http_puts(o, ctx->cache_control ? ctx->cache_control : "no-store");
    http_puts(o, "\r\nX-Patd-Reason: ");
    http_puts(o, reason);
    http_puts(o, "\r\nX-Request-Id: ");
    http_puts(o, ctx->request_id);
    http_puts(o, ctx->close ? "\r\nConnection: close\r\n" : "\r\n");
}

/* Ends the headers and adds the body (left out for HEAD). A /v1/verify
 * answer has none: nginx's auth_request never reads a subrequest's body,
 * so a body, however short, keeps it from reusing the connection (measured:
 * a new TCP connection per request, 9.6k req/s against 30k+ without). */
void http_end(http_out_t *o, const http_ctx_t *ctx, const char *type, const void *body, size_t len)
{
    if (ctx->no_body) len = 0;
    http_puts(o, "Content-Type: ");
    http_puts(o, type);
    http_puts(o, "\r\nContent-Length: ");
    http_putu(o, len);
    http_puts(o, "\r\n\r\n");
    if (!ctx->head && len) http_put_bytes(o, body, len);
}

void http_log(const http_cfg_t *cfg, const http_ctx_t *ctx, unsigned status, const char *reason)
{
    if (!cfg->access_log || !log_enabled(LOG_INFO)) return;
    uint64_t us = (metrics_now_ns() - ctx->t0_ns) / 1000;
    log_info("http method=%s route=%s status=%u reason=%s latency_us=%llu request_id=%s%s%s%s%s",
             ctx->method, ctx->route, status, reason[0] ? reason : "ok", (unsigned long long)us,
             ctx->request_id, ctx->orig_method[0] ? " original_method=" : "", ctx->orig_method,
             ctx->traceparent[0] ? " traceparent=" : "", ctx->traceparent);
}

/* A whole answer with a short text body. */
void http_simple(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx, unsigned status,
                 const char *reason, const char *extra_headers, const char *text)
{
    http_begin(o, ctx, status, reason[0] ? reason : "ok");
    if (extra_headers) http_put(o, "%s", extra_headers);
    http_end(o, ctx, "text/plain; charset=utf-8", text, strlen(text));
    http_log(cfg, ctx, status, reason);
}

/* An outcome of the error table as an answer. */
void http_error(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx, pat_err_t e,
                const char *message)
{
    char extra[512] = "";
    if (e == PAT_E_OVERLOADED || e == PAT_E_SHUTTING_DOWN || e == PAT_E_STORAGE)
        snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", HTTP_RETRY_AFTER_S);
    char text[SVC_MESSAGE_MAX + 64];
    snprintf(text, sizeof(text), "%u %s: %s\n", pat_err_http(e), pat_err_reason(e), message);
    http_simple(o, cfg, ctx, pat_err_http(e), pat_err_reason(e), extra[0] ? extra : NULL, text);
}

/* ---------------------------------------------------------------- the queue */

http_slot_t *http_slot_new(http_conn_t *hc)
{
    http_slot_t *s = calloc(1, sizeof(*s));
    if (s == NULL) abort();
    if (hc->tail)
        hc->tail->next = s;
    else
        hc->head = s;
    hc->tail = s;
    return s;
}

/* Sends the finished answers at the head of the queue, in order. */
void http_flush(http_conn_t *hc)
{
    while (hc->head && hc->head->ready) {
        http_slot_t *s = hc->head;
        hc->head = s->next;
        if (hc->head == NULL) hc->tail = NULL;
        conn_send(hc->conn, s->data, s->len, 1);
        if (s->close_after) conn_fail(hc->conn);      /* close once written */
        if (s->data) explicit_bzero(s->data, s->len); /* a CreateToken answer holds the secret */
        free(s->data);
        free(s);
    }
}

/* Moves the answer built in hc->ob into slot s, ready to leave in turn. */
void http_slot_fill(http_conn_t *hc, http_slot_t *s, const http_ctx_t *ctx)
{
    s->data = malloc(hc->ob_len);
    if (s->data == NULL) abort();
    memcpy(s->data, hc->ob, hc->ob_len);
    s->len = hc->ob_len;
    s->close_after = ctx->close;
    s->ready = 1;
    hc->ob_len = 0;
}

/* An answer built in hc->ob: written at once when nothing is queued before
 * it, else queued. */
void http_answer(http_conn_t *hc, const http_ctx_t *ctx)
{
    if (hc->head != NULL) {
        http_slot_fill(hc, http_slot_new(hc), ctx);
        return;
    }
    if (ctx->no_body) /* /v1/verify: headers only, no secret in them */
        conn_send2_public(hc->conn, NULL, 0, hc->ob, hc->ob_len, 1);
    else
        conn_send(hc->conn, hc->ob, hc->ob_len, 1);
    if (ctx->close) conn_fail(hc->conn);
    hc->ob_len = 0;
}

/* ---------------------------------------------------------------- headers */

static const char *http_hname(const http_conn_t *hc, unsigned i, size_t *len)
{
    *len = hc->hdr[i].n_len;
    return hc->hb + hc->hdr[i].n_off;
}

static const char *http_hvalue(const http_conn_t *hc, unsigned i, size_t *len)
{
    *len = hc->hdr[i].v_len;
    return hc->hb + hc->hdr[i].v_off;
}

/* The value of header name, its count in *count (may be NULL). */
const char *http_header(const http_conn_t *hc, const char *name, size_t *vlen, unsigned *count)
{
    size_t want = strlen(name), ignored;
    const char *found = NULL;
    unsigned n = 0;
    if (vlen) *vlen = 0;
    for (unsigned i = 0; i < hc->nh; i++) {
        size_t nl;
        const char *hn = http_hname(hc, i, &nl);
        if (nl != want || strncasecmp(hn, name, nl) != 0) continue;
        if (n++ == 0) found = http_hvalue(hc, i, vlen ? vlen : &ignored);
    }
    if (count) *count = n;
    return found;
}

/* Copies a header value into dst (NUL-terminated) if it is printable
 * ASCII of at most cap-1 bytes; "" otherwise. */
static void http_copy_token(char *dst, size_t cap, const char *v, size_t len)
{
    dst[0] = '\0';
    if (v == NULL || len == 0 || len >= cap) return;
    for (size_t i = 0; i < len; i++)
        if (v[i] <= 0x20 || v[i] >= 0x7f) return;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static _Atomic uint64_t http_id_counter;
static uint64_t http_id_base;

static uint64_t http_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A fresh request id: 16 hex digits, unique in this process and unlike
 * another process's (a random base). */
static void http_new_id(char out[HTTP_ID_MAX + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = http_mix(http_id_base +
                          atomic_fetch_add_explicit(&http_id_counter, 1, memory_order_relaxed));
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
    out[16] = '\0';
}

static void http_context(http_conn_t *hc, http_ctx_t *ctx, const char *route)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->route = route;
    ctx->method = llhttp_method_name((llhttp_method_t)hc->parser.method);
    ctx->head = hc->parser.method == HTTP_HEAD;
    ctx->close = !llhttp_should_keep_alive(&hc->parser) || conn_draining(hc->conn);
    ctx->t0_ns = hc->t0_ns;
    size_t len = 0;
    const char *v = http_header(hc, "x-request-id", &len, NULL);
    http_copy_token(ctx->request_id, sizeof(ctx->request_id), v, len);
    if (ctx->request_id[0] == '\0') http_new_id(ctx->request_id);
    v = http_header(hc, "traceparent", &len, NULL);
    http_copy_token(ctx->traceparent, sizeof(ctx->traceparent), v, len);
    v = http_header(hc, "x-original-method", &len, NULL);
    if (v == NULL) v = http_header(hc, "x-forwarded-method", &len, NULL);
    http_copy_token(ctx->orig_method, sizeof(ctx->orig_method), v, len);
}

/* ---------------------------------------------------------------- addresses */

static int http_parse_addr(const char *s, size_t len, struct sockaddr_storage *out)
{
    char buf[INET6_ADDRSTRLEN + 1];
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof(buf)) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, buf, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

static void http_addr_bytes(const struct sockaddr_storage *a, int *family, uint8_t out[16])
{
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)a;
        /* An IPv4 peer on a dual-stack socket: match IPv4 ranges. */
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
            *family = AF_INET;
            memcpy(out, a6->sin6_addr.s6_addr + 12, 4);
            return;
        }
        *family = AF_INET6;
        memcpy(out, a6->sin6_addr.s6_addr, 16);
        return;
    }
    *family = AF_INET;
    memcpy(out, &((const struct sockaddr_in *)a)->sin_addr, 4);
}

int http_is_trusted(const http_cfg_t *cfg, const struct sockaddr_storage *a)
{
    int family;
    uint8_t b[16];
    http_addr_bytes(a, &family, b);
    for (int i = 0; i < cfg->n_trusted; i++) {
        const http_cidr_t *c = &cfg->trusted[i];
        if (c->family != family) continue;
        int bits = c->bits, k = 0;
        while (bits >= 8 && b[k] == c->addr[k])
            bits -= 8, k++;
        if (bits >= 8) continue;
        uint8_t mask = (uint8_t)(0xff00 >> bits);
        if (bits == 0 || (b[k] & mask) == (c->addr[k] & mask)) return 1;
    }
    return 0;
}

int http_set_trusted(http_cfg_t *cfg, const char *list, char *err, size_t errlen)
{
    cfg->n_trusted = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof(item)) goto bad;
        memcpy(item, p, len);
        item[len] = '\0';
        char *slash = strchr(item, '/');
        long bits = -1;
        if (slash) {
            char *e;
            *slash = '\0';
            bits = strtol(slash + 1, &e, 10);
            if (*e || e == slash + 1) goto bad;
        }
        struct sockaddr_storage a;
        if (http_parse_addr(item, strlen(item), &a) != 0) goto bad;
        if (cfg->n_trusted == HTTP_MAX_TRUSTED) {
            snprintf(err, errlen, "at most %d trusted proxy ranges", HTTP_MAX_TRUSTED);
            return -1;
        }
        http_cidr_t *c = &cfg->trusted[cfg->n_trusted];
        http_addr_bytes(&a, &c->family, c->addr);
        int max = c->family == AF_INET ? 32 : 128;
        if (bits < 0) bits = max;
        if (bits > max) goto bad;
        c->bits = (int)bits;
        cfg->n_trusted++;
        p += len;
        if (*p == ',') p++;
        continue;
    bad:
        snprintf(err, errlen, "'%.*s' is not an address or CIDR range", (int)len, p);
        return -1;
    }
    return 0;
}

/* The client's address: the peer, or what a trusted proxy says it is. */
void http_client_ip(const http_conn_t *hc, char *out, size_t cap)
{
    size_t n = strnlen(hc->peer_ip, cap - 1);
    memcpy(out, hc->peer_ip, n);
    out[n] = '\0';
    if (!hc->peer_trusted) return;
    size_t len = 0;
    const char *xff = http_header(hc, "x-forwarded-for", &len, NULL);
    struct sockaddr_storage a;
    if (xff) {
        /* From the right: the first address that is not a trusted proxy. */
        size_t end = len;
        while (end > 0) {
            size_t start = end;
            while (start > 0 && xff[start - 1] != ',')
                start--;
            if (http_parse_addr(xff + start, end - start, &a) != 0) return;
            if (!http_is_trusted(hc->cfg, &a) || start == 0) {
                conn_addr_text(&a, out, cap);
                return;
            }
            end = start - 1;
        }
        return;
    }
    const char *xri = http_header(hc, "x-real-ip", &len, NULL);
    if (xri && http_parse_addr(xri, len, &a) == 0) conn_addr_text(&a, out, cap);
}

/* ---------------------------------------------------------------- routes */

static int http_path_is(const char *path, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(path, want, len) == 0;
}

static void http_route(http_conn_t *hc)
{
    const http_cfg_t *cfg = hc->cfg;
    const char *url = hc->hb;
    size_t plen = 0;
    while (plen < hc->url_len && url[plen] != '?')
        plen++;
    http_ctx_t ctx;
    http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
    int get = hc->parser.method == HTTP_GET || hc->parser.method == HTTP_HEAD;
    if (conn_budget_spent(hc->conn)) {
        http_context(hc, &ctx, "overloaded");
        http_error(&o, cfg, &ctx, PAT_E_OVERLOADED,
                   "server is overloaded (answers are not being read); retry with backoff");
        http_answer(hc, &ctx);
        return;
    }
    static const char verify[] = "/v1/verify";
    size_t vl = sizeof(verify) - 1;
    if (plen >= vl && memcmp(url, verify, vl) == 0 && (plen == vl || url[vl] == '/')) {
        http_context(hc, &ctx, verify);
        ctx.no_body = 1;
        if (conn_draining(hc->conn)) {
            http_error(&o, cfg, &ctx, PAT_E_SHUTTING_DOWN,
                       "server is shutting down; retry on another instance");
            http_answer(hc, &ctx);
            return;
        }
        /* The rest of the URL, query included, is the original request's. */
        http_route_verify(hc, &ctx, url + vl, plen == vl ? 0 : hc->url_len - vl);
        return;
    }
    if ((plen == 3 || (plen > 3 && url[3] == '/')) && memcmp(url, "/ui", 3) == 0) {
        http_context(hc, &ctx, "/ui/");
        http_route_ui(hc, &ctx, url, plen);
        return;
    }
    static const char api[] = "/api/";
    if (plen >= sizeof(api) - 1 && memcmp(url, api, sizeof(api) - 1) == 0) {
        http_context(hc, &ctx, "/api");
        http_route_api(hc, &ctx, url, plen);
        return;
    }
    const char *route = http_path_is(url, plen, "/metrics")   ? "/metrics"
                        : http_path_is(url, plen, "/healthz") ? "/healthz"
                        : http_path_is(url, plen, "/readyz")  ? "/readyz"
                                                              : "unknown";
    http_context(hc, &ctx, route);
    if (strcmp(route, "unknown") == 0) {
        http_simple(&o, cfg, &ctx, 404, "not_found", NULL, "404 not_found: no such route\n");
    } else if (!get) {
        http_simple(&o, cfg, &ctx, 405, "method_not_allowed", "Allow: GET, HEAD\r\n",
                    "405 method_not_allowed: this route takes GET or HEAD\n");
    } else if (route[1] == 'm') {
        size_t len = 0;
        char *page = metrics_render(cfg->svc, cfg->stats, &len);
        http_begin(&o, &ctx, 200, "ok");
        http_end(&o, &ctx, "text/plain; version=0.0.4; charset=utf-8", page, len);
        http_log(cfg, &ctx, 200, "");
        free(page);
    } else if (route[1] == 'h') {
        http_simple(&o, cfg, &ctx, 200, "", NULL, "ok\n");
    } else if (atomic_load(&cfg->stats->draining)) {
        http_simple(&o, cfg, &ctx, 503, "shutting_down", "Retry-After: 1\r\n", "draining\n");
    } else if (!svc_cluster_ready(cfg->svc)) {
        http_simple(&o, cfg, &ctx, 503, "not_ready", "Retry-After: 1\r\n",
                    "catching up with the cluster, or its lease ran out\n");
    } else {
        http_simple(&o, cfg, &ctx, 200, "", NULL, "ready\n");
    }
    http_answer(hc, &ctx);
}

/* ---------------------------------------------------------------- llhttp */

static int http_limit(http_conn_t *hc, int status, const char *why)
{
    hc->limit_status = status;
    llhttp_set_error_reason(&hc->parser, why);
    return HPE_USER;
}

static int http_append(http_conn_t *hc, const char *at, size_t len, int status)
{
    if (len > hc->cfg->max_header_bytes - hc->hlen)
        return http_limit(hc, status, status == 414 ? "URL too long" : "request headers too large");
    memcpy(hc->hb + hc->hlen, at, len);
    hc->hlen += len;
    return 0;
}

static int http_on_message_begin(llhttp_t *p)
{
    http_conn_t *hc = p->data;
    hc->hlen = 0;
    hc->url_len = 0;
    hc->nh = 0;
    hc->last_was_value = 0;
    hc->body_len = 0;
    hc->raw_header_bytes = 0;
    hc->in_request = 1;
    hc->headers_done = 0;
    hc->deadline_ms = conn_now_ms(hc->conn) + hc->cfg->header_timeout_ms;
    hc->t0_ns = metrics_now_ns();
    return 0;
}

static int http_on_url(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *hc = p->data;
    int rc = http_append(hc, at, len, 414);
    if (rc == 0) hc->url_len += (uint32_t)len;
    return rc;
}

static int http_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *hc = p->data;
    if (hc->nh == 0 || hc->last_was_value) {
        if (hc->nh == hc->cfg->max_headers) return http_limit(hc, 431, "too many headers");
        http_hdr_t *h = &hc->hdr[hc->nh++];
        h->n_off = (uint32_t)hc->hlen;
        h->n_len = 0;
        h->v_off = 0;
        h->v_len = 0;
        hc->last_was_value = 0;
    }
    int rc = http_append(hc, at, len, 431);
    if (rc == 0) hc->hdr[hc->nh - 1].n_len += (uint32_t)len;
    return rc;
}

static int http_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *hc = p->data;
    http_hdr_t *h = &hc->hdr[hc->nh - 1];
    /* A value goes on after a line end only as obs-fold (a value starts
     * after ':' and blanks): llhttp 8 accepts it, RFC 9112 lets a server
     * refuse it, and a gateway that unfolds differently is smuggled past. */
    char before = at > hc->chunk ? at[-1] : hc->prev_last;
    if (hc->last_was_value && before == '\n')
        return http_limit(hc, 400, "obs-fold (a header line starting with a blank)");
    if (!hc->last_was_value) {
        h->v_off = (uint32_t)hc->hlen;
        hc->last_was_value = 1;
    }
    int rc = http_append(hc, at, len, 431);
    if (rc == 0) h->v_len += (uint32_t)len;
    return rc;
}

static int http_on_headers_complete(llhttp_t *p)
{
    http_conn_t *hc = p->data;
    hc->headers_done = 1;
    if (p->content_length > hc->cfg->max_body_bytes && !(p->flags & F_CHUNKED)) {
        http_limit(hc, 413, "request body too large");
        return -1; /* an error, not "skip the body" */
    }
    return 0;
}

static int http_on_body(llhttp_t *p, const char *at, size_t len)
{
    http_conn_t *hc = p->data;
    if (len > hc->cfg->max_body_bytes - hc->body_len)
        return http_limit(hc, 413, "request body too large");
    if (hc->body == NULL) {
        hc->body = malloc(hc->cfg->max_body_bytes ? hc->cfg->max_body_bytes : 1);
        if (hc->body == NULL) abort();
    }
    memcpy(hc->body + hc->body_len, at, len);
    hc->body_len += len;
    return 0;
}

static int http_on_message_complete(llhttp_t *p)
{
    http_conn_t *hc = p->data;
    hc->in_request = 0;
    int full = conn_begin_request(hc->conn);
    int keep = llhttp_should_keep_alive(p) && !conn_draining(hc->conn);
    http_route(hc);
    if (!keep) {
        hc->done = 1;
        return HPE_PAUSED;
    }
    if (full) {
        hc->paused = 1;
        return HPE_PAUSED;
    }
    return 0;
}

static const llhttp_settings_t http_settings = {
    .on_message_begin = http_on_message_begin,
    .on_url = http_on_url,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_headers_complete = http_on_headers_complete,
    .on_body = http_on_body,
    .on_message_complete = http_on_message_complete,
};

/* ---------------------------------------------------------------- the table */

/* A request that cannot be served: one answer, then close. */
static void http_fail(http_conn_t *hc, unsigned status, const char *reason, const char *why)
{
    http_ctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.route = "invalid";
    ctx.method = "-";
    ctx.close = 1;
    ctx.t0_ns = hc->in_request ? hc->t0_ns : metrics_now_ns();
    http_new_id(ctx.request_id);
    http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
    conn_begin_request(hc->conn);
    /* A request for the REST API gets its error as JSON, as every answer
     * there; the URL is known from the request line on. */
    if (hc->in_request && hc->url_len >= 5 && memcmp(hc->hb, "/api/", 5) == 0) {
        http_begin(&o, &ctx, status, reason);
        http_api_fail_json(&o, &ctx, status, reason, why);
        http_log(hc->cfg, &ctx, status, reason);
    } else {
        char text[256];
        snprintf(text, sizeof(text), "%u %s: %s\n", status, reason, why);
        http_simple(&o, hc->cfg, &ctx, status, reason, NULL, text);
    }
    hc->done = 1;
    http_answer(hc, &ctx);
}

static size_t http_feed(void *state, const uint8_t *data, size_t len)
{
    http_conn_t *hc = state;
    if (hc->done) return len;
    if (hc->paused) {
        llhttp_resume(&hc->parser);
        hc->paused = 0;
    }
    hc->chunk = (const char *)data;
    llhttp_errno_t err = llhttp_execute(&hc->parser, (const char *)data, len);
    size_t used =
        err == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&hc->parser) - (const char *)data) : len;
    if (used) hc->prev_last = (char)data[used - 1];
    if (err == HPE_OK) {
        /* Still in the request line or headers after this chunk: count its
         * raw bytes too, so whitespace that no callback sees cannot grow
         * without bound. */
        if (hc->in_request && !hc->headers_done) {
            hc->raw_header_bytes += len;
            if (hc->raw_header_bytes > 2 * hc->cfg->max_header_bytes)
                http_fail(hc, 431, "headers_too_large", "request headers too large");
        }
        return len;
    }
    if (err == HPE_PAUSED) return hc->done ? len : used;
    unsigned status = hc->limit_status ? (unsigned)hc->limit_status : 400;
    const char *reason = status == 413   ? "body_too_large"
                         : status == 414 ? "url_too_long"
                         : status == 431 ? "headers_too_large"
                                         : "bad_request";
    const char *why = llhttp_get_error_reason(&hc->parser);
    http_fail(hc, status, reason, why && why[0] ? why : llhttp_errno_name(err));
    return len;
}

static void *http_open(conn_t *c, const void *cfg)
{
    http_conn_t *hc = calloc(1, sizeof(*hc));
    if (hc == NULL) abort();
    hc->conn = c;
    hc->cfg = cfg;
    hc->hb = malloc(hc->cfg->max_header_bytes);
    hc->sbuf = malloc(hc->cfg->max_header_bytes + 4 + INET6_ADDRSTRLEN);
    if (hc->hb == NULL || hc->sbuf == NULL) abort();
    llhttp_init(&hc->parser, HTTP_REQUEST, &http_settings);
    hc->parser.data = hc;
    if (conn_peer(c, &hc->peer) == 0) {
        conn_addr_text(&hc->peer, hc->peer_ip, sizeof(hc->peer_ip));
        hc->peer_trusted = http_is_trusted(hc->cfg, &hc->peer);
    } else {
        snprintf(hc->peer_ip, sizeof(hc->peer_ip), "unknown");
    }
    return hc;
}

static void http_refuse(void *state, pat_err_t why, const char *message)
{
    http_conn_t *hc = state;
    http_ctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.route = "refused";
    ctx.method = "-";
    ctx.close = 1;
    ctx.t0_ns = metrics_now_ns();
    snprintf(ctx.request_id, sizeof(ctx.request_id), "-");
    http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
    conn_begin_request(hc->conn);
    http_error(&o, hc->cfg, &ctx, why, message);
    hc->done = 1;
    http_answer(hc, &ctx);
}

static void http_close(void *state)
{
    http_conn_t *hc = state;
    while (hc->head) {
        http_slot_t *next = hc->head->next;
        if (hc->head->data) explicit_bzero(hc->head->data, hc->head->len);
        free(hc->head->data);
        free(hc->head);
        hc->head = next;
    }
    free(hc->hb);
    free(hc->sbuf);
    free(hc->body);
    free(hc->ob);
    free(hc);
}

static int http_expired(void *state, uint64_t now_ms)
{
    http_conn_t *hc = state;
    return hc->in_request && !hc->done && now_ms > hc->deadline_ms;
}

static const char *http_idle_note(void *state)
{
    http_conn_t *hc = state;
    return hc->in_request ? "half a request sent" : NULL;
}

const protocol_ops_t http_protocol = {
    .name = "http",
    .open = http_open,
    .feed = http_feed,
    .refuse = http_refuse,
    .close = http_close,
    .idle_note = http_idle_note,
    .expired = http_expired,
};

int http_cfg_init(http_cfg_t *cfg, svc_t *svc, stats_t *stats)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->svc = svc;
    cfg->stats = stats;
    if (http_id_base == 0) {
        uint64_t seed = 0;
        if (token_random((uint8_t *)&seed, sizeof(seed)) != 0) seed = metrics_now_ns();
        http_id_base = seed | 1;
    }
    if (disp_find(svc, "pat.v1.TokenService/Verify", &cfg->verify) != 0 || http_api_init(cfg) != 0)
        return -1;
    cfg->rate = http_rate_new();
    return 0;
}

void http_cfg_destroy(http_cfg_t *cfg)
{
    http_rate_free(cfg->rate);
    cfg->rate = NULL;
}
