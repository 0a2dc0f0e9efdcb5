/* svc_auth: who is calling: bearer tokens through the verification cache,
 * the platform key (one, or two during a rotation) and x-act-as-user. */
#include <stdlib.h>
#include <sys/types.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "svc_internal.h"
#include "token.h"

/* A cache miss read from storage: the full read on a worker, the one that
 * may decline on the loop thread. Returns 1 if it declined. */
static int svc_read_token(svc_t *svc, const uint8_t *hash, int try_only, store_token_t *t,
                          store_status_t *s)
{
    *s = try_only ? store_token_try_get_by_hash(svc->store, hash, t)
                  : store_token_get_by_hash(svc->store, hash, t);
    return *s == STORE_DECLINED;
}

static int svc_read_user(svc_t *svc, const char *id, int try_only, store_user_t *u,
                         store_status_t *s)
{
    *s = try_only ? store_user_try_get(svc->store, id, u) : store_user_get(svc->store, id, u);
    return *s == STORE_DECLINED;
}

/* ---------------------------------------------------------------- batches */

/* The reads of one batch of Verifies (svc_prefetch), on the batch thread:
 * thread-local, so only the Verifies of that batch, run on that thread
 * right after, see them. */
typedef struct {
    size_t n;
    uint8_t (*hash)[TOKEN_HASH_BYTES];
    uint64_t *epoch, users_epoch;
    store_token_t *t;
    store_user_t *u;
    store_status_t *s;
} svc_prefetched_t;
static __thread svc_prefetched_t svc_pre;

void svc_prefetch(svc_t *svc, const char *const *tokens, size_t n)
{
    svc_prefetched_t *p = &svc_pre;
    p->hash = malloc((n ? n : 1) * sizeof(*p->hash));
    p->epoch = malloc((n ? n : 1) * sizeof(*p->epoch));
    p->t = malloc((n ? n : 1) * sizeof(*p->t));
    p->u = malloc((n ? n : 1) * sizeof(*p->u));
    p->s = malloc((n ? n : 1) * sizeof(*p->s));
    if (!p->hash || !p->epoch || !p->t || !p->u || !p->s) abort();
    p->n = 0;
    /* The epochs before the read: what is put in the cache afterwards was
     * read after them (cache.h). */
    p->users_epoch = cache_users_epoch(svc->cache);
    for (size_t i = 0; i < n; i++) {
        if (token_check_hash(tokens[i], strlen(tokens[i]), 0, p->hash[p->n]) != 0) continue;
        if (cache_token_get(svc->cache, p->hash[p->n], &p->t[p->n], &p->epoch[p->n], 0))
            continue; /* its Verify hits the cache */
        p->n++;
    }
    store_tokens_get_with_owners(svc->store, (const uint8_t(*)[STORE_HASH_BYTES])p->hash, p->n,
                                 p->t, p->u, p->s);
}

void svc_prefetch_done(svc_t *svc)
{
    (void)svc;
    svc_prefetched_t *p = &svc_pre;
    free(p->hash);
    free(p->epoch);
    free(p->t);
    free(p->u);
    free(p->s);
    memset(p, 0, sizeof(*p));
}

/* This thread's prefetched read of hash, or -1. */
static ssize_t svc_prefetched(const uint8_t *hash)
{
    for (size_t i = 0; i < svc_pre.n; i++)
        if (memcmp(svc_pre.hash[i], hash, TOKEN_HASH_BYTES) == 0) return (ssize_t)i;
    return -1;
}

