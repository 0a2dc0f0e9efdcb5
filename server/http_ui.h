/* http_ui: the Access Tokens page on the HTTP listener (docs/ui.md):
 *
 *   GET  /ui/, /ui/<asset>   the page: HTML, CSS and JavaScript embedded at
 *                            build time (server/ui/, server/ui/embed.cmake)
 *   GET  /ui/login?code=C    a one-time code (CreateUiLink) becomes a
 *                            session cookie; 303 to /ui/, so the code
 *                            leaves the address bar
 *   GET  /ui/session         who is signed in, and the CSRF token
 *   POST /ui/logout          ends the session (with the CSRF token)
 *
 * The page does everything else through the REST API (http_api.c), which
 * takes the session cookie, or --ui-auth-header from a trusted proxy, as
 * the user's credential when no Authorization header is sent; a request
 * that changes anything must also carry X-CSRF-Token.
 *
 * Every answer under /ui/ carries a strict Content-Security-Policy (no
 * inline script or style, frame-ancestors from --ui-frame-ancestors),
 * X-Content-Type-Options: nosniff and Referrer-Policy: no-referrer; assets
 * are cached for an hour with an ETag, the page itself revalidated.
 * Loop thread only; sessions live in the service (svc_ui.c). */
#ifndef PAT_HTTP_UI_H
#define PAT_HTTP_UI_H

#include <stddef.h>

#define HTTP_UI_COOKIE "patd_session"

typedef struct {
    const char *path; /* "/ui/app.js" */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t len;
    const char *etag; /* quoted */
} http_ui_asset_t;

/* Generated at build time from server/ui/. */
extern const http_ui_asset_t http_ui_assets[];
extern const size_t http_ui_n_assets;

#endif
