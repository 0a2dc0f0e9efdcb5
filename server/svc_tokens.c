/* svc_tokens: CreateToken, ListTokens, GetToken, GetCurrentToken,
 * UpdateToken (revoke and restore), DeleteToken and RevokeCredentials
 * (leaked tokens reported by value): the token rules R1-R10 and R16-R19. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "svc_internal.h"
#include "token.h"
#include "wire.h"

/* The request's kind and owner, checked against the caller (R1, R4). */
static int svc_create_owner(svc_call_t *call, const Pat__V1__CreateTokenRequest *in,
                            const svc_principal_t *p, int *kind, const char **owner_id)
{
    *kind = in->kind ? in->kind : KIND_PERSONAL;
    *owner_id = p->user.user_id;
    if (*kind != KIND_PERSONAL && *kind != KIND_SERVICE) {
        svc_fail(call, PAT_E_INVALID_FIELD, "kind %d is not a TokenKind", in->kind);
        return -1;
    }
    if (*kind == KIND_PERSONAL && in->service_user_id[0]) {
        svc_fail(call, PAT_E_INVALID_FIELD, "service_user_id is only for kind SERVICE");
        return -1;
    }
    if ((*kind == KIND_SERVICE || in->scim_endpoints_only) && p->user.role < ROLE_ADMIN) {
        svc_fail(call, PAT_E_ADMIN_ONLY, "%s tokens need the admin role",
                 *kind == KIND_SERVICE ? "service" : "SCIM");
        return -1;
    }
    if (*kind == KIND_PERSONAL && p->user.user_type == TYPE_SERVICE) {
        svc_fail(call, PAT_E_NOT_A_HUMAN,
                 "a service user has no personal tokens; an Admin creates its service tokens");
        return -1;
    }
    if (*kind == KIND_SERVICE) {
        if (in->service_user_id[0] == '\0') {
            svc_fail(call, PAT_E_INVALID_FIELD, "service_user_id is required for kind SERVICE");
            return -1;
        }
        *owner_id = in->service_user_id;
    }
    return 0;
}

void svc_create_token(Pat__V1__TokenService_Service *service, const Pat__V1__CreateTokenRequest *in,
                      Pat__V1__CreateTokenResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_user_t owner;
    char secret[TOKEN_MAX_LEN + 1] = "";
    int kind;
    const char *owner_id;
    if (svc_caller(call, &p, 1) != 0 || svc_check_text(call, "name", in->name, SVC_NAME_MAX, 1))
        goto fail;
    int has_expiry = in->expiry_case == PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY_EXPIRES_IN_DAYS;
    if (has_expiry && (in->expires_in_days < 1 || in->expires_in_days > SVC_EXPIRY_MAX)) {
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "expires_in_days must be 1..%d, or unset for a token that never expires; "
                 "got %d",
                 SVC_EXPIRY_MAX, in->expires_in_days);
        goto fail;
    }
    if (svc_create_owner(call, in, &p, &kind, &owner_id) != 0) goto fail;
    owner = p.user;
    /* A service token's owner must be a service user: user types never
     * change, so this read stays true; the store checks the rest. */
    store_status_t s =
        kind == KIND_SERVICE ? store_user_get(svc->store, owner_id, &owner) : STORE_OK;
    if (s == STORE_OK && kind == KIND_SERVICE && owner.user_type != TYPE_SERVICE)
        s = STORE_NOT_FOUND;
    token_prefix_t prefix = in->scim_endpoints_only ? TOKEN_PREFIX_SCIM
                            : kind == KIND_SERVICE  ? TOKEN_PREFIX_SERVICE
                                                    : TOKEN_PREFIX_PERSONAL;
    if (s == STORE_OK && token_generate(prefix, secret) != 0) {
        svc_fail(call, PAT_E_INTERNAL, "random generator failed");
        goto fail;
    }
    int64_t now = clock_now_ms();
    store_token_t t = {.kind = kind,
                       .scim = in->scim_endpoints_only,
                       .active = 1,
                       .created = now,
                       .expiration =
                           has_expiry ? now + (int64_t)in->expires_in_days * 86400000 : 0};
    snprintf(t.name, sizeof(t.name), "%s", in->name);
    snprintf(t.owner_id, sizeof(t.owner_id), "%s", owner_id);
    snprintf(t.created_by, sizeof(t.created_by), "%s", p.user.user_id);
    token_hash(secret, strlen(secret), t.hash);
    store_event_t ev;
    svc_event(svc, &ev, STORE_EVENT_CREATED, now, p.user.user_id);
    if (s == STORE_OK) s = store_token_create(svc->store, &t, &ev);
    switch (s) {
    case STORE_OK:
        break;
    case STORE_NOT_FOUND:
        svc_fail(call, PAT_E_USER_NOT_FOUND, "no service user %s", owner_id);
        goto fail;
    case STORE_CONFLICT:
        svc_fail(call, PAT_E_USER_INACTIVE, "%s %s is deactivated",
                 kind == KIND_SERVICE ? "service user" : "user", owner_id);
        goto fail;
    case STORE_EXISTS:
        svc_fail(call, PAT_E_DUPLICATE_NAME, "a token named '%.*s' already exists for %s",
                 (int)wire_utf8_cut(in->name, 64), in->name,
                 kind == KIND_SERVICE ? "this service user" : "this user");
        goto fail;
    default:
        svc_store_fail(call, s, "writing the token");
        goto fail;
    }
    usage_note_rows(svc->usage, t.id, 1);
    log_info("event=token_created id=%llu kind=%s scim=%d owner=%s by=%s", (unsigned long long)t.id,
             kind == KIND_SERVICE ? "service" : "personal", t.scim, owner_id, p.user.user_id);
    Pat__V1__CreateTokenResponse r = PAT__V1__CREATE_TOKEN_RESPONSE__INIT;
    Pat__V1__TokenInfo ti;
    Pat__V1__User owner_pb;
    svc_token_pb(svc, &t, &owner, now, 0, &ti, &owner_pb);
    r.token = &ti;
    r.bearer_token = secret;
    done(&r, call);
    explicit_bzero(secret, sizeof(secret));
    return;