int svc_authenticate(svc_t *svc, const char *tok, int64_t now, int try_only, svc_hot_t *hot,
                     store_token_t *t, store_user_t *u, pat_err_t *e, const char **why)
{
    size_t len = strlen(tok);
    *e = PAT_E_MALFORMED_TOKEN;
    *why = "token is malformed or its checksum is wrong";
    uint8_t hash[TOKEN_HASH_BYTES];
    if (hot) hot->hit = 0;
    /* The loop thread remembers the tokens it hashed (token.h). */
    if (hot ? token_check_hash_tagged(tok, len, hot->tag, hash) != 0
            : token_check_hash(tok, len, try_only, hash) != 0)
        return 0;
    uint64_t epoch = 0;
    store_status_t s = STORE_OK;
    int have_owner = 0, token_hit = 1;
    if (!cache_token_get(svc->cache, hash, t, &epoch, 0)) {
        token_hit = 0;
        if (try_only) {
            if (svc_read_token(svc, hash, 1, t, &s)) return 1; /* the worker counts it */
        } else {
            /* On a worker: the token with its owner, one read (PostgreSQL:
             * one round trip), or read already with its batch. */
            uint64_t users_epoch = cache_users_epoch(svc->cache);
            ssize_t k = svc_prefetched(hash);
            if (k >= 0) {
                s = svc_pre.s[k];
                *t = svc_pre.t[k];
                *u = svc_pre.u[k];
                epoch = svc_pre.epoch[k];
                users_epoch = svc_pre.users_epoch;
            } else {
                s = store_token_get_with_owner(svc->store, hash, t, u);
            }
            if (s == STORE_OK && u->user_id[0] && strcmp(u->user_id, t->owner_id) == 0) {
                have_owner = 1;
                cache_user_put_since(svc->cache, u, users_epoch);
            }
        }
        cache_count_miss(svc->cache);
        if (s == STORE_OK && !token_ct_equal(t->hash, hash, TOKEN_HASH_BYTES))
            s = STORE_NOT_FOUND; /* an index entry pointing at another token */
        if (s == STORE_OK) cache_token_put(svc->cache, t, epoch);
    }
    if (s != STORE_OK) {
        *e = s == STORE_NOT_FOUND ? PAT_E_UNKNOWN_TOKEN : svc_store_err(s);
        *why = s == STORE_NOT_FOUND ? "token is not known (never issued, or deleted)"
                                    : "storage unavailable; retry later";
        return 0;
    }
    if (t->expiration != 0 && now >= t->expiration) {
        *e = PAT_E_EXPIRED;
        *why = "token has expired";
        return 0;
    }
    if (!t->active) {
        *e = PAT_E_REVOKED;
        *why = "token has been revoked";
        return 0;
    }
    if (hot && token_hit) hot->tok = cache_token_mark(svc->cache, hash, epoch);
    if (!have_owner && !cache_user_get(svc->cache, t->owner_id, u, &epoch, 0)) {
        if (svc_read_user(svc, t->owner_id, try_only, u, &s)) return 1;
        cache_count_miss(svc->cache);
        if (s == STORE_OK) cache_user_put(svc->cache, u, epoch);
    } else if (hot && token_hit && !have_owner) {
        hot->hit = 1;
        hot->usr = cache_user_mark(svc->cache, t->owner_id, epoch);
    }
    if (s != STORE_OK) {
        *e = s == STORE_NOT_FOUND ? PAT_E_UNKNOWN_TOKEN : svc_store_err(s);
        *why = s == STORE_NOT_FOUND ? "token's user no longer exists"
                                    : "storage unavailable; retry later";
        return 0;
    }
    if (!u->active) {
        *e = PAT_E_USER_DEACTIVATED;
        *why = "token's user is deactivated";
        return 0;
    }
    *e = PAT_E_OK;
    *why = "";
    return 0;
}

static int svc_starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

int svc_is_platform(svc_call_t *call)
{
    const char *a = call->authorization;
    svc_t *svc = call->svc;
    if (a == NULL || !svc_starts_with_ci(a, "Platform ")) return 0;
    const char *key = a + 9;
    size_t kl = strlen(key);
    const svc_keys_t *k = atomic_load_explicit(&svc->keys, memory_order_acquire);
    int ok = 0;
    for (int i = 0; k && i < k->n; i++) /* every key, whichever matches */
        ok |= token_secret_equal(key, kl, k->key[i], k->len[i]);
    return ok;
}

int svc_set_platform_keys(svc_t *svc, char *keys)
{
    svc_keys_t *k = calloc(1, sizeof(*k));
    if (k == NULL) abort();
    k->buf = keys;
    for (char *line = keys, *end; line && *line && k->n < SVC_PLATFORM_KEYS; line = end) {
        end = strchr(line, '\n');
        if (end) *end++ = '\0';
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        if (len == 0) continue;
        k->key[k->n] = line;
        k->len[k->n++] = len;
    }
    svc_keys_t *old = atomic_exchange_explicit(&svc->keys, k, memory_order_acq_rel);
    if (old) {
        old->next_retired = svc->retired; /* only reloads write this: one at a time */
        svc->retired = old;
    }
    return k->n;
}

void svc_keys_free(svc_keys_t *k)
{
    while (k) {
        svc_keys_t *next = k->next_retired;
        if (k->buf) {
            explicit_bzero(k->buf, strlen(k->buf));
            for (int i = 0; i < k->n; i++)
                explicit_bzero((char *)k->key[i], k->len[i]);
            free(k->buf);
        }
        free(k);
        k = next;
    }
}

/* The platform acting for the user named by x-act-as-user, or the HTTP
 * layer's trusted user (a page session, the auth proxy's header). */
