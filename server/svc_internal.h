/* svc_internal: what the service's files share, and nothing outside them.
 *
 * The service is split by concern, one file each:
 *   service.c       setup, Health, answers (wire messages from domain values),
 *                   the one mapping of store outcomes
 *   svc_auth.c      caller authentication: bearer tokens, platform keys, act-as
 *   svc_users.c     users (the platform's) and service users (an Admin's)
 *   svc_tokens.c    CreateToken, ListTokens, UpdateToken, DeleteToken
 *   svc_activity.c  ListTokenActivity
 *   svc_verify.c    Verify, on the loop thread or a worker
 *   svc_valid.c     validation: text, names, roles, paths, page tokens
 *   svc_ui.c        the Access Tokens page's login codes and sessions
 * Every handler has one error exit: it fails through svc_fail() and a
 * single `done(NULL, call)` at its end. */
#ifndef PAT_SVC_INTERNAL_H
#define PAT_SVC_INTERNAL_H

#include "service.h"
#include "token.h"

#define ROLE_MEMBER   PAT__V1__ROLE__ROLE_MEMBER
#define ROLE_ADMIN    PAT__V1__ROLE__ROLE_ADMIN
#define KIND_PERSONAL PAT__V1__TOKEN_KIND__TOKEN_KIND_PERSONAL
#define KIND_SERVICE  PAT__V1__TOKEN_KIND__TOKEN_KIND_SERVICE
#define TYPE_HUMAN    PAT__V1__USER_TYPE__USER_TYPE_HUMAN
#define TYPE_SERVICE  PAT__V1__USER_TYPE__USER_TYPE_SERVICE

/* Who is calling: the platform itself, or a user (through a Bearer token
 * or the platform acting for them). A plain value: nothing to free. */
typedef struct {
    int platform; /* platform key without x-act-as-user */
    store_user_t user;
    uint64_t token_id; /* the Bearer token that authenticated, 0 for the platform */
} svc_principal_t;

/* The platform keys in force (svc_t.keys). */
typedef struct svc_keys {
    struct svc_keys *next_retired;
    char *buf; /* the keys, NUL-separated */
    const char *key[SVC_PLATFORM_KEYS];
    size_t len[SVC_PLATFORM_KEYS];
    int n;
} svc_keys_t;

typedef struct svc_ui svc_ui_t;

static inline svc_t *svc_of(Pat__V1__TokenService_Service *service)
{
    return (svc_t *)service;
}

/* ---------------------------------------------------------------- service.c */

/* The one mapping of store outcomes that are failures of storage itself
 * (UNAVAILABLE, CORRUPT, anything unexpected) to the call's error; what
 * NOT_FOUND, EXISTS and CONFLICT mean is each operation's. */
void svc_store_fail(svc_call_t *call, store_status_t s, const char *what);
pat_err_t svc_store_err(store_status_t s);
/* Wire messages from domain values; strings point into the values. */
void svc_user_pb(const store_user_t *u, Pat__V1__User *out);
/* drained: the caller drained the usage buffers once for a page already.
 * owner may be NULL (then TokenInfo.user is left out). */
void svc_token_pb(svc_t *svc, const store_token_t *t, const store_user_t *owner, int64_t now,
                  int drained, Pat__V1__TokenInfo *ti, Pat__V1__User *owner_pb);
Pat__V1__TokenStatus svc_token_status(const store_token_t *t, int64_t now);
/* A lifecycle event of kind by actor at now. */
void svc_event(svc_t *svc, store_event_t *ev, int32_t kind, int64_t now, const char *actor);
const char *svc_role_name(int r);

/* ---------------------------------------------------------------- svc_auth.c */

/* Resolves a bearer token to its token and owner through the verification
 * cache, applying R11-R14 and R16/R18: *e is PAT_E_OK or why not (in *why).
 * try_only (the loop thread): on a cache miss, read storage only if it can
 * answer without waiting; returns 1 (nothing decided) if it declined, else
 * 0. */
/* hot (the loop thread's Verify, NULL elsewhere): in, the token's memo tag
 * (token_tag); out, whether the token and its user both came from the
 * cache, and their marks (cache.h) if they did. */
typedef struct {
    uint8_t tag[TOKEN_MEMO_TAG_BYTES];
    int hit;
    cache_mark_t tok, usr;
} svc_hot_t;
int svc_authenticate(svc_t *svc, const char *tok, int64_t now, int try_only, svc_hot_t *hot,
                     store_token_t *t, store_user_t *u, pat_err_t *e, const char **why);
/* Authenticates the caller. need_user: the method acts as a user, so the
 * platform must name one with x-act-as-user. 0, or -1 with call's error. */
int svc_caller(svc_call_t *call, svc_principal_t *p, int need_user);
int svc_require_platform(svc_call_t *call, svc_principal_t *p);
int svc_require_admin(svc_call_t *call, svc_principal_t *p);
/* Whether the caller may see a token of this kind and owner: personal
 * tokens their owner only (R3), service tokens Admins only (R4). */
int svc_may_see(const svc_principal_t *p, int32_t kind, const char *owner_id);
/* Loads a token the caller may see (R3, R4); anything else answers exactly
 * as a missing token. 0, or -1 with call's error. */
