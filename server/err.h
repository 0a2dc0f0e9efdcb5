/* err: the one table of outcomes, and how each maps to the wire.
 *
 * Every handler, the dispatcher and the network layer speak pat_err_t. The
 * table below is the only place where an outcome gets its gRPC-style code,
 * its HTTP status and its stable `reason` word; docs/protocol.md lists the
 * same rows for clients. Storage, OpenSSL and errno failures are turned into
 * one of these at their module boundary and never travel further raw. */
#ifndef PAT_ERR_H
#define PAT_ERR_H

#include <stdint.h>

/* X(name, grpc code number, http status, reason) */
#define PAT_ERR_MAP(X)                                                                             \
    X(OK, 0, 200, "")                                                                              \
    X(BAD_FRAME, 3, 400, "bad_frame")                                                              \
    X(BAD_REQUEST, 3, 400, "bad_request")                                                          \
    X(INVALID_FIELD, 3, 400, "invalid_field")                                                      \
    X(FRAME_TOO_LARGE, 8, 413, "frame_too_large")                                                  \
    X(UNKNOWN_METHOD, 12, 501, "unknown_method")                                                   \
    X(NO_ROUTE, 5, 404, "no_route")                                                                \
    X(UNSUPPORTED_MEDIA_TYPE, 3, 415, "unsupported_media_type")                                    \
    X(RATE_LIMITED, 8, 429, "rate_limited")                                                        \
    X(MISSING_CREDENTIAL, 16, 401, "missing_credential")                                           \
    X(BAD_PLATFORM_KEY, 16, 401, "bad_platform_key")                                               \
    X(MALFORMED_TOKEN, 16, 401, "malformed_token")                                                 \
    X(UNKNOWN_TOKEN, 16, 401, "unknown_token")                                                     \
    X(EXPIRED, 16, 401, "expired")                                                                 \
    X(REVOKED, 16, 401, "revoked")                                                                 \
    X(USER_DEACTIVATED, 16, 401, "user_deactivated")                                               \
    X(SCIM_ONLY, 7, 403, "scim_only")                                                              \
    X(INSUFFICIENT_ROLE, 7, 403, "insufficient_role")                                              \
    X(PLATFORM_ONLY, 7, 403, "platform_only")                                                      \
    X(ADMIN_ONLY, 7, 403, "admin_only")                                                            \
    X(NOT_A_HUMAN, 7, 403, "service_user_caller")                                                  \
    X(CSRF, 7, 403, "csrf_token_invalid")                                                          \
    X(TOKEN_NOT_FOUND, 5, 404, "token_not_found")                                                  \
    X(USER_NOT_FOUND, 5, 404, "user_not_found")                                                    \
    X(DUPLICATE_NAME, 6, 409, "duplicate_name")                                                    \
    X(TOKEN_ACTIVE, 9, 400, "token_active")                                                        \
    X(HAS_ACTIVE_TOKENS, 9, 400, "has_active_tokens")                                              \
    X(USER_INACTIVE, 9, 400, "user_inactive")                                                      \
    X(TOO_MANY_CONNECTIONS, 8, 503, "too_many_connections")                                        \
    X(OVERLOADED, 8, 503, "overloaded")                                                            \
    X(SHUTTING_DOWN, 14, 503, "shutting_down")                                                     \
    X(STORAGE, 14, 503, "storage_unavailable")                                                     \
    X(INTERNAL, 13, 500, "internal")

typedef enum {
#define PAT_ERR_ENUM(name, code, http, reason) PAT_E_##name,
    PAT_ERR_MAP(PAT_ERR_ENUM)
#undef PAT_ERR_ENUM
        PAT_E__COUNT
} pat_err_t;

/* The gRPC code number (pat.v1.Code) of an outcome. */
uint32_t pat_err_code(pat_err_t e);
/* The matching HTTP status. */
uint32_t pat_err_http(pat_err_t e);
/* The stable reason word; "" for OK. Static storage, never freed. */
const char *pat_err_reason(pat_err_t e);
/* The enum name without prefix ("DUPLICATE_NAME"), for logs. */
const char *pat_err_name(pat_err_t e);

#endif