static int svc_act_as(svc_call_t *call, const char *user_id, svc_principal_t *p)
{
    store_status_t s = store_user_get(call->svc->store, user_id, &p->user);
    if (user_id == call->trusted_user &&
        (s == STORE_NOT_FOUND || (s == STORE_OK && !p->user.active)))
        svc_ui_end_user(call->svc, user_id); /* R14: the session ends with the user */
    if (s == STORE_NOT_FOUND) {
        svc_fail(call, PAT_E_USER_NOT_FOUND, "x-act-as-user names no known user");
        return -1;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "reading the acting user");
        return -1;
    }
    if (!p->user.active) {
        svc_fail(call, PAT_E_USER_DEACTIVATED, "the acting user is deactivated");
        return -1;
    }
    if (p->user.user_type == TYPE_SERVICE) {
        /* Service users are API-only accounts: they act through their own
         * tokens, never through the platform acting for them. */
        svc_fail(call, PAT_E_NOT_A_HUMAN,
                 "x-act-as-user names a service user; the platform acts for humans only");
        return -1;
    }
    return 0;
}

int svc_caller(svc_call_t *call, svc_principal_t *p, int need_user)
{
    p->platform = 0;
    p->user.user_id[0] = '\0';
    p->token_id = 0;
    const char *a = call->authorization;
    if ((a == NULL || *a == '\0') && call->trusted_user)
        return svc_act_as(call, call->trusted_user, p);
    if (a == NULL || *a == '\0') {
        svc_fail(call, PAT_E_MISSING_CREDENTIAL,
                 "no credential: send metadata authorization = \"Bearer <token>\"");
        return -1;
    }
    if (svc_starts_with_ci(a, "Bearer ")) {
        store_token_t t;
        pat_err_t e;
        const char *why;
        svc_authenticate(call->svc, a + 7, clock_now_ms(), 0, NULL, &t, &p->user, &e, &why);
        if (e != PAT_E_OK) {
            svc_fail(call, e, "caller's %s", why);
            return -1;
        }
        if (t.scim) {
            /* R5: a SCIM token only reaches SCIM endpoints, never this API. */
            svc_fail(call, PAT_E_SCIM_ONLY, "a SCIM token may only be used on SCIM endpoints");
            return -1;
        }
        p->token_id = t.id;
        return 0;
    }
    if (!svc_starts_with_ci(a, "Platform ")) {
        svc_fail(call, PAT_E_MISSING_CREDENTIAL,
                 "authorization must be \"Bearer <token>\" or \"Platform <key>\"");
        return -1;
    }
    if (!svc_is_platform(call)) {
        svc_fail(call, PAT_E_BAD_PLATFORM_KEY, "platform key does not match");
        return -1;
    }
    if (call->svc->platform_needs_cert && !call->peer_verified) {
        /* --platform-client-cert-required: the key alone, read off a
         * network or a disk, is not enough. */
        svc_fail(call, PAT_E_BAD_PLATFORM_KEY,
                 "the platform key is taken only over TLS with a client certificate from "
                 "--tls-client-ca");
        return -1;
    }
    if (call->act_as && *call->act_as) return svc_act_as(call, call->act_as, p);
    if (need_user) {
        svc_fail(call, PAT_E_MISSING_CREDENTIAL,
                 "this method acts as a user: add metadata x-act-as-user to the platform key, "
                 "or use a Bearer token");
        return -1;
    }
    p->platform = 1;
    return 0;
}

int svc_require_platform(svc_call_t *call, svc_principal_t *p)
{
    if (svc_caller(call, p, 0) != 0) return -1;
    if (!p->platform) {
        svc_fail(call, PAT_E_PLATFORM_ONLY, "only the platform principal manages users");
        return -1;
    }
    return 0;
}

int svc_require_admin(svc_call_t *call, svc_principal_t *p)
{
    if (svc_caller(call, p, 1) != 0) return -1;
    if (p->user.role < ROLE_ADMIN) {
        svc_fail(call, PAT_E_ADMIN_ONLY, "this needs the admin role");
        return -1;
    }
    return 0;
}

int svc_may_see(const svc_principal_t *p, int32_t kind, const char *owner_id)
{
    return kind == KIND_SERVICE ? p->user.role >= ROLE_ADMIN
                                : strcmp(owner_id, p->user.user_id) == 0;
}

int svc_load_visible(svc_call_t *call, const svc_principal_t *p, uint64_t id, store_token_t *out)
{
    store_status_t s = store_token_get(call->svc->store, id, out);
    if (s == STORE_OK) {
        if (svc_may_see(p, out->kind, out->owner_id)) return 0;
        s = STORE_NOT_FOUND;
    }
    if (s == STORE_NOT_FOUND)
        svc_fail(call, PAT_E_TOKEN_NOT_FOUND, "no token %llu", (unsigned long long)id);
    else
        svc_store_fail(call, s, "reading the token");
    return -1;
}
