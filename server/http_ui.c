/* http_ui: the Access Tokens page's routes: embedded assets, login by a
 * one-time code, the session and logout (design in http_ui.h). */
#include "http_ui.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "http_internal.h"
#include "log.h"
#include "token.h"
#include "wire.h"

/* The headers every answer under /ui/ carries. */
static void http_ui_headers(http_out_t *o, const http_cfg_t *cfg)
{
    http_puts(o, "Content-Security-Policy: default-src 'none'; script-src 'self'; "
                 "style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; "
                 "base-uri 'none'; frame-ancestors ");
    http_puts(o, cfg->ui_frame_ancestors && cfg->ui_frame_ancestors[0] ? cfg->ui_frame_ancestors
                                                                       : "'none'");
    http_puts(o, "\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n");
}

static void http_ui_page(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx,
                         unsigned status, const char *reason, const char *extra, const char *type,
                         const void *body, size_t len)
{
    http_begin(o, ctx, status, reason[0] ? reason : "ok");
    http_ui_headers(o, cfg);
    if (extra) http_puts(o, extra);
    http_end(o, ctx, type, body, len);
    http_log(cfg, ctx, status, reason);
}

/* A short page for a person who followed a link (no script needed). */
static void http_ui_message(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx,
                            unsigned status, const char *reason, const char *text)
{
    char html[1024];
    int n =
        snprintf(html, sizeof(html),
                 "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                 "<title>Access tokens</title><link rel=\"stylesheet\" href=\"/ui/app.css\">"
                 "</head><body><main class=\"notice\"><h1>Access tokens</h1><p>%s</p>"
                 "<p><a href=\"/ui/\">Go to the Access Tokens page</a></p></main></body></html>",
                 text);
    http_ui_page(o, cfg, ctx, status, reason, NULL, "text/html; charset=utf-8", html, (size_t)n);
}

/* ---------------------------------------------------------------- who is signed in */

/* The secret named `name` in v (len bytes) of `name=value` pairs split by
 * any of seps (a Cookie header: "; ", a query string: "&"), copied into
 * out; 0, or -1 if it is missing or not a secret's length. */
static int http_ui_secret(const char *v, size_t len, const char *name, const char *seps,
                          char out[SVC_UI_SECRET_LEN + 1])
{
    size_t nl = strlen(name);
    for (size_t i = 0; v && i + nl + 1 <= len; i++) {
        if ((i > 0 && !strchr(seps, v[i - 1])) || memcmp(v + i, name, nl) != 0 || v[i + nl] != '=')
            continue;
        size_t s = i + nl + 1, e = s;
        while (e < len && !strchr(seps, v[e]))
            e++;
        if (e - s != SVC_UI_SECRET_LEN) return -1;
        memcpy(out, v + s, SVC_UI_SECRET_LEN);
        out[SVC_UI_SECRET_LEN] = '\0';
        return 0;
    }
    return -1;
}

/* The session id in the Cookie header, copied into sid; 0, or -1 if none. */
static int http_ui_cookie(const http_conn_t *hc, char sid[SVC_UI_SECRET_LEN + 1])
{
    size_t len = 0;
    const char *v = http_header(hc, "cookie", &len, NULL);
    return http_ui_secret(v, len, HTTP_UI_COOKIE, "; ", sid);
}

int http_ui_user(const http_conn_t *hc, char user_id[SVC_USER_ID_MAX + 1],
                 char csrf[SVC_UI_SECRET_LEN + 1], const char **via)
{
    const http_cfg_t *cfg = hc->cfg;
    char sid[SVC_UI_SECRET_LEN + 1];
    if (http_ui_cookie(hc, sid) == 0 && svc_ui_session(cfg->svc, sid, user_id, csrf) == 0) {
        *via = "session";
        return 1;
    }
    /* The platform's login in front (Grafana's auth proxy): believed only
     * from a trusted proxy, ignored from anyone else. */
    if (cfg->ui_auth_header && cfg->ui_auth_header[0] && hc->peer_trusted) {
        size_t len = 0;
        unsigned n = 0;
        const char *v = http_header(hc, cfg->ui_auth_header, &len, &n);
        if (v && n == 1 && len > 0 && len <= SVC_USER_ID_MAX &&
            wire_utf8_valid((const uint8_t *)v, len) && memchr(v, '\0', len) == NULL) {
            memcpy(user_id, v, len);
            user_id[len] = '\0';
            svc_ui_proxy_csrf(cfg->svc, user_id, csrf);
            *via = "proxy";
            return 1;
        }
    }
    return 0;
}

