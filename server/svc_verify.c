/* svc_verify: Verify, the hot path: a bearer token, the API path it is
 * used on and the role the path needs, answered with the token and its
 * user (R11-R16, R5 for SCIM tokens). Runs on the loop thread from memory,
 * or on a worker when storage must be read. */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "svc_internal.h"
#include "wire.h"

/* ---------------------------------------------------------------- prepared answers
 *
 * The loop thread's memo of the answers it gave (service.h): a slot per
 * token tag, holding what decided the answer (the token's id, expiry, SCIM
 * flag and the user's role) and each front-end's bytes of it, valid while
 * the marks of the cache entries it was read from are current. No secret
 * is kept: the tag is the token memo's keyed SipHash, the bytes an answer
 * any holder of the token may read.
 *
 * Slots are in sets of SVC_PREP_WAYS, the least recently used one taken
 * for a new token, and a set's tags share one cache line, so a lookup
 * reads the slot it finds and no other. Of 300k Verifies of 10k tokens
 * drawn at random, 8192 direct-mapped slots answered 29% (two tokens of a
 * slot took it from each other), 4096 sets of 4 answer 73%, of at most 93%
 * (a token's first Verify reads the store, its second prepares).
 *
 * Once every token has been seen, 4096 sets of 4 answered 93.7% of 10k
 * tokens drawn at random, but only 78.6% of the same 10k walked in turn
 * by 50 connections (patbench's hot Verify): a set given five or more of
 * them by the tags (a Poisson tail: 23% of the tokens) is read in a cycle,
 * and least-recently-used gives each its slot up just before it comes
 * round again. The rest went the full way from the cache, at twice the
 * instructions; hot Verify ran at 0.94x redis GET. 8192 sets answer 96.4%
 * walked and 99.3% at random (the tail is 3.6% of them), and hot
 * Verify ran even with redis GET; 16384 sets answered 99.7% for twice the
 * memory again. */
#define SVC_PREP_WAYS  4
#define SVC_PREP_SETS  8192 /* 27 MiB of address space, touched as a hot set fills it */
#define SVC_PREP_BYTES 768  /* the forms of one answer; a larger one is not prepared */

typedef struct {
    cache_mark_t tok, usr;
    uint64_t id;
    int64_t expiration;
    uint32_t used_at; /* the set's clock when last used, for the choice of a victim */
    int32_t role;
    uint8_t scim, live;
    uint16_t used;
    struct {
        uint16_t off, len, now_at; /* now_at: 1 + the offset of the time's varint, or 0 */
    } form[SVC_FORMS];
    uint8_t bytes[SVC_PREP_BYTES];
} svc_prep_t;

typedef struct {
    _Alignas(64) uint8_t tag[SVC_PREP_WAYS][TOKEN_MEMO_TAG_BYTES];
    uint32_t clock;
    svc_prep_t way[SVC_PREP_WAYS];
} svc_prep_set_t;

static pthread_once_t svc_prep_once = PTHREAD_ONCE_INIT;
static pthread_key_t svc_prep_key;
static __thread svc_prep_set_t *svc_prep_table;
static __thread svc_prep_t *svc_prep_open; /* the slot a Verify's emit may fill */

static void svc_prep_init(void)
{
    if (pthread_key_create(&svc_prep_key, free) != 0) abort();
}

#ifdef PATD_TEST_CLOCK
static __thread uint32_t svc_prep_mask = SVC_PREP_SETS - 1;
void svc_prep_narrow(unsigned sets)
{
    svc_prep_mask = sets && sets <= SVC_PREP_SETS ? sets - 1 : SVC_PREP_SETS - 1;
}
#else
#define svc_prep_mask (SVC_PREP_SETS - 1u)
#endif

static svc_prep_set_t *svc_prep_set(const uint8_t tag[TOKEN_MEMO_TAG_BYTES])
{
    uint32_t i;
    memcpy(&i, tag + 4, sizeof(i)); /* other bits than the token memo's index */
    return &svc_prep_table[i & svc_prep_mask];
}

/* The way of set s holding tag, or -1. Every way is compared: the time
 * does not tell which one matched. */
static int svc_prep_find(const svc_prep_set_t *s, const uint8_t tag[TOKEN_MEMO_TAG_BYTES])
{
    int found = -1;
    for (int w = 0; w < SVC_PREP_WAYS; w++)
        if (CRYPTO_memcmp(s->tag[w], tag, TOKEN_MEMO_TAG_BYTES) == 0) found = w;
    return found;
}

