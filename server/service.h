/* service: the TokenService methods, their authentication, authorization
 * and the token rules R1-R22 of docs/semantics.md.
 *
 * DESIGN. Handlers run on worker threads, any number at once. They are
 * invoked by the dispatcher through protobuf-c's generated service
 * (Pat__V1__TokenService_Service); closure_data is the svc_call_t of the
 * request. A handler either calls the closure with its response message
 * (which the closure packs before returning, so handlers may pass stack or
 * temporary messages) or sets call->err/message and calls the closure with
 * NULL. Every change is one store operation that checks its precondition
 * and makes the change as one step (store.h), so handlers take no locks;
 * the store tells the verification cache what changed before the change is
 * acknowledged (svc_init connects the two). The files of the service and
 * what each holds: svc_internal.h. */
#ifndef PAT_SERVICE_H
#define PAT_SERVICE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cache.h"
#include "err.h"
#include "pat/v1/pat.pb-c.h"
#include "stats.h"
#include "store.h"
#include "usage.h"

#define SVC_NAME_MAX      STORE_NAME_MAX /* bytes of UTF-8 (R6) */
#define SVC_USER_ID_MAX   STORE_ID_MAX
#define SVC_TEXT_MAX      STORE_TEXT_MAX /* user_name, name, email */
#define SVC_PATH_MAX      4096
#define SVC_EXPIRY_MAX    365 /* days (R7) */
#define SVC_PAGE_DEFAULT  100
#define SVC_PAGE_MAX      500
#define SVC_ACTIVITY_DEF  20
#define SVC_SCIM_PREFIXES 8
#define SVC_MESSAGE_MAX   256
#define SVC_PLATFORM_KEYS 2             /* current and next, during a rotation */
#define SVC_REVOKE_MAX    1000          /* credentials in one leak report, as GitHub's API */
#define SVC_LEAK_ACTOR    "leak_report" /* the actor of a revoke by leak report */
#define SVC_UI_SECRET_LEN                                                                          \
    43 /* a login code, session id or CSRF token: 32 random bytes, base64url */

typedef struct {
    Pat__V1__TokenService_Service base; /* first: handlers find svc_t from it */
    store_t *store;
    usage_t *usage;
    cache_t *cache; /* verification cache; owned by the caller of svc_init */
    stats_t *stats; /* the server's counters, for Health */
    /* The platform keys in force: one, or two during a rotation. Replaced
     * whole by svc_set_platform_keys; a set once in force is kept (not
     * freed, not wiped) until svc_destroy, since a worker may be comparing
     * against it. Compared in constant time, never logged. */
    _Atomic(struct svc_keys *) keys;
    struct svc_ui *ui;       /* login codes and sessions (svc_ui.c) */
    int platform_needs_cert; /* --platform-client-cert-required */
    struct svc_keys *retired;
    const char *scim_prefixes[SVC_SCIM_PREFIXES]; /* e.g. "/scim/v2", "/api/scim/v2" */
    int n_scim_prefixes;
    uint64_t start_mono_ms;
    uint8_t page_key[STORE_PAGE_KEY]; /* the store's: page tokens of any node on it */
} svc_t;

/* One request's context, owned by the dispatcher, passed as closure_data. */
typedef struct {
    svc_t *svc;
    const char *authorization; /* metadata "authorization", NULL if absent */
    const char *act_as;        /* metadata "x-act-as-user", NULL if absent */
    const char *client_ip;     /* the caller's address, NULL if unknown */
    /* A user the HTTP layer vouches for: a browser session of the Access
     * Tokens page, or --ui-auth-header from a trusted proxy. The framed
     * port never sets it. NULL if none. */
    const char *trusted_user;
    int peer_verified; /* the connection's TLS client certificate was verified */
    pat_err_t err;
    char message[SVC_MESSAGE_MAX];
    /* The dispatcher's closure hands the answer to emit while the handler's
     * message is still alive (handlers answer with stack messages). */
    void (*emit)(void *arg, const ProtobufCMessage *answer);
    void *emit_arg;
    int answered;
} svc_call_t;

/* ---------------------------------------------------------------- the page's logins
 *
 * svc_ui.c: login codes (CreateUiLink) and the browser sessions they
 * start, in memory, behind one mutex, from any thread. Codes and session
 * ids are kept only as SHA-256 hashes; a code works once. A session ends
 * at logout, at its lifetime, or the first time its user is found
 * deactivated (svc_caller). Sessions are this process's: a restart, or
 * another node, asks for a new login. */

/* Turns a code into a session: 0 with the session id, its CSRF token and
 * its end, or -1 for a code that is unknown, used or expired (and sid,
 * csrf untouched). */
int svc_ui_redeem(svc_t *svc, const char *code, char sid[SVC_UI_SECRET_LEN + 1],
                  char csrf[SVC_UI_SECRET_LEN + 1], int64_t *expires);
/* The live session sid: 0 with its user and CSRF token, else -1. */
int svc_ui_session(svc_t *svc, const char *sid, char user_id[SVC_USER_ID_MAX + 1],
                   char csrf[SVC_UI_SECRET_LEN + 1]);
