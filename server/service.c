/* service: setup, Health, wire answers from domain values and the one
 * mapping of store outcomes (the handlers are in svc_*.c).
 *
 * DESIGN. See service.h for threads and svc_internal.h for the files. Each
 * handler follows the same shape: authenticate the caller, validate every
 * field (naming the field in the error), make the change as one store
 * operation, answer. A token that the caller may not see answers
 * TOKEN_NOT_FOUND exactly as a missing one (R3). Times come from
 * clock_now_ms() so tests can move them. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "svc_internal.h"
#include "wire.h"

/* The domain's enum numbers are pat.v1's. */
#define SVC_SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SVC_SAME(STORE_KIND_PERSONAL, KIND_PERSONAL) &&
                   SVC_SAME(STORE_KIND_SERVICE, KIND_SERVICE),
               "token kinds");
_Static_assert(SVC_SAME(STORE_USER_HUMAN, TYPE_HUMAN) && SVC_SAME(STORE_USER_SERVICE, TYPE_SERVICE),
               "user types");
_Static_assert(SVC_SAME(STORE_ROLE_MEMBER, ROLE_MEMBER), "roles");
_Static_assert(SVC_SAME(STORE_EVENT_USED, PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_USED) &&
                   SVC_SAME(STORE_EVENT_CREATED, PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_CREATED) &&
                   SVC_SAME(STORE_EVENT_REVOKED, PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_REVOKED) &&
                   SVC_SAME(STORE_EVENT_RESTORED, PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_RESTORED) &&
                   SVC_SAME(STORE_EVENT_DELETED, PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_DELETED),
               "activity kinds");

void svc_fail(svc_call_t *call, pat_err_t err, const char *fmt, ...)
{
    call->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->message, sizeof(call->message), fmt, ap);
    va_end(ap);
    /* A message cut at its byte limit must not end in half a character. */
    call->message[wire_utf8_cut(call->message, sizeof(call->message) - 1)] = '\0';
}

pat_err_t svc_store_err(store_status_t s)
{
    switch (s) {
    case STORE_OK:
        return PAT_E_OK;
    case STORE_UNAVAILABLE:
    case STORE_DECLINED:
        return PAT_E_STORAGE;
    default:
        return PAT_E_INTERNAL; /* CORRUPT, or an outcome the caller did not expect */
    }
}

void svc_store_fail(svc_call_t *call, store_status_t s, const char *what)
{
    pat_err_t e = svc_store_err(s);
    if (e == PAT_E_STORAGE)
        svc_fail(call, e, "storage unavailable while %s; retry later", what);
    else
        svc_fail(call, e, "storage answered '%s' while %s", store_status_name(s), what);
}

const char *svc_role_name(int r)
{
    static const char *const names[] = {"none", "member", "manager", "admin"};
    return svc_valid_role(r) ? names[r] : "unknown";
}

Pat__V1__TokenStatus svc_token_status(const store_token_t *t, int64_t now)
{
    if (t->expiration != 0 && now >= t->expiration)
        return PAT__V1__TOKEN_STATUS__TOKEN_STATUS_EXPIRED;
    if (!t->active) return PAT__V1__TOKEN_STATUS__TOKEN_STATUS_REVOKED;
    return PAT__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE;
}

void svc_user_pb(const store_user_t *u, Pat__V1__User *out)
{
    pat__v1__user__init(out);
    out->user_id = (char *)u->user_id;
    out->user_name = (char *)u->user_name;
    out->email = (char *)u->email;
    out->name = (char *)u->name;
    out->role = u->role;
    out->user_type = u->user_type;
    out->active = u->active;
    out->created = u->created;
    out->created_by = (char *)u->created_by;
}

void svc_token_pb(svc_t *svc, const store_token_t *t, const store_user_t *owner, int64_t now,
                  int drained, Pat__V1__TokenInfo *ti, Pat__V1__User *owner_pb)
{
    pat__v1__token_info__init(ti);
    ti->id = t->id;
    ti->name = (char *)t->name;
    ti->created = t->created;
    ti->expiration = t->expiration;
    int64_t ms =
        drained ? usage_last_used_applied(svc->usage, t->id) : usage_last_used(svc->usage, t->id);
    if (ms == 0) store_last_used_get(svc->store, t->id, &ms);
    ti->last_used = ms;
    ti->active = t->active;
    ti->status = svc_token_status(t, now);
    ti->kind = t->kind;
    ti->scim_endpoints_only = t->scim;
    ti->created_by = (char *)t->created_by;
    if (owner) {
        svc_user_pb(owner, owner_pb);
        ti->user = owner_pb;
    }
}