fail:
    explicit_bzero(secret, sizeof(secret));
    done(NULL, call);
}

/* The owner a ListTokens request lists (NULL: every service user's). */
static int svc_list_owner(svc_call_t *call, const Pat__V1__ListTokensRequest *in,
                          const svc_principal_t *p, int *kind, const char **owner)
{
    *kind = in->kind ? in->kind : KIND_PERSONAL;
    if (*kind == KIND_PERSONAL) {
        *owner = p->user.user_id;
        if (in->service_user_id[0]) {
            svc_fail(call, PAT_E_INVALID_FIELD, "service_user_id is only for kind SERVICE");
            return -1;
        }
        if (p->user.user_type == TYPE_SERVICE) {
            svc_fail(call, PAT_E_NOT_A_HUMAN, "a service user has no personal tokens");
            return -1;
        }
        return 0;
    }
    if (*kind != KIND_SERVICE) {
        svc_fail(call, PAT_E_INVALID_FIELD, "kind is not a TokenKind");
        return -1;
    }
    if (p->user.role < ROLE_ADMIN) {
        svc_fail(call, PAT_E_ADMIN_ONLY, "listing service tokens needs the admin role");
        return -1;
    }
    *owner = in->service_user_id[0] ? in->service_user_id : NULL;
    return 0;
}

void svc_list_tokens(Pat__V1__TokenService_Service *service, const Pat__V1__ListTokensRequest *in,
                     Pat__V1__ListTokensResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    int kind;
    const char *owner;
    store_token_t *toks = NULL;
    store_user_t *owners = NULL;
    Pat__V1__TokenInfo *infos = NULL;
    Pat__V1__TokenInfo **ptrs = NULL;
    Pat__V1__User *users = NULL;
    if (svc_caller(call, &p, 1) != 0 || svc_list_owner(call, in, &p, &kind, &owner) != 0) goto fail;
    char context[16 + STORE_ID_MAX];
    snprintf(context, sizeof(context), "tokens:%d:%s", kind, owner ? owner : "*");
    store_cursor_t after, next;
    if (svc_page_open(call, context, in->page_token, &after) != 0) goto fail;
    unsigned want = svc_page_size(in->page_size), n = 0;
    int more = 0;
    toks = calloc(want, sizeof(*toks));
    owners = calloc(want, sizeof(*owners));
    infos = calloc(want, sizeof(*infos));
    ptrs = calloc(want, sizeof(*ptrs));
    users = calloc(want, sizeof(*users));
    if (!toks || !owners || !infos || !ptrs || !users) abort();
    store_status_t s =
        store_tokens_list(svc->store, kind, owner, &after, want, toks, &n, &more, &next);
    /* Owners come in runs (list order): one read per run. */
    const store_user_t *cur = NULL;
    for (unsigned i = 0; s == STORE_OK && i < n; i++) {
        if (cur && strcmp(cur->user_id, toks[i].owner_id) == 0) continue;
        store_status_t us = store_user_get(svc->store, toks[i].owner_id, &owners[i]);
        if (us != STORE_OK && us != STORE_NOT_FOUND) s = us;
        cur = us == STORE_OK ? &owners[i] : NULL;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "listing tokens");
        goto fail;
    }
    usage_drain(svc->usage); /* once for the page: every use recorded before the list */
    int64_t now = clock_now_ms();
    cur = NULL;
    for (unsigned i = 0; i < n; i++) {
        if (owners[i].user_id[0] || !cur || strcmp(cur->user_id, toks[i].owner_id) != 0)
            cur = owners[i].user_id[0] ? &owners[i] : NULL;
        svc_token_pb(svc, &toks[i], cur, now, 1, &infos[i], &users[i]);
        ptrs[i] = &infos[i];
    }
    char token[SVC_PAGE_TOKEN_MAX];
    svc_page_seal(svc, context, more ? &next : &(store_cursor_t){0}, token);
    Pat__V1__ListTokensResponse r = PAT__V1__LIST_TOKENS_RESPONSE__INIT;
    r.n_tokens = n;
    r.tokens = ptrs;
    r.next_page_token = token;
    done(&r, call);
    goto out;
