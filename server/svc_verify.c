/* svc_verify: Verify, the hot path: a bearer token, the API path it is
 * used on and the role the path needs, answered with the token and its
 * user (R11-R16, R5 for SCIM tokens). Runs on the loop thread from memory,
 * or on a worker when storage must be read. */
#include <string.h>

#include "clock.h"
#include "svc_internal.h"

/* Verify, in full (try_only = 0) or from memory alone. Returns 0 when
 * try_only and storage is needed (nothing answered), else 1. */
static int svc_verify_run(svc_t *svc, const Pat__V1__VerifyRequest *in, svc_call_t *call,
                          Pat__V1__VerifyResponse_Closure done, int try_only)
{
    char path[SVC_PATH_MAX + 1];
    path[0] = '\0';
    pat_err_t e = PAT_E_OK;
    const char *why = "";
    size_t path_len = strlen(in->path);
    if (path_len > SVC_PATH_MAX) {
        svc_fail(call, PAT_E_INVALID_FIELD, "path is longer than %d bytes", SVC_PATH_MAX);
        goto fail;
    }
    /* Valid UTF-8 without NUL: each front-end checks its strings where they
     * enter (wire_check on the framed port, http.c for headers). */
    if (in->path[0] && svc_normalize_path(in->path, path, sizeof(path)) != 0) {
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "path must be absolute, stay below /, and not encode a separator");
        goto fail;
    }
    if (!svc_valid_role(in->required_role)) {
        svc_fail(call, PAT_E_INVALID_FIELD, "required_role %d is not a Role", in->required_role);
        goto fail;
    }
    if (strlen(in->client_ip) > USAGE_CLIENT_IP_MAX) {
        svc_fail(call, PAT_E_INVALID_FIELD, "client_ip is longer than %d bytes",
                 USAGE_CLIENT_IP_MAX);
        goto fail;
    }
    store_token_t t;
    store_user_t u;
    int64_t now = clock_now_ms();
    if (svc_authenticate(svc, in->bearer_token, now, try_only, &t, &u, &e, &why)) return 0;
    if (e == PAT_E_OK && t.scim && !svc_path_is_scim(svc, path)) {
        e = PAT_E_SCIM_ONLY;
        why = "a SCIM token may only be used on SCIM endpoints";
    }
    /* Only Admins may make a SCIM token, and a token carries its user's
     * current role (R1, R13): once its user is no Admin, it stops. */
    if (e == PAT_E_OK && t.scim && u.role < ROLE_ADMIN) {
        e = PAT_E_INSUFFICIENT_ROLE;
        why = "a SCIM token works only while its user is an Admin";
    }
    if (e == PAT_E_OK && u.role < (int)in->required_role) {
        e = PAT_E_INSUFFICIENT_ROLE;
        why = "the token's user lacks the required role";
    }
    if (e != PAT_E_OK) {
        svc_fail(call, e, "%s", why);
        goto fail;
    }
    usage_record(svc->usage, t.id, now, in->path[0] ? path : NULL, in->client_ip);
    Pat__V1__VerifyResponse r = PAT__V1__VERIFY_RESPONSE__INIT;
    Pat__V1__User user_pb;
    Pat__V1__TokenInfo ti = PAT__V1__TOKEN_INFO__INIT;
    svc_user_pb(&u, &user_pb);
    ti.id = t.id;
    ti.name = t.name;
    ti.created = t.created;
    ti.expiration = t.expiration;
    ti.last_used = now; /* this use */
    ti.active = 1;
    ti.status = PAT__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE;
    ti.kind = t.kind;
    ti.scim_endpoints_only = t.scim;
    ti.created_by = t.created_by;
    ti.user = &user_pb;
    r.user = &user_pb;
    r.token = &ti;
    done(&r, call);
    return 1;
fail:
    done(NULL, call);
    return 1;
}

void svc_verify(Pat__V1__TokenService_Service *service, const Pat__V1__VerifyRequest *in,
                Pat__V1__VerifyResponse_Closure done, void *cd)
{
    svc_verify_run(svc_of(service), in, cd, done, 0);
}

int svc_verify_cached(svc_t *svc, const Pat__V1__VerifyRequest *in, svc_call_t *call,
                      Pat__V1__VerifyResponse_Closure done)
{
    return svc_verify_run(svc, in, call, done, 1);
}