void svc_event(svc_t *svc, store_event_t *ev, int32_t kind, int64_t now, const char *actor)
{
    memset(ev, 0, sizeof(*ev));
    ev->seq = store_event_seq(svc->store);
    ev->kind = kind;
    ev->time = now;
    snprintf(ev->actor, sizeof(ev->actor), "%s", actor);
}

/* ---------------------------------------------------------------- Health */

int svc_cluster_ready(svc_t *svc)
{
    store_cluster_t cl;
    store_cluster_status(svc->store, &cl);
    return !cl.clustered || cl.ready;
}

void svc_health(Pat__V1__TokenService_Service *service, const Pat__V1__HealthRequest *in,
                Pat__V1__HealthResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    (void)in;
    Pat__V1__HealthResponse r = PAT__V1__HEALTH_RESPONSE__INIT;
    store_cluster_t cl;
    store_cluster_status(svc->store, &cl);
    r.status = atomic_load(&svc->stats->draining) ? PAT__V1__SERVING_STATUS__SERVING_STATUS_DRAINING
               : cl.clustered && !cl.ready ? PAT__V1__SERVING_STATUS__SERVING_STATUS_CATCHING_UP
                                           : PAT__V1__SERVING_STATUS__SERVING_STATUS_SERVING;
    r.version = (char *)PATD_VERSION;
    r.uptime_ms = (int64_t)(clock_mono_ms() - svc->start_mono_ms);
    r.now = clock_now_ms();
    r.connections = atomic_load(&svc->stats->connections);
    r.requests_in_flight = atomic_load(&svc->stats->in_flight);
    r.last_used_lag_ms = USAGE_PERSIST_MS + USAGE_FLUSH_MS;
    cache_stats_t cs;
    cache_stats(svc->cache, &cs);
    Pat__V1__CacheStats c = PAT__V1__CACHE_STATS__INIT;
    c.hits = cs.hits;
    c.misses = cs.misses;
    c.evictions = cs.evictions;
    c.entries = cs.entries;
    c.capacity = cs.capacity;
    c.user_entries = cs.user_entries;
    r.cache = &c;
    Pat__V1__ClusterStatus cs_pb = PAT__V1__CLUSTER_STATUS__INIT;
    Pat__V1__ClusterNode nodes[STORE_NODES_MAX], *np[STORE_NODES_MAX];
    if (cl.clustered) {
        cs_pb.ready = cl.ready;
        cs_pb.connected = cl.connected;
        cs_pb.applied = cl.applied;
        cs_pb.latest = cl.latest;
        cs_pb.lease_left_ms = cl.lease_left_ms;
        cs_pb.lease_ms = cl.lease_ms;
        cs_pb.fences = cl.fences;
        cs_pb.fence_wait_ms = cl.fence_wait_ms;
        cs_pb.fence_timeouts = cl.fence_timeouts;
        cs_pb.reconnects = cl.reconnects;
        for (unsigned i = 0; i < cl.n_nodes; i++) {
            pat__v1__cluster_node__init(&nodes[i]);
            nodes[i].node_id = cl.nodes[i].node_id;
            nodes[i].addr = cl.nodes[i].addr;
            nodes[i].applied = cl.nodes[i].applied;
            nodes[i].lag = cl.latest > cl.nodes[i].applied ? cl.latest - cl.nodes[i].applied : 0;
            nodes[i].lease_left_ms = cl.nodes[i].lease_left_ms;
            nodes[i].expired = cl.nodes[i].expired;
            nodes[i].self = cl.nodes[i].self;
            np[i] = &nodes[i];
        }
        cs_pb.n_nodes = cl.n_nodes;
        cs_pb.nodes = np;
        r.cluster = &cs_pb;
    }
    done(&r, cd);
}

/* ---------------------------------------------------------------- setup */

void svc_init(svc_t *svc, store_t *st, usage_t *usage, cache_t *cache, stats_t *stats,
              char *platform_key)
{
    static const Pat__V1__TokenService_Service base = PAT__V1__TOKEN_SERVICE__INIT(svc_);
    memset(svc, 0, sizeof(*svc));
    svc->base = base;
    svc->store = st;
    svc->usage = usage;
    svc->cache = cache;
    svc->stats = stats;
    if (platform_key) svc_set_platform_keys(svc, platform_key);
    svc->start_mono_ms = clock_mono_ms();
    svc->ui = svc_ui_new();
    store_page_key(st, svc->page_key);
    store_observer_t obs;
    cache_observer(cache, &obs);
    store_set_observer(st, &obs);
}

void svc_destroy(svc_t *svc)
{
    svc_keys_t *k = atomic_exchange(&svc->keys, NULL);
    if (k) k->next_retired = svc->retired;
    svc_keys_free(k ? k : svc->retired);
    svc->retired = NULL;
    explicit_bzero(svc->page_key, sizeof(svc->page_key));
    svc_ui_free(svc->ui);
    svc->ui = NULL;
}
