/* svc_users: users, which the platform manages (UpsertUser, GetUser,
 * ListUsers, (De)ActivateUser), and service users, which an Admin makes
 * and deletes with their tokens (R4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "svc_internal.h"
#include "token.h"

static void svc_answer_user(svc_call_t *call, const store_user_t *u, Pat__V1__User_Closure done)
{
    Pat__V1__User pb;
    svc_user_pb(u, &pb);
    done(&pb, call);
}

/* Every change is logged: which fields changed, not their values (names
 * and addresses are personal data, and the log is not the place). */
static void svc_log_upsert(const store_user_t *prev, const store_user_t *now)
{
    if (prev->user_id[0] == '\0') {
        log_info("event=user_created user_id=%s role=%s by=platform", now->user_id,
                 svc_role_name(now->role));
        return;
    }
    if (prev->role != now->role)
        log_info("event=role_changed user_id=%s from=%s to=%s", now->user_id,
                 svc_role_name(prev->role), svc_role_name(now->role));
    int un = strcmp(prev->user_name, now->user_name) != 0;
    int nm = strcmp(prev->name, now->name) != 0;
    int em = strcmp(prev->email, now->email) != 0;
    if (un || nm || em)
        log_info("event=user_updated user_id=%s fields=%s%s%s", now->user_id,
                 un ? "user_name," : "", nm ? "name," : "", em ? "email," : "");
}

static int svc_check_user(svc_call_t *call, const Pat__V1__User *u)
{
    if (u == NULL) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user is required");
        return -1;
    }
    if (svc_check_text(call, "user.user_id", u->user_id, SVC_USER_ID_MAX, 1) ||
        svc_check_text(call, "user.user_name", u->user_name, SVC_TEXT_MAX, 0) ||
        svc_check_text(call, "user.email", u->email, SVC_TEXT_MAX, 0) ||
        svc_check_text(call, "user.name", u->name, SVC_TEXT_MAX, 0))
        return -1;
    if (!svc_valid_role(u->role)) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user.role %d is not a Role", u->role);
        return -1;
    }
    if (u->user_type == TYPE_SERVICE) {
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "user.user_type SERVICE: service users are made by an Admin with "
                 "CreateServiceUser");
        return -1;
    }
    if (u->user_type != TYPE_HUMAN && u->user_type != PAT__V1__USER_TYPE__USER_TYPE_UNSPECIFIED) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user.user_type %d is not a UserType", u->user_type);
        return -1;
    }
    return 0;
}

void svc_upsert_user(Pat__V1__TokenService_Service *service, const Pat__V1__UpsertUserRequest *in,
                     Pat__V1__User_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    if (svc_require_platform(call, &p) != 0 || svc_check_user(call, in->user) != 0) goto fail;
    const Pat__V1__User *w = in->user;
    store_user_t u = {.role = w->role, .user_type = TYPE_HUMAN, .active = 1};
    snprintf(u.user_id, sizeof(u.user_id), "%s", w->user_id);
    snprintf(u.user_name, sizeof(u.user_name), "%s", w->user_name);
    snprintf(u.email, sizeof(u.email), "%s", w->email);
    snprintf(u.name, sizeof(u.name), "%s", w->name);
    snprintf(u.created_by, sizeof(u.created_by), "platform");
    u.created = clock_now_ms();
    store_user_t now, prev;
    store_status_t s = store_user_upsert(svc->store, &u, &now, &prev);
    if (s == STORE_CONFLICT) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user %s is a service user; its Admins manage it",
                 u.user_id);
        goto fail;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "writing the user");
        goto fail;
    }
    svc_log_upsert(&prev, &now);
    svc_answer_user(call, &now, done);
    return;
fail:
    done(NULL, call);
}

void svc_get_user(Pat__V1__TokenService_Service *service, const Pat__V1__GetUserRequest *in,
                  Pat__V1__User_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_user_t u;
    if (svc_caller(call, &p, 0) != 0) goto fail;
    store_status_t s = store_user_get(svc->store, in->user_id, &u);
    if (s != STORE_OK && s != STORE_NOT_FOUND) {
        svc_store_fail(call, s, "reading the user");
        goto fail;
    }
    /* The platform sees everyone; a user sees themself; an Admin also sees
     * service users. Anyone else is told the user does not exist. */
    int visible = s == STORE_OK && (p.platform || strcmp(u.user_id, p.user.user_id) == 0 ||
                                    (p.user.role >= ROLE_ADMIN && u.user_type == TYPE_SERVICE));
    if (in->user_type && s == STORE_OK && u.user_type != (int32_t)in->user_type) visible = 0;
    if (!visible) {
        svc_fail(call, PAT_E_USER_NOT_FOUND, "no user %s", in->user_id);
        goto fail;
    }
    svc_answer_user(call, &u, done);
    return;
fail:
    done(NULL, call);
}