void svc_ui_logout(svc_t *svc, const char *sid);
/* The CSRF token of a user signed in by the auth proxy's header: derived
 * from the user id with this process's key. */
void svc_ui_proxy_csrf(svc_t *svc, const char *user_id, char csrf[SVC_UI_SECRET_LEN + 1]);
/* Sets the lifetimes (main, from config.c's table). */
void svc_ui_set_ttl(svc_t *svc, uint64_t link_ms, uint64_t session_ms);

/* Initializes svc (takes ownership of platform_key, a malloc'd string of
 * one or two keys, one a line) and makes the store tell the cache of every
 * change. */
void svc_init(svc_t *svc, store_t *st, usage_t *usage, cache_t *cache, stats_t *stats,
              char *platform_key);
void svc_destroy(svc_t *svc);
/* Adds a SCIM path prefix such as "/scim/v2" (no trailing slash); the
 * string must outlive svc. Returns -1 when the table is full. */
int svc_add_scim_prefix(svc_t *svc, const char *prefix);
/* Puts new platform keys in force (takes ownership of keys, as svc_init);
 * from any thread. Returns how many keys are in force. */
int svc_set_platform_keys(svc_t *svc, char *keys);

/* Sets the call's error with a printf-style message. */
void svc_fail(svc_call_t *call, pat_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True if the call presents the platform key (and no act-as user). */
int svc_is_platform(svc_call_t *call);

/* The Verify fast path, run on the loop thread: answers from memory (the
 * verification cache, or the store's reads that need not wait) and returns
 * 1, or returns 0 without answering when the answer needs to wait for
 * storage, and the request goes to a worker. Never blocks. */
/* Batches of cold Verifies (conn_set_batch on a store that reads in
 * batches): reads what the Verifies of these bearer tokens will need, in
 * one store read, for the Verifies then run on this thread; done forgets
 * it. */
void svc_prefetch(svc_t *svc, const char *const *tokens, size_t n);
void svc_prefetch_done(svc_t *svc);
/* 1 unless the store is shared by a cluster and this node is catching up
 * or its lease ran out (/readyz, Health). */
int svc_cluster_ready(svc_t *svc);
int svc_verify_cached(svc_t *svc, const Pat__V1__VerifyRequest *in, svc_call_t *call,
                      Pat__V1__VerifyResponse_Closure done);

/* Prepared answers: a hot Verify without the cache's lookups or the
 * answer's encoding. The answer to a token's Verify is the same bytes until
 * the token or its user changes, but for this use's time; so when
 * svc_verify_cached succeeds from the cache alone, the emit function it
 * calls may hand its encoding of the answer to svc_prepare(), under the
 * front-end's form, with where the time of the use (last_used, a protobuf
 * varint of ms) is in it, or SIZE_MAX. Later Verifies of that token on this
 * thread are answered by svc_verify_prepared() with those bytes, the time
 * rewritten, after the same checks (fields, expiry, SCIM path, roles) on
 * what decided the answer, and the use recorded; it answers only while the
 * cache entries the answer was read from are unchanged (cache_mark_t), so
 * no change that is acknowledged is ever answered past. Anything else,
 * refusals included, returns 0 and takes svc_verify_cached's way. Both are
 * the loop thread's (the memo is per thread); the bytes are valid until the
 * thread's next Verify. */
/* One form per front-end: the framed port's packed VerifyResponse, and
 * /v1/verify's identity headers (no time in them). A token's forms share
 * its slot and its checks. */
typedef enum { SVC_FORM_FRAMED, SVC_FORM_HTTP, SVC_FORMS } svc_form_t;
typedef struct {
    const uint8_t *bytes;
    size_t len;
} svc_prepared_t;
void svc_prepare(svc_form_t form, const void *bytes, size_t len, size_t now_at);
int svc_verify_prepared(svc_t *svc, const Pat__V1__VerifyRequest *in, svc_form_t form,
                        svc_prepared_t *out);
#ifdef PATD_TEST_CLOCK
/* Tests only: this thread's prepared slots in `sets` sets (a power of two),
 * so that a test sees a set fill; 0 restores the number patd uses. */
void svc_prep_narrow(unsigned sets);
#endif

/* Exposed for unit tests and the fuzzer. */
/* Normalizes an API path (resolves ".", "..", "//", %2e, drops query and
 * fragment) into out; returns -1 if it is not an absolute path or escapes
 * the root. */
int svc_normalize_path(const char *in, char *out, size_t out_cap);
/* The same without the shortcut for paths already normal: the reference
 * the shortcut is tested against. */
int svc_normalize_path_general(const char *in, char *out, size_t out_cap);
/* 1 if path (normalized) lies under one of svc's SCIM prefixes. */
int svc_path_is_scim(const svc_t *svc, const char *path);
/* 1 if s (len bytes) is valid UTF-8 without C0 controls or DEL. */
int svc_valid_text(const char *s, size_t len);

#endif