/* 1 if the request carries the CSRF token csrf in X-CSRF-Token. */
int http_ui_csrf_ok(const http_conn_t *hc, const char *csrf)
{
    size_t len = 0;
    unsigned n = 0;
    const char *v = http_header(hc, "x-csrf-token", &len, &n);
    return v && n == 1 && token_secret_equal(v, len, csrf, strlen(csrf));
}

/* ---------------------------------------------------------------- routes */

static void http_ui_login(http_conn_t *hc, http_ctx_t *ctx, const char *query, size_t qlen)
{
    const http_cfg_t *cfg = hc->cfg;
    http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
    char code[SVC_UI_SECRET_LEN + 1] = "";
    if (http_ui_secret(query, qlen, "code", "&", code) != 0) code[0] = '\0';
    char sid[SVC_UI_SECRET_LEN + 1], csrf[SVC_UI_SECRET_LEN + 1];
    int64_t expires = 0;
    if (code[0] == '\0' || svc_ui_redeem(cfg->svc, code, sid, csrf, &expires) != 0) {
        http_ui_message(&o, cfg, ctx, 400, "invalid_login_link",
                        "This login link is not valid: it was used already, it expired, or it "
                        "was cut short. Ask for a new one (<code>patctl ui-link --as "
                        "USER_ID</code>).");
    } else {
        /* Secure on an https:// listener, so the browser never sends it
         * in clear; the code leaves the address bar with the redirect. */
        char extra[256];
        int64_t max_age = (expires - clock_now_ms()) / 1000;
        snprintf(extra, sizeof(extra),
                 "Set-Cookie: " HTTP_UI_COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; "
                 "SameSite=Strict%s\r\nLocation: /ui/\r\n",
                 sid, (long long)max_age, conn_is_tls(hc->conn) ? "; Secure" : "");
        http_ui_page(&o, cfg, ctx, 303, "", extra, "text/plain; charset=utf-8", "", 0);
        explicit_bzero(extra, sizeof(extra));
    }
    explicit_bzero(code, sizeof(code));
    explicit_bzero(sid, sizeof(sid));
    explicit_bzero(csrf, sizeof(csrf));
    http_answer(hc, ctx);
}

static void http_ui_json(http_out_t *o, const http_cfg_t *cfg, const http_ctx_t *ctx,
                         unsigned status, const char *reason, const char *extra, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (text == NULL) abort();
    http_ui_page(o, cfg, ctx, status, reason, extra, "application/json", text, strlen(text));
    explicit_bzero(text, strlen(text)); /* the CSRF token */
    free(text);
}