/* One page of users of a type (0: all). */
static void svc_list_users_page(svc_call_t *call, int type, uint32_t page_size,
                                const char *page_token, Pat__V1__ListUsersResponse_Closure done)
{
    svc_t *svc = call->svc;
    char context[16];
    snprintf(context, sizeof(context), "users:%d", type);
    store_cursor_t after, next;
    unsigned want = svc_page_size(page_size), n = 0;
    int more = 0;
    store_user_t *users = NULL;
    Pat__V1__User *pbs = NULL;
    Pat__V1__User **ptrs = NULL;
    if (svc_page_open(call, context, page_token, &after) != 0) goto fail;
    users = calloc(want, sizeof(*users));
    pbs = calloc(want, sizeof(*pbs));
    ptrs = calloc(want, sizeof(*ptrs));
    if (!users || !pbs || !ptrs) abort();
    store_status_t s = store_users_list(svc->store, type, &after, want, users, &n, &more, &next);
    if (s != STORE_OK) {
        svc_store_fail(call, s, "listing users");
        goto fail;
    }
    for (unsigned i = 0; i < n; i++) {
        svc_user_pb(&users[i], &pbs[i]);
        ptrs[i] = &pbs[i];
    }
    char token[SVC_PAGE_TOKEN_MAX];
    svc_page_seal(svc, context, more ? &next : &(store_cursor_t){0}, token);
    Pat__V1__ListUsersResponse r = PAT__V1__LIST_USERS_RESPONSE__INIT;
    r.n_users = n;
    r.users = ptrs;
    r.next_page_token = token;
    done(&r, call);
    free(users);
    free(pbs);
    free(ptrs);
    return;
fail:
    free(users);
    free(pbs);
    free(ptrs);
    done(NULL, call);
}

void svc_list_users(Pat__V1__TokenService_Service *service, const Pat__V1__ListUsersRequest *in,
                    Pat__V1__ListUsersResponse_Closure done, void *cd)
{
    svc_call_t *call = cd;
    svc_principal_t p;
    (void)service;
    if (svc_require_platform(call, &p) != 0) goto fail;
    if (in->user_type < 0 || in->user_type > TYPE_SERVICE) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user_type %d is not a UserType", in->user_type);
        goto fail;
    }
    svc_list_users_page(call, in->user_type, in->page_size, in->page_token, done);
    return;
fail:
    done(NULL, call);
}

/* type: when not 0, only a user of that type is found (the request's
 * user_type). */
static void svc_set_active(Pat__V1__TokenService_Service *service, const char *user_id, int type,
                           int active, Pat__V1__User_Closure done, svc_call_t *call)
{
    svc_t *svc = svc_of(service);
    svc_principal_t p;
    store_user_t u;
    if (svc_caller(call, &p, 0) != 0) goto fail;
    /* The platform manages every user; an Admin manages service users. A
     * caller who may manage nobody gets one answer before any lookup, and
     * an Admin gets the same answer for a human as for no user: neither
     * learns which user ids exist. */
    if (!p.platform && p.user.role < ROLE_ADMIN) {
        svc_fail(call, PAT_E_ADMIN_ONLY,
                 "managing users needs the platform principal (service users: the admin role)");
        goto fail;
    }
    store_status_t s = store_user_get(svc->store, user_id, &u);
    if (!p.platform && (s == STORE_NOT_FOUND || (s == STORE_OK && u.user_type != TYPE_SERVICE))) {
        svc_fail(call, PAT_E_USER_NOT_FOUND, "no service user %s", user_id);
        goto fail;
    }
    if (type && s == STORE_OK && u.user_type != type) s = STORE_NOT_FOUND;
    unsigned n_active = 0;
    int was = s == STORE_OK ? u.active : -1;
    /* A service user is deactivated only once none of its tokens works;
     * a human's tokens stop with it (R14). */
    if (s == STORE_OK)
        s = store_user_set_active(svc->store, user_id, active,
                                  !active && u.user_type == TYPE_SERVICE, clock_now_ms(), &u,
                                  &n_active);
    if (s == STORE_NOT_FOUND) {
        svc_fail(call, PAT_E_USER_NOT_FOUND, "no user %s", user_id);
        goto fail;
    }
    if (s == STORE_CONFLICT) {
        svc_fail(call, PAT_E_HAS_ACTIVE_TOKENS,
                 "service user %s still has %u active token(s): revoke them first", user_id,
                 n_active);
        goto fail;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "writing the user");
        goto fail;
    }
    if (was != active)
        log_info("event=%s user_id=%s", active ? "user_activated" : "user_deactivated", user_id);
    svc_answer_user(call, &u, done);
    return;
fail:
    done(NULL, call);
}

void svc_deactivate_user(Pat__V1__TokenService_Service *service,
                         const Pat__V1__DeactivateUserRequest *in, Pat__V1__User_Closure done,
                         void *cd)
{
    svc_set_active(service, in->user_id, in->user_type, 0, done, cd);
}