static int svc_mark_same(const cache_mark_t *a, const cache_mark_t *b)
{
    return a->epoch == b->epoch && a->seen == b->seen;
}

/* Opens the slot of a Verify that succeeded from the cache alone, for the
 * front-end's emit to fill (svc_prepare) while it runs: the token's own,
 * or the least recently used of its set. */
static void svc_prep_begin(const svc_hot_t *hot, const store_token_t *t, const store_user_t *u)
{
    if (svc_prep_table == NULL) {
        pthread_once(&svc_prep_once, svc_prep_init);
        /* calloc: pages are touched as slots are, and it aligns to 16 */
        void *mem = calloc(1, SVC_PREP_SETS * sizeof(svc_prep_set_t) + 64);
        if (mem == NULL || pthread_setspecific(svc_prep_key, mem) != 0) abort();
        svc_prep_table = (svc_prep_set_t *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
    }
    svc_prep_set_t *s = svc_prep_set(hot->tag);
    int w = svc_prep_find(s, hot->tag);
    svc_prep_t *p;
    if (w >= 0 && s->way[w].live && svc_mark_same(&s->way[w].tok, &hot->tok) &&
        svc_mark_same(&s->way[w].usr, &hot->usr)) {
        p = &s->way[w];
    } else { /* another token, or the same one changed: its forms are stale */
        if (w < 0) {
            w = 0;
            for (int i = 1; i < SVC_PREP_WAYS; i++)
                if (s->way[i].used_at < s->way[w].used_at) w = i;
        }
        p = &s->way[w];
        memcpy(s->tag[w], hot->tag, TOKEN_MEMO_TAG_BYTES);
        p->tok = hot->tok;
        p->usr = hot->usr;
        p->id = t->id;
        p->expiration = t->expiration;
        p->role = u->role;
        p->scim = (uint8_t)t->scim;
        p->used = 0;
        memset(p->form, 0, sizeof(p->form));
        p->live = 1;
    }
    p->used_at = ++s->clock;
    svc_prep_open = p;
}

void svc_prepare(svc_form_t form, const void *bytes, size_t len, size_t now_at)
{
    svc_prep_t *p = svc_prep_open;
    if (p == NULL || form >= SVC_FORMS || len == 0 || (now_at != SIZE_MAX && now_at >= len)) return;
    size_t off = p->form[form].len == len ? p->form[form].off : p->used;
    if (off + len > SVC_PREP_BYTES) {
        p->used = 0; /* the forms' bytes, rewritten: start them again */
        memset(p->form, 0, sizeof(p->form));
        off = 0;
        if (len > SVC_PREP_BYTES) return;
    }
    memcpy(p->bytes + off, bytes, len);
    p->form[form].off = (uint16_t)off;
    p->form[form].len = (uint16_t)len;
    p->form[form].now_at = now_at == SIZE_MAX ? 0 : (uint16_t)(now_at + 1);
    if (off + len > p->used) p->used = (uint16_t)(off + len);
}

/* The checks of a Verify's fields: 0, or which failed (path: the
 * normalized path, SVC_PATH_MAX + 1 bytes). */
enum { SVC_VF_OK, SVC_VF_PATH_LONG, SVC_VF_PATH, SVC_VF_ROLE, SVC_VF_IP_LONG };

static int svc_verify_fields(const Pat__V1__VerifyRequest *in, char *path)
{
    path[0] = '\0';
    if (strlen(in->path) > SVC_PATH_MAX) return SVC_VF_PATH_LONG;
    /* Valid UTF-8 without NUL: each front-end checks its strings where they
     * enter (wire_check on the framed port, http.c for headers). */
    if (in->path[0] && svc_normalize_path(in->path, path, SVC_PATH_MAX + 1) != 0)
        return SVC_VF_PATH;
    if (!svc_valid_role(in->required_role)) return SVC_VF_ROLE;
    if (strlen(in->client_ip) > USAGE_CLIENT_IP_MAX) return SVC_VF_IP_LONG;
    return SVC_VF_OK;
}

/* What the path and role ask of a valid token (R5, R1, R13): PAT_E_OK, or
 * the refusal with why. */
static pat_err_t svc_verify_allows(svc_t *svc, int scim, int role, const char *path,
                                   int required_role, const char **why)
{
    if (scim && !svc_path_is_scim(svc, path)) {
        *why = "a SCIM token may only be used on SCIM endpoints";
        return PAT_E_SCIM_ONLY;
    }
    /* Only Admins may make a SCIM token, and a token carries its user's
     * current role (R1, R13): once its user is no Admin, it stops. */
    if (scim && role < ROLE_ADMIN) {
        *why = "a SCIM token works only while its user is an Admin";
        return PAT_E_INSUFFICIENT_ROLE;
    }
    if (role < required_role) {
        *why = "the token's user lacks the required role";
        return PAT_E_INSUFFICIENT_ROLE;
    }
    return PAT_E_OK;
}

int svc_verify_prepared(svc_t *svc, const Pat__V1__VerifyRequest *in, svc_form_t form,
                        svc_prepared_t *out)
{
    if (svc_prep_table == NULL || form >= SVC_FORMS) return 0;
    size_t tl = strlen(in->bearer_token);
    if (tl == 0 || tl > TOKEN_MAX_LEN) return 0;
    char path[SVC_PATH_MAX + 1];
    if (svc_verify_fields(in, path) != SVC_VF_OK) return 0;
    uint8_t tag[TOKEN_MEMO_TAG_BYTES];
    token_tag(in->bearer_token, tl, tag);
    svc_prep_set_t *s = svc_prep_set(tag);
    int w = svc_prep_find(s, tag);
    if (w < 0) return 0;
    svc_prep_t *p = &s->way[w];
    if (!p->live || p->form[form].len == 0) return 0;
    /* The same checks as svc_authenticate and svc_verify_run, on what
     * decided the answer; any refusal is left to them, with its reason. */
    if (!cache_mark_current(svc->cache, &p->tok) || !cache_mark_current(svc->cache, &p->usr))
        return 0;
    int64_t now = clock_now_ms();
    if (p->expiration != 0 && now >= p->expiration) return 0;
    const char *why;
    if (svc_verify_allows(svc, p->scim, p->role, path, (int)in->required_role, &why) != PAT_E_OK)
        return 0;
    uint8_t *b = p->bytes + p->form[form].off;
    /* This use's time, in the place of the last one's when it is as long
     * (a time past 2109 or before 1970-01-01 + 2^35 ms is one byte longer or shorter). */
    if (p->form[form].now_at &&
        wire_varint_rewrite(b + p->form[form].now_at - 1,
                            p->form[form].len - (p->form[form].now_at - 1), (uint64_t)now) != 0)
        return 0;
    p->used_at = ++s->clock;
    cache_count_prepared(svc->cache);
    usage_record(svc->usage, p->id, now, in->path[0] ? path : NULL, in->client_ip);
    out->bytes = b;
    out->len = p->form[form].len;
    return 1;
}

/* ---------------------------------------------------------------- Verify */

/* Verify, in full (try_only = 0) or from memory alone. Returns 0 when
 * try_only and storage is needed (nothing answered), else 1. */
static int svc_verify_run(svc_t *svc, const Pat__V1__VerifyRequest *in, svc_call_t *call,
                          Pat__V1__VerifyResponse_Closure done, int try_only)
{
    char path[SVC_PATH_MAX + 1];
    pat_err_t e = PAT_E_OK;
    const char *why = "";
    switch (svc_verify_fields(in, path)) {
    case SVC_VF_OK:
        break;
    case SVC_VF_PATH_LONG:
        svc_fail(call, PAT_E_INVALID_FIELD, "path is longer than %d bytes", SVC_PATH_MAX);
        goto fail;
    case SVC_VF_PATH:
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "path must be absolute, stay below /, and not encode a separator");
        goto fail;
    case SVC_VF_ROLE:
        svc_fail(call, PAT_E_INVALID_FIELD, "required_role %d is not a Role", in->required_role);
        goto fail;
    default:
        svc_fail(call, PAT_E_INVALID_FIELD, "client_ip is longer than %d bytes",
                 USAGE_CLIENT_IP_MAX);
        goto fail;
    }
    store_token_t t;
    store_user_t u;
    int64_t now = clock_now_ms();
    /* On the loop thread, a success from the cache alone is prepared. */
    svc_hot_t hot, *hp = NULL;
    if (try_only) {
        size_t tl = strlen(in->bearer_token);
        if (tl && tl <= TOKEN_MAX_LEN) {
            token_tag(in->bearer_token, tl, hot.tag);
            hp = &hot;
        }
    }
    if (svc_authenticate(svc, in->bearer_token, now, try_only, hp, &t, &u, &e, &why)) return 0;
    if (e == PAT_E_OK) e = svc_verify_allows(svc, t.scim, u.role, path, in->required_role, &why);
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
    if (hp && hot.hit) svc_prep_begin(&hot, &t, &u);
    done(&r, call);
    svc_prep_open = NULL;
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
