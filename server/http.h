/* http: HTTP/1.1 as a protocol table (protocol.h), parsed by llhttp, with
 * the routes an API gateway and a monitoring system call:
 *
 *   /v1/verify[/<original path>]   any method: forward-auth verification
 *   /api/...                        the REST API over JSON (http_api.c)
 *   /metrics                        GET: Prometheus text format 0.0.4
 *   /healthz, /readyz               GET: liveness, readiness
 *
 * DESIGN. Loop thread, like every protocol; a Verify that the cache cannot
 * answer goes to a worker through conn_submit, as on the framed port, and
 * runs the same disp_call with the same handler. Keep-alive and pipelining:
 * requests are parsed as they arrive, and answers leave in request order
 * (a queue of slots; an answer ready while nothing is queued before it is
 * written at once). HTTP/1.0, or "Connection: close", is answered and then
 * closed. At the connection's in-flight bound the parser pauses after a
 * request and the connection keeps the unread rest.
 *
 * Refused, with the connection closed after the answer: a malformed
 * request or anything llhttp refuses in strict mode (both Content-Length
 * and Transfer-Encoding, two Content-Lengths, obs-fold, a
 * Transfer-Encoding that is not chunked, bare CR or LF) is 400; a request
 * line or headers beyond max_header_bytes 431 (414 for the URL alone);
 * more than max_headers headers 431; a body beyond max_body_bytes 413; a
 * request not complete within header_timeout_ms is closed (slowloris).
 * More than one Authorization or X-Act-As-User header is 400 without
 * closing. Unknown routes are 404; a known route with a method it does not
 * take is 405 with Allow; overload is 503 with Retry-After.
 *
 * Forwarded headers (X-Forwarded-For, X-Real-IP) are believed only from a
 * peer inside the trusted proxies; X-Forwarded-For is read from the right,
 * skipping trusted addresses. Nothing secret is logged: the access log
 * line carries method, route, status, reason, latency, request id and
 * traceparent, never a header value that could be a credential.
 *
 * Ownership: the configuration belongs to the listener and must outlive
 * it; http_cfg_init resolves the service's Verify, and the caller sets the
 * limits and trusted proxies (main, from config.c's table: the one place
 * their defaults live). */
#ifndef PAT_HTTP_H
#define PAT_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dispatch.h"
#include "protocol.h"
#include "service.h"
#include "stats.h"

#define HTTP_MAX_TRUSTED 16
#define HTTP_API_ROUTES  32 /* room in the REST API's table (http_api.c) */

/* One route of the REST API: a verb and a path pattern for a method. */
typedef struct {
    const char *verb;     /* "GET", "POST", "PUT", "DELETE" (GET takes HEAD too) */
    const char *pattern;  /* "/api/user-tokens/{id}": {field} fills an input field */
    const char *rpc;      /* the TokenService method */
    unsigned status;      /* on success: 200, 201, 202 or 204 */
    const char *fixed;    /* "kind=service": fields the route sets, or NULL */
    const char *body;     /* the body's message: "" the input, "user" a field; NULL none */
    const char *location; /* 201: the created resource's path, filled from the answer */
    unsigned flags;
} http_api_route_t;

#define HTTP_API_PUBLIC       1u /* needs no credential */
#define HTTP_API_RATE_LIMITED 2u /* counted against the per-address limit */

typedef struct http_rate http_rate_t;

typedef struct {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits;
} http_cidr_t;

typedef struct {
    svc_t *svc;
    stats_t *stats;
    size_t max_header_bytes;    /* request line and headers */
    unsigned max_headers;       /* header fields */
    size_t max_body_bytes;      /* a request's body */
    uint64_t header_timeout_ms; /* from a request's first byte to its end */
    int access_log;             /* one info line per request */
    http_cidr_t trusted[HTTP_MAX_TRUSTED];
    int n_trusted;
    unsigned revoke_per_minute;         /* leak reports per client address */
    const char *ui_auth_header;         /* the page's user from a trusted proxy; NULL or "": off */
    const char *ui_frame_ancestors;     /* CSP frame-ancestors of the page; NULL: 'none' */
    disp_method_t verify;               /* resolved by http_cfg_init */
    disp_method_t api[HTTP_API_ROUTES]; /* the REST routes' methods, in table order */
    http_rate_t *rate;                  /* the leak reports' limiter (loop thread) */
} http_cfg_t;

/* Zeroes cfg, keeps svc and stats, resolves the methods of Verify and of
 * the REST routes, and makes the rate limiter; the limits and trusted
 * proxies are the caller's to set. http_cfg_destroy frees what init made,
 * once no listener uses cfg. */
int http_cfg_init(http_cfg_t *cfg, svc_t *svc, stats_t *stats);
void http_cfg_destroy(http_cfg_t *cfg);
/* The REST API's route table (static storage), for `patd routes` and
 * the test that holds docs/openapi.yaml to it. */
const http_api_route_t *http_api_routes(size_t *n);
/* Replaces the trusted proxies with a comma-separated CIDR list such as
 * "127.0.0.0/8,::1/128" (an address alone is one host). 0, or -1 with a
 * message in err. */
int http_set_trusted(http_cfg_t *cfg, const char *list, char *err, size_t errlen);
/* 1 if the address lies in a trusted proxy range. */
int http_is_trusted(const http_cfg_t *cfg, const struct sockaddr_storage *a);

extern const protocol_ops_t http_protocol;

#endif