void svc_activate_user(Pat__V1__TokenService_Service *service,
                       const Pat__V1__ActivateUserRequest *in, Pat__V1__User_Closure done, void *cd)
{
    svc_set_active(service, in->user_id, in->user_type, 1, done, cd);
}

/* ---------------------------------------------------------------- service users */

void svc_create_service_user(Pat__V1__TokenService_Service *service,
                             const Pat__V1__CreateServiceUserRequest *in,
                             Pat__V1__User_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    if (svc_require_admin(call, &p) != 0) goto fail;
    if (svc_check_text(call, "user_name", in->user_name, SVC_TEXT_MAX, 1) ||
        svc_check_text(call, "name", in->name, SVC_TEXT_MAX, 0) ||
        svc_check_text(call, "email", in->email, SVC_TEXT_MAX, 0))
        goto fail;
    if (!svc_valid_role(in->role)) {
        svc_fail(call, PAT_E_INVALID_FIELD, "role %d is not a Role", in->role);
        goto fail;
    }
    store_user_t u = {.role = in->role ? in->role : ROLE_MEMBER,
                      .user_type = TYPE_SERVICE,
                      .active = 1,
                      .created = clock_now_ms()};
    uint8_t rnd[8];
    if (token_random(rnd, sizeof(rnd)) != 0) {
        svc_fail(call, PAT_E_INTERNAL, "random generator failed");
        goto fail;
    }
    memcpy(u.user_id, "svc_", 4);
    svc_hex(rnd, sizeof(rnd), u.user_id + 4);
    snprintf(u.user_name, sizeof(u.user_name), "%s", in->user_name);
    snprintf(u.name, sizeof(u.name), "%s", in->name);
    snprintf(u.email, sizeof(u.email), "%s", in->email);
    snprintf(u.created_by, sizeof(u.created_by), "%s", p.user.user_id);
    store_status_t s = store_user_create(svc->store, &u);
    if (s != STORE_OK) { /* EXISTS: 64 random bits met a service user's; retrying is the fix */
        svc_store_fail(call, s == STORE_EXISTS ? STORE_UNAVAILABLE : s, "writing the service user");
        goto fail;
    }
    log_info("event=service_user_created user_id=%s by=%s", u.user_id, p.user.user_id);
    svc_answer_user(call, &u, done);
    return;
fail:
    done(NULL, call);
}

void svc_list_service_users(Pat__V1__TokenService_Service *service,
                            const Pat__V1__ListServiceUsersRequest *in,
                            Pat__V1__ListUsersResponse_Closure done, void *cd)
{
    svc_call_t *call = cd;
    svc_principal_t p;
    (void)service;
    if (svc_require_admin(call, &p) != 0) goto fail;
    svc_list_users_page(call, TYPE_SERVICE, in->page_size, in->page_token, done);
    return;
fail:
    done(NULL, call);
}

void svc_delete_service_user(Pat__V1__TokenService_Service *service,
                             const Pat__V1__DeleteServiceUserRequest *in,
                             Pat__V1__DeleteServiceUserResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_user_t u;
    if (svc_require_admin(call, &p) != 0) goto fail;
    store_status_t s = store_user_get(svc->store, in->user_id, &u);
    if (s == STORE_OK && u.user_type != TYPE_SERVICE) s = STORE_NOT_FOUND;
    store_event_t ev;
    svc_event(svc, &ev, STORE_EVENT_DELETED, clock_now_ms(), p.user.user_id);
    unsigned n_active = 0;
    uint64_t *ids = NULL;
    size_t n_ids = 0;
    /* Holding the usage flush across the delete keeps a flush from writing
     * rows of the tokens after them. */
    usage_hold(svc->usage);
    if (s == STORE_OK)
        s = store_user_delete(svc->store, in->user_id, ev.time, &ev, &n_active, &ids, &n_ids);
    for (size_t i = 0; s == STORE_OK && i < n_ids; i++)
        usage_forget(svc->usage, ids[i]);
    usage_release(svc->usage);
    free(ids);
    if (s == STORE_NOT_FOUND) {
        svc_fail(call, PAT_E_USER_NOT_FOUND, "no service user %s", in->user_id);
        goto fail;
    }
    if (s == STORE_CONFLICT) {
        svc_fail(call, PAT_E_HAS_ACTIVE_TOKENS,
                 "service user %s still has %u active token(s): revoke them first", in->user_id,
                 n_active);
        goto fail;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "deleting the service user");
        goto fail;
    }
    log_info("event=service_user_deleted user_id=%s tokens=%zu by=%s", in->user_id, n_ids,
             p.user.user_id);
    Pat__V1__DeleteServiceUserResponse r = PAT__V1__DELETE_SERVICE_USER_RESPONSE__INIT;
    done(&r, call);
    return;
fail:
    done(NULL, call);
}