int svc_load_visible(svc_call_t *call, const svc_principal_t *p, uint64_t id, store_token_t *out);
void svc_keys_free(svc_keys_t *k);

/* ---------------------------------------------------------------- svc_valid.c */

/* A text field: required or not, at most max bytes, valid UTF-8 without
 * refused code points. 0, or -1 with call's error naming the field. */
int svc_check_text(svc_call_t *call, const char *field, const char *v, size_t max, int required);
int svc_valid_role(int r);
unsigned svc_page_size(uint32_t requested);
void svc_hex(const uint8_t *in, size_t n, char *out);
/* Page tokens: a store cursor sealed for one list (context names it: the
 * kind and owner of a token list, the type of a user list) with the
 * store's page key, so that only this store's patd made it and only for
 * this list. SVC_PAGE_TOKEN_MAX bytes with the NUL. */
#define SVC_PAGE_TOKEN_MAX (((16 + STORE_CURSOR_MAX + 16 + 2) / 3) * 4 + 1)
void svc_page_seal(const svc_t *svc, const char *context, const store_cursor_t *c, char *out);
/* "" opens to the start. 0, or -1 with call's error (INVALID_FIELD). */
int svc_page_open(svc_call_t *call, const char *context, const char *token, store_cursor_t *c);

/* ---------------------------------------------------------------- handlers */

void svc_health(Pat__V1__TokenService_Service *service, const Pat__V1__HealthRequest *in,
                Pat__V1__HealthResponse_Closure done, void *cd);
void svc_upsert_user(Pat__V1__TokenService_Service *service, const Pat__V1__UpsertUserRequest *in,
                     Pat__V1__User_Closure done, void *cd);
void svc_get_user(Pat__V1__TokenService_Service *service, const Pat__V1__GetUserRequest *in,
                  Pat__V1__User_Closure done, void *cd);
void svc_list_users(Pat__V1__TokenService_Service *service, const Pat__V1__ListUsersRequest *in,
                    Pat__V1__ListUsersResponse_Closure done, void *cd);
void svc_deactivate_user(Pat__V1__TokenService_Service *service,
                         const Pat__V1__DeactivateUserRequest *in, Pat__V1__User_Closure done,
                         void *cd);
void svc_activate_user(Pat__V1__TokenService_Service *service,
                       const Pat__V1__ActivateUserRequest *in, Pat__V1__User_Closure done,
                       void *cd);
void svc_create_service_user(Pat__V1__TokenService_Service *service,
                             const Pat__V1__CreateServiceUserRequest *in,
                             Pat__V1__User_Closure done, void *cd);
void svc_list_service_users(Pat__V1__TokenService_Service *service,
                            const Pat__V1__ListServiceUsersRequest *in,
                            Pat__V1__ListUsersResponse_Closure done, void *cd);
void svc_delete_service_user(Pat__V1__TokenService_Service *service,
                             const Pat__V1__DeleteServiceUserRequest *in,
                             Pat__V1__DeleteServiceUserResponse_Closure done, void *cd);
void svc_create_token(Pat__V1__TokenService_Service *service, const Pat__V1__CreateTokenRequest *in,
                      Pat__V1__CreateTokenResponse_Closure done, void *cd);
void svc_list_tokens(Pat__V1__TokenService_Service *service, const Pat__V1__ListTokensRequest *in,
                     Pat__V1__ListTokensResponse_Closure done, void *cd);
void svc_update_token(Pat__V1__TokenService_Service *service, const Pat__V1__UpdateTokenRequest *in,
                      Pat__V1__TokenInfo_Closure done, void *cd);
void svc_delete_token(Pat__V1__TokenService_Service *service, const Pat__V1__DeleteTokenRequest *in,
                      Pat__V1__DeleteTokenResponse_Closure done, void *cd);
void svc_get_token(Pat__V1__TokenService_Service *service, const Pat__V1__GetTokenRequest *in,
                   Pat__V1__TokenInfo_Closure done, void *cd);
void svc_get_current_token(Pat__V1__TokenService_Service *service,
                           const Pat__V1__GetCurrentTokenRequest *in,
                           Pat__V1__TokenInfo_Closure done, void *cd);
void svc_revoke_credentials(Pat__V1__TokenService_Service *service,
                            const Pat__V1__RevokeCredentialsRequest *in,
                            Pat__V1__RevokeCredentialsResponse_Closure done, void *cd);
/* ---------------------------------------------------------------- svc_ui.c */

svc_ui_t *svc_ui_new(void);
void svc_ui_free(svc_ui_t *ui);
/* Ends every session of the user (found deactivated). */
void svc_ui_end_user(svc_t *svc, const char *user_id);
void svc_create_ui_link(Pat__V1__TokenService_Service *service,
                        const Pat__V1__CreateUiLinkRequest *in,
                        Pat__V1__CreateUiLinkResponse_Closure done, void *cd);

void svc_list_token_activity(Pat__V1__TokenService_Service *service,
                             const Pat__V1__ListTokenActivityRequest *in,
                             Pat__V1__ListTokenActivityResponse_Closure done, void *cd);
void svc_verify(Pat__V1__TokenService_Service *service, const Pat__V1__VerifyRequest *in,
                Pat__V1__VerifyResponse_Closure done, void *cd);

#endif
