/* svc_activity: ListTokenActivity, a token's recent history (R15, R22),
 * readable by whoever could see the token, after its deletion too. */
#include <stdlib.h>
#include <string.h>

#include "svc_internal.h"

/* True if id is a deleted token whose owner is the caller (or, for a
 * service token, the caller is an Admin): its newest event says whose. */
static int svc_deleted_visible(svc_t *svc, const svc_principal_t *p, uint64_t id)
{
    store_event_t last;
    unsigned n = 0;
    if (store_activity_list(svc->store, id, 1, &last, &n) != STORE_OK || n == 0) return 0;
    return last.kind == STORE_EVENT_DELETED && svc_may_see(p, last.token_kind, last.owner_id);
}

void svc_list_token_activity(Pat__V1__TokenService_Service *service,
                             const Pat__V1__ListTokenActivityRequest *in,
                             Pat__V1__ListTokenActivityResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_token_t t;
    store_event_t *evs = NULL;
    Pat__V1__ActivityEvent *pbs = NULL;
    Pat__V1__ActivityEvent **ptrs = NULL;
    if (svc_caller(call, &p, 1) != 0) goto fail;
    if (svc_load_visible(call, &p, in->id, &t) != 0) {
        if (call->err != PAT_E_TOKEN_NOT_FOUND || !svc_deleted_visible(svc, &p, in->id)) goto fail;
        call->err = PAT_E_OK;
        call->message[0] = '\0';
    }
    if (in->limit > USAGE_KEEP) {
        svc_fail(call, PAT_E_INVALID_FIELD, "limit must be 1..%d (0 means %d)", USAGE_KEEP,
                 SVC_ACTIVITY_DEF);
        goto fail;
    }
    /* Make the newest uses visible now rather than after the next flush. */
    usage_flush(svc->usage);
    unsigned want = in->limit ? in->limit : SVC_ACTIVITY_DEF, n = 0;
    evs = calloc(want, sizeof(*evs));
    pbs = calloc(want, sizeof(*pbs));
    ptrs = calloc(want, sizeof(*ptrs));
    if (!evs || !pbs || !ptrs) abort();
    store_status_t s = store_activity_list(svc->store, in->id, want, evs, &n);
    if (s != STORE_OK) {
        svc_store_fail(call, s, "reading activity");
        goto fail;
    }
    for (unsigned i = 0; i < n; i++) {
        Pat__V1__ActivityEvent *ev = &pbs[i];
        pat__v1__activity_event__init(ev);
        ev->time = evs[i].time;
        ev->kind = evs[i].kind;
        ev->count = evs[i].count;
        ev->first_time = evs[i].first_time;
        ev->path = evs[i].path;
        ev->client_ip = evs[i].client_ip;
        ev->actor = evs[i].actor;
        ptrs[i] = ev;
    }
    Pat__V1__ListTokenActivityResponse r = PAT__V1__LIST_TOKEN_ACTIVITY_RESPONSE__INIT;
    r.n_events = n;
    r.events = ptrs;
    done(&r, call);
    goto out;
fail:
    done(NULL, call);
out:
    free(evs);
    free(pbs);
    free(ptrs);
}