fail:
    done(NULL, call);
out:
    free(toks);
    free(owners);
    free(infos);
    free(ptrs);
    free(users);
}

/* A token as its TokenInfo, with its owner as it is now. */
static void svc_answer_token(svc_t *svc, const store_token_t *t, int64_t now,
                             Pat__V1__TokenInfo_Closure done, svc_call_t *call)
{
    store_user_t owner;
    int have_owner = store_user_get(svc->store, t->owner_id, &owner) == STORE_OK;
    Pat__V1__TokenInfo ti;
    Pat__V1__User owner_pb;
    svc_token_pb(svc, t, have_owner ? &owner : NULL, now, 0, &ti, &owner_pb);
    done(&ti, call);
}

void svc_get_token(Pat__V1__TokenService_Service *service, const Pat__V1__GetTokenRequest *in,
                   Pat__V1__TokenInfo_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_token_t t;
    /* R3: someone else's personal token is "no token", as a missing id. */
    if (svc_caller(call, &p, 1) != 0 || svc_load_visible(call, &p, in->id, &t) != 0) goto fail;
    svc_answer_token(svc, &t, clock_now_ms(), done, call);
    return;
fail:
    done(NULL, call);
}

void svc_get_current_token(Pat__V1__TokenService_Service *service,
                           const Pat__V1__GetCurrentTokenRequest *in,
                           Pat__V1__TokenInfo_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_token_t t;
    (void)in;
    if (svc_caller(call, &p, 1) != 0) goto fail;
    if (p.token_id == 0) {
        svc_fail(call, PAT_E_BAD_REQUEST,
                 "GetCurrentToken describes the Bearer token of the call; the platform key "
                 "is not a token");
        goto fail;
    }
    store_status_t s = store_token_get(svc->store, p.token_id, &t);
    if (s == STORE_NOT_FOUND) {
        /* Deleted between authentication and this read. */
        svc_fail(call, PAT_E_UNKNOWN_TOKEN, "caller's token is not known (deleted)");
        goto fail;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "reading the token");
        goto fail;
    }
    svc_answer_token(svc, &t, clock_now_ms(), done, call);
    return;
fail:
    done(NULL, call);
}

void svc_update_token(Pat__V1__TokenService_Service *service, const Pat__V1__UpdateTokenRequest *in,
                      Pat__V1__TokenInfo_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_token_t t;
    if (svc_caller(call, &p, 1) != 0 || svc_load_visible(call, &p, in->id, &t) != 0) goto fail;
    int64_t now = clock_now_ms();
    int active = !in->revoke, changed = 0;
    store_event_t ev;
    svc_event(svc, &ev, active ? STORE_EVENT_RESTORED : STORE_EVENT_REVOKED, now, p.user.user_id);
    /* R17/R18: restore of an expired token is accepted and flips `active`;
     * expiration is untouched, so it stays expired. The store tells the
     * cache before it returns, so no later Verify sees the old state (R16). */
    store_status_t s = store_token_set_active(svc->store, in->id, active, &ev, &t, &changed);
    if (s == STORE_NOT_FOUND) {
        svc_fail(call, PAT_E_TOKEN_NOT_FOUND, "no token %llu", (unsigned long long)in->id);
        goto fail;
    }
    if (s == STORE_CONFLICT) {
        /* A restore while the owner is deactivated would bring an old token
         * back the moment the owner is activated, without anyone issuing
         * one (CreateToken refuses the same owner: user_inactive). */
        svc_fail(call, PAT_E_USER_INACTIVE,
                 "the token's user is deactivated: activate the user before restoring");
        goto fail;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "writing the token");
        goto fail;
    }
    if (changed) {
        usage_note_rows(svc->usage, t.id, 1);
        log_info("event=token_%s id=%llu by=%s", active ? "restored" : "revoked",
                 (unsigned long long)t.id, p.user.user_id);
    }
    svc_answer_token(svc, &t, now, done, call);
    return;