void http_route_ui(http_conn_t *hc, http_ctx_t *ctx, const char *url, size_t plen)
{
    const http_cfg_t *cfg = hc->cfg;
    http_out_t o = {&hc->ob, &hc->ob_len, &hc->ob_cap};
    int get = hc->parser.method == HTTP_GET || hc->parser.method == HTTP_HEAD;
    int post = hc->parser.method == HTTP_POST;
    const char *query = plen < hc->url_len ? url + plen + 1 : NULL;
    size_t qlen = query ? hc->url_len - plen - 1 : 0;
    char path[64];
    snprintf(path, sizeof(path), "%.*s", (int)(plen < 63 ? plen : 63), url);
    if (strcmp(path, "/ui") == 0) {
        ctx->route = "/ui/";
        http_ui_page(&o, cfg, ctx, 301, "", "Location: /ui/\r\n", "text/plain; charset=utf-8", "",
                     0);
        http_answer(hc, ctx);
        return;
    }
    if (strcmp(path, "/ui/login") == 0 && get) {
        ctx->route = "/ui/login";
        http_ui_login(hc, ctx, query, qlen);
        return;
    }
    char user[SVC_USER_ID_MAX + 1], csrf[SVC_UI_SECRET_LEN + 1];
    const char *via = NULL;
    if (strcmp(path, "/ui/session") == 0 && get) {
        ctx->route = "/ui/session";
        if (!http_ui_user(hc, user, csrf, &via)) {
            http_api_error(&o, cfg, ctx, PAT_E_MISSING_CREDENTIAL,
                           "not signed in: open a login link (patctl ui-link --as USER_ID)", 0);
        } else {
            http_ui_json(&o, cfg, ctx, 200, "", NULL,
                         json_pack("{s:s,s:s,s:s}", "user_id", user, "csrf", csrf, "via", via));
        }
        explicit_bzero(csrf, sizeof(csrf));
        http_answer(hc, ctx);
        return;
    }
    if (strcmp(path, "/ui/logout") == 0 && post) {
        ctx->route = "/ui/logout";
        char sid[SVC_UI_SECRET_LEN + 1];
        if (http_ui_user(hc, user, csrf, &via) && strcmp(via, "session") == 0 &&
            !http_ui_csrf_ok(hc, csrf)) {
            http_api_error(&o, cfg, ctx, PAT_E_CSRF, "X-CSRF-Token is missing or wrong", 0);
        } else {
            if (http_ui_cookie(hc, sid) == 0) svc_ui_logout(cfg->svc, sid);
            http_ui_page(&o, cfg, ctx, 204, "",
                         "Set-Cookie: " HTTP_UI_COOKIE "=; Path=/; Max-Age=0; HttpOnly; "
                         "SameSite=Strict\r\n",
                         "text/plain; charset=utf-8", "", 0);
        }
        explicit_bzero(csrf, sizeof(csrf));
        http_answer(hc, ctx);
        return;
    }
    const char *want = strcmp(path, "/ui/") == 0 ? "/ui/index.html" : path;
    for (size_t i = 0; i < http_ui_n_assets; i++) {
        const http_ui_asset_t *a = &http_ui_assets[i];
        if (strcmp(a->path, want) != 0) continue;
        ctx->route = "/ui/";
        if (!get) {
            http_ui_page(&o, cfg, ctx, 405, "method_not_allowed", "Allow: GET, HEAD\r\n",
                         "text/plain; charset=utf-8", "405 method_not_allowed\n", 23);
            http_answer(hc, ctx);
            return;
        }
        /* The page is revalidated each time (it names the assets), the
         * assets kept for an hour; both carry their ETag. */
        int is_page = strcmp(want, "/ui/index.html") == 0;
        ctx->cache_control = is_page ? "no-cache" : "public, max-age=3600";
        size_t il = 0;
        const char *inm = http_header(hc, "if-none-match", &il, NULL);
        char extra[64];
        snprintf(extra, sizeof(extra), "ETag: %s\r\n", a->etag);
        if (inm && il == strlen(a->etag) && memcmp(inm, a->etag, il) == 0) {
            http_begin(&o, ctx, 304, "ok");
            http_ui_headers(&o, cfg);
            http_puts(&o, extra);
            http_puts(&o, "\r\n");
            http_log(cfg, ctx, 304, "");
        } else {
            http_ui_page(&o, cfg, ctx, 200, "", extra, a->type, a->data, a->len);
        }
        http_answer(hc, ctx);
        return;
    }
    ctx->route = "/ui/unknown";
    http_ui_message(&o, cfg, ctx, 404, "not_found", "There is no such page.");
    http_answer(hc, ctx);
}