fail:
    done(NULL, call);
}

void svc_delete_token(Pat__V1__TokenService_Service *service, const Pat__V1__DeleteTokenRequest *in,
                      Pat__V1__DeleteTokenResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_token_t t;
    if (svc_caller(call, &p, 1) != 0 || svc_load_visible(call, &p, in->id, &t) != 0) goto fail;
    store_event_t ev;
    svc_event(svc, &ev, STORE_EVENT_DELETED, clock_now_ms(), p.user.user_id);
    /* Holding the usage flush across the delete keeps a flush from writing
     * rows of the token after it. */
    usage_hold(svc->usage);
    store_status_t s = store_token_delete(svc->store, in->id, ev.time, &ev, &t);
    if (s == STORE_OK) usage_forget(svc->usage, t.id);
    usage_release(svc->usage);
    if (s == STORE_NOT_FOUND) {
        svc_fail(call, PAT_E_TOKEN_NOT_FOUND, "no token %llu", (unsigned long long)in->id);
        goto fail;
    }
    if (s == STORE_CONFLICT) {
        svc_fail(call, PAT_E_TOKEN_ACTIVE, "token %llu is active: revoke it first",
                 (unsigned long long)in->id);
        goto fail;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "deleting the token");
        goto fail;
    }
    log_info("event=token_deleted id=%llu owner=%s by=%s", (unsigned long long)t.id, t.owner_id,
             p.user.user_id);
    Pat__V1__DeleteTokenResponse r = PAT__V1__DELETE_TOKEN_RESPONSE__INIT;
    done(&r, call);
    return;
fail:
    done(NULL, call);
}

/* ---------------------------------------------------------------- leaks */

void svc_revoke_credentials(Pat__V1__TokenService_Service *service,
                            const Pat__V1__RevokeCredentialsRequest *in,
                            Pat__V1__RevokeCredentialsResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    if (in->n_credentials > SVC_REVOKE_MAX) {
        svc_fail(call, PAT_E_INVALID_FIELD, "credentials: at most %d in one report",
                 SVC_REVOKE_MAX);
        goto fail;
    }
    unsigned revoked = 0, failed = 0;
    for (size_t i = 0; i < in->n_credentials; i++) {
        const char *c = in->credentials[i];
        /* Anything that is not a well-formed patd token is skipped without
         * a lookup: the checksum lets a scanner (and this loop) tell ours
         * from noise offline. */
        uint8_t hash[TOKEN_HASH_BYTES];
        if (token_check_hash(c, strlen(c), 0, hash) != 0) continue;
        store_token_t t;
        store_status_t s = store_token_get_by_hash(svc->store, hash, &t);
        if (s != STORE_OK || !token_ct_equal(t.hash, hash, TOKEN_HASH_BYTES)) {
            if (s != STORE_OK && s != STORE_NOT_FOUND) failed++;
            continue;
        }
        int64_t now = clock_now_ms();
        if (!t.active || (t.expiration != 0 && now >= t.expiration)) continue;
        store_event_t ev;
        svc_event(svc, &ev, STORE_EVENT_REVOKED, now, SVC_LEAK_ACTOR);
        snprintf(ev.client_ip, sizeof(ev.client_ip), "%s", call->client_ip ? call->client_ip : "");
        int changed = 0;
        s = store_token_set_active(svc->store, t.id, 0, &ev, &t, &changed);
        if (s != STORE_OK) {
            failed++;
            continue;
        }
        if (changed) {
            revoked++;
            usage_note_rows(svc->usage, t.id, 1);
            log_info("event=token_revoked id=%llu by=%s reporter=%s", (unsigned long long)t.id,
                     SVC_LEAK_ACTOR, ev.client_ip);
        }
    }
    /* The reporter learns nothing either way; the operator learns how many. */
    if (in->n_credentials)
        log_info("event=leak_report credentials=%zu revoked=%u failed=%u reporter=%s",
                 in->n_credentials, revoked, failed, call->client_ip ? call->client_ip : "");
    if (failed) {
        /* Storage failed on a token that may have leaked: say so, so the
         * reporter retries, rather than claim it was handled. */
        svc_fail(call, PAT_E_STORAGE, "storage unavailable; report again later");
        goto fail;
    }
    Pat__V1__RevokeCredentialsResponse r = PAT__V1__REVOKE_CREDENTIALS_RESPONSE__INIT;
    done(&r, call);
    return;
fail:
    done(NULL, call);
}
