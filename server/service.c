/* service: TokenService handlers, caller authentication and the token rules.
 *
 * DESIGN. See service.h for threads and locking. Each handler follows the
 * same shape: authenticate the caller, validate every field (naming the
 * field in the error), take the owner lock for a change, re-read under the
 * lock, check the rule, commit one synced WriteBatch, answer. A token that
 * the caller may not see answers TOKEN_NOT_FOUND exactly as a missing one
 * (R3). Times come from clock_now_ms() so tests can move them. */
#include "service.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "log.h"
#include "token.h"
#include "wire.h"

#ifndef PATD_VERSION
#define PATD_VERSION "0.0.0"
#endif

typedef Patd__Store__UserRecord user_rec_t;
typedef Patd__Store__TokenRecord token_rec_t;

#define ROLE_MEMBER   PAT__V1__ROLE__ROLE_MEMBER
#define ROLE_ADMIN    PAT__V1__ROLE__ROLE_ADMIN
#define KIND_PERSONAL PAT__V1__TOKEN_KIND__TOKEN_KIND_PERSONAL
#define KIND_SERVICE  PAT__V1__TOKEN_KIND__TOKEN_KIND_SERVICE
#define TYPE_HUMAN    PAT__V1__USER_TYPE__USER_TYPE_HUMAN
#define TYPE_SERVICE  PAT__V1__USER_TYPE__USER_TYPE_SERVICE

/* Who is calling: the platform itself, or a user (through a Bearer token
 * or the platform acting for them). */
typedef struct {
    int platform;     /* platform key without x-act-as-user */
    user_rec_t *user; /* owned */
    int scim;         /* authenticated with a SCIM-only token */
} svc_principal_t;

/* ---------------------------------------------------------------- helpers */

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

static char *svc_strdup_or_die(const char *s)
{
    char *d = strdup(s ? s : "");
    if (d == NULL) abort();
    return d;
}

static svc_t *svc_of(Pat__V1__TokenService_Service *service)
{
    return (svc_t *)service;
}

/* Turns a store failure into the call's error. */
static void svc_store_fail(svc_call_t *call, store_status_t s, const char *what)
{
    if (s == STORE_CORRUPT)
        svc_fail(call, PAT_E_INTERNAL, "stored record for %s does not decode", what);
    else
        svc_fail(call, PAT_E_STORAGE, "storage unavailable while %s; retry later", what);
}

static pthread_mutex_t *svc_owner_lock(svc_t *svc, const char *owner)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)owner; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &svc->owner_locks[h % SVC_OWNER_LOCKS];
}

/* Code points refused in names and text fields besides C0 controls and
 * DEL: they let one name pass for another in a list (CVE-2021-42574's
 * bidirectional overrides, zero-width characters) or break its line. */
static int svc_refused_cp(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) /* C0, DEL, C1 */
           || (cp >= 0x200b && cp <= 0x200d)                     /* zero-width */
           || cp == 0xfeff                                       /* BOM / ZWNBSP */
           || cp == 0x2028 || cp == 0x2029                       /* line, paragraph sep. */
           || (cp >= 0x202a && cp <= 0x202e)                     /* bidi embeddings */
           || (cp >= 0x2066 && cp <= 0x2069);                    /* bidi isolates */
}

int svc_valid_text(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    uint32_t cp;
    for (size_t i = 0, n; i < len; i += n)
        if ((n = wire_utf8_next(p + i, len - i, &cp)) == 0 || svc_refused_cp(cp)) return 0;
    return 1;
}

/* Validates a text field: required or not, at most max bytes, UTF-8. */
static int svc_check_text(svc_call_t *call, const char *field, const char *v, size_t max,
                          int required)
{
    size_t len = strlen(v);
    if (required && len == 0) {
        svc_fail(call, PAT_E_INVALID_FIELD, "%s is required", field);
        return -1;
    }
    if (len > max) {
        svc_fail(call, PAT_E_INVALID_FIELD, "%s is %zu bytes; at most %zu bytes of UTF-8", field,
                 len, max);
        return -1;
    }
    if (!svc_valid_text(v, len)) {
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "%s must be valid UTF-8 without control, bidirectional or zero-width "
                 "characters",
                 field);
        return -1;
    }
    return 0;
}

static int svc_valid_role(int r)
{
    return r >= PAT__V1__ROLE__ROLE_UNSPECIFIED && r <= ROLE_ADMIN;
}

static const char *svc_role_name(int r)
{
    static const char *const names[] = {"none", "member", "manager", "admin"};
    return svc_valid_role(r) ? names[r] : "unknown";
}

static int svc_is_expired(const token_rec_t *t, int64_t now)
{
    return t->expiration != 0 && now >= t->expiration;
}

static Pat__V1__TokenStatus svc_token_status(const token_rec_t *t, int64_t now)
{
    if (svc_is_expired(t, now)) return PAT__V1__TOKEN_STATUS__TOKEN_STATUS_EXPIRED;
    if (!t->active) return PAT__V1__TOKEN_STATUS__TOKEN_STATUS_REVOKED;
    return PAT__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE;
}

/* Fills a wire User from a record; strings point into rec. */
static void svc_user_pb(const user_rec_t *rec, Pat__V1__User *u)
{
    pat__v1__user__init(u);
    u->user_id = rec->user_id;
    u->user_name = rec->user_name;
    u->email = rec->email;
    u->name = rec->name;
    u->role = rec->role;
    u->user_type = rec->user_type;
    u->active = rec->active;
    u->created = rec->created;
    u->created_by = rec->created_by;
}

/* drained: the caller drained the usage buffers for this request already. */
static int64_t svc_last_used(svc_t *svc, uint64_t id, int drained)
{
    int64_t ms =
        drained ? usage_last_used_applied(svc->usage, id) : usage_last_used(svc->usage, id);
    if (ms == 0) store_last_used_get(svc->store, id, &ms);
    return ms;
}

/* Fills a wire TokenInfo; owner_pb receives the owner (may be NULL rec);
 * drained as for svc_last_used. */
static void svc_token_pb(svc_t *svc, const token_rec_t *t, const user_rec_t *owner, int64_t now,
                         int drained, Pat__V1__TokenInfo *ti, Pat__V1__User *owner_pb)
{
    pat__v1__token_info__init(ti);
    ti->id = t->id;
    ti->name = t->name;
    ti->created = t->created;
    ti->expiration = t->expiration;
    ti->last_used = svc_last_used(svc, t->id, drained);
    ti->active = t->active;
    ti->status = svc_token_status(t, now);
    ti->kind = t->kind;
    ti->scim_endpoints_only = t->scim;
    ti->created_by = t->created_by;
    if (owner) {
        svc_user_pb(owner, owner_pb);
        ti->user = owner_pb;
    }
}

/* Hex for opaque page tokens. */
static void svc_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int svc_unhex(const char *in, uint8_t *out, size_t cap, size_t *n)
{
    size_t len = strlen(in);
    if (len % 2 || len / 2 > cap) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = in[2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0) return -1;
            v = v << 4 | d;
        }
        out[i] = (uint8_t)v;
    }
    *n = len / 2;
    return 0;
}

static unsigned svc_page_size(uint32_t requested)
{
    if (requested == 0) return SVC_PAGE_DEFAULT;
    return requested > SVC_PAGE_MAX ? SVC_PAGE_MAX : requested;
}

/* ---------------------------------------------------------------- paths */

static int svc_hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int svc_normalize_path(const char *in, char *out, size_t out_cap)
{
    if (in[0] != '/' || out_cap < 2) return -1;
    size_t o = 0;
    size_t seg_starts[SVC_PATH_MAX / 2 + 1];
    size_t depth = 0;
    const char *p = in;
    while (*p && *p != '?' && *p != '#') {
        while (*p == '/')
            p++;
        if (!*p || *p == '?' || *p == '#') break;
        /* One segment. %2e is '.'; an encoded separator, NUL or '%', a %u
         * escape, a malformed escape and a control byte are refused; what
         * the escapes decode to must be valid UTF-8 (no overlong "%c0%ae"
         * that another decoder reads as "."). Other escapes stay as text. */
        char seg[SVC_PATH_MAX + 1];
        uint8_t dec[SVC_PATH_MAX + 1];
        size_t sl = 0, dl = 0;
        while (*p && *p != '/' && *p != '?' && *p != '#') {
            char c = *p;
            unsigned char uc = (unsigned char)c;
            if (c == '\\' || uc < 0x20 || uc == 0x7f) return -1;
            if (sl >= SVC_PATH_MAX) return -1;
            if (c == '%') {
                int hi = svc_hex_digit(p[1]), lo = hi < 0 ? -1 : svc_hex_digit(p[2]);
                if (hi < 0 || lo < 0) return -1; /* "%u002e", "%zz", a lone '%' */
                unsigned b = (unsigned)(hi << 4 | lo);
                if (b == '/' || b == '\\' || b == 0 || b == '%') return -1;
                dec[dl++] = (uint8_t)b;
                if (b == '.') {
                    seg[sl++] = '.';
                    p += 3;
                    continue;
                }
            } else {
                dec[dl++] = uc;
            }
            seg[sl++] = c;
            p++;
        }
        if (!wire_utf8_valid(dec, dl)) return -1;
        /* "..;x" is ".." to Tomcat and Jetty: a dot segment with parameters
         * is refused, so no backend can read it as a step up. */
        const char *semi = memchr(seg, ';', sl);
        size_t base = semi ? (size_t)(semi - seg) : sl;
        if (semi && ((base == 1 && seg[0] == '.') || (base == 2 && seg[0] == '.' && seg[1] == '.')))
            return -1;
        if (sl == 1 && seg[0] == '.') continue;
        if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            if (depth == 0) return -1; /* would escape the root */
            o = seg_starts[--depth];
            continue;
        }
        if (o + 1 + sl + 1 > out_cap) return -1;
        seg_starts[depth++] = o;
        out[o++] = '/';
        memcpy(out + o, seg, sl);
        o += sl;
    }
    if (o == 0) out[o++] = '/';
    out[o] = '\0';
    return 0;
}

int svc_path_is_scim(const svc_t *svc, const char *path)
{
    for (int i = 0; i < svc->n_scim_prefixes; i++) {
        const char *pre = svc->scim_prefixes[i];
        size_t n = strlen(pre);
        if (strncmp(path, pre, n) == 0 && (path[n] == '\0' || path[n] == '/')) return 1;
    }
    return 0;
}

int svc_add_scim_prefix(svc_t *svc, const char *prefix)
{
    if (svc->n_scim_prefixes >= SVC_SCIM_PREFIXES) return -1;
    svc->scim_prefixes[svc->n_scim_prefixes++] = prefix;
    return 0;
}

/* ---------------------------------------------------------------- authn */

/* Outcome of svc_authenticate() in cache-only mode when the answer needs
 * disk I/O (the request then goes to a worker). */
#define SVC_NEED_STORAGE PAT_E__COUNT

/* Resolves a bearer token to its token and owner, applying R11-R14 and
 * R16/R18, through the verification cache. cache_only (the network
 * thread's fast path): on a cache miss, read RocksDB from memory only
 * (memtables and block cache) and answer SVC_NEED_STORAGE rather than do
 * any I/O. */
static pat_err_t svc_authenticate(svc_t *svc, const char *tok, int64_t now, int cache_only,
                                  cache_token_t *t, cache_user_t *u, const char **why)
{
    size_t len = strlen(tok);
    if (len == 0 || len > TOKEN_MAX_LEN || token_parse(tok, len, NULL) != 0) {
        *why = "token is malformed or its checksum is wrong";
        return PAT_E_MALFORMED_TOKEN;
    }
    uint8_t hash[TOKEN_HASH_BYTES];
    token_hash(tok, len, hash);
    uint64_t epoch = 0;
    if (!cache_token_get(svc->cache, hash, t, &epoch, 0)) {
        token_rec_t *rec = NULL;
        /* On the network thread, RocksDB may answer from memory only. */
        store_status_t s = cache_only ? store_token_get_by_hash_cached(svc->store, hash, &rec)
                                      : store_token_get_by_hash(svc->store, hash, &rec);
        if (s == STORE_WOULD_BLOCK) return SVC_NEED_STORAGE; /* the worker will count it */
        cache_count_miss(svc->cache);
        if (s == STORE_OK && (rec->hash.len != TOKEN_HASH_BYTES ||
                              !token_ct_equal(rec->hash.data, hash, TOKEN_HASH_BYTES)))
            s = STORE_NOT_FOUND; /* an index entry pointing at another token */
        if (s != STORE_OK) {
            store_record_free(rec);
            *why = s == STORE_NOT_FOUND ? "token is not known (never issued, or deleted)"
                                        : "storage unavailable; retry later";
            return s == STORE_NOT_FOUND ? PAT_E_UNKNOWN_TOKEN
                   : s == STORE_CORRUPT ? PAT_E_INTERNAL
                                        : PAT_E_STORAGE;
        }
        cache_token_put(svc->cache, hash, rec, epoch);
        cache_token_from_record(rec, t);
        store_record_free(rec);
    }
    if (t->expiration != 0 && now >= t->expiration) {
        *why = "token has expired";
        return PAT_E_EXPIRED;
    }
    if (!t->active) {
        *why = "token has been revoked";
        return PAT_E_REVOKED;
    }
    if (!cache_user_get(svc->cache, t->owner_id, u, &epoch, 0)) {
        user_rec_t *rec = NULL;
        store_status_t s = cache_only ? store_user_get_cached(svc->store, t->owner_id, &rec)
                                      : store_user_get(svc->store, t->owner_id, &rec);
        if (s == STORE_WOULD_BLOCK) return SVC_NEED_STORAGE;
        cache_count_miss(svc->cache);
        if (s != STORE_OK) {
            *why = s == STORE_NOT_FOUND ? "token's user no longer exists"
                                        : "storage unavailable; retry later";
            return s == STORE_NOT_FOUND ? PAT_E_UNKNOWN_TOKEN
                   : s == STORE_CORRUPT ? PAT_E_INTERNAL
                                        : PAT_E_STORAGE;
        }
        cache_user_put(svc->cache, rec, epoch);
        cache_user_from_record(rec, u);
        store_record_free(rec);
    }
    if (!u->active) {
        *why = "token's user is deactivated";
        return PAT_E_USER_DEACTIVATED;
    }
    return PAT_E_OK;
}

/* A heap user record (as the store returns) from a cached user. */
static user_rec_t *svc_user_rec_new(const cache_user_t *c)
{
    user_rec_t *r = malloc(sizeof(*r));
    if (r == NULL) abort();
    patd__store__user_record__init(r);
    r->schema = STORE_SCHEMA_VERSION;
    r->user_id = svc_strdup_or_die(c->user_id);
    r->user_name = svc_strdup_or_die(c->user_name);
    r->email = svc_strdup_or_die(c->email);
    r->name = svc_strdup_or_die(c->name);
    r->created_by = svc_strdup_or_die(c->created_by);
    r->role = c->role;
    r->user_type = c->user_type;
    r->active = c->active;
    r->created = c->created;
    return r;
}

static void svc_principal_free(svc_principal_t *p)
{
    store_record_free(p->user);
    p->user = NULL;
}

static int svc_starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

typedef struct svc_keys {
    struct svc_keys *next_retired;
    char *buf; /* the keys, NUL-separated */
    const char *key[SVC_PLATFORM_KEYS];
    size_t len[SVC_PLATFORM_KEYS];
    int n;
} svc_keys_t;

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

static void svc_keys_free(svc_keys_t *k)
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

/* Authenticates the caller. need_user: the method acts as a user, so the
 * platform must name one with x-act-as-user. Returns 0 or -1 (call->err). */
static int svc_caller(svc_call_t *call, svc_principal_t *p, int need_user)
{
    svc_t *svc = call->svc;
    memset(p, 0, sizeof(*p));
    const char *a = call->authorization;
    if (a == NULL || *a == '\0') {
        svc_fail(call, PAT_E_MISSING_CREDENTIAL,
                 "no credential: send metadata authorization = \"Bearer <token>\"");
        return -1;
    }
    if (svc_starts_with_ci(a, "Bearer ")) {
        cache_token_t t;
        cache_user_t u;
        const char *why = "";
        pat_err_t e = svc_authenticate(svc, a + 7, clock_now_ms(), 0, &t, &u, &why);
        if (e != PAT_E_OK) {
            svc_fail(call, e, "caller's %s", why);
            return -1;
        }
        if (t.scim) {
            /* R5: a SCIM token only reaches SCIM endpoints, never this API. */
            svc_fail(call, PAT_E_SCIM_ONLY, "a SCIM token may only be used on SCIM endpoints");
            return -1;
        }
        p->user = svc_user_rec_new(&u);
        return 0;
    }
    if (svc_starts_with_ci(a, "Platform ")) {
        if (!svc_is_platform(call)) {
            svc_fail(call, PAT_E_BAD_PLATFORM_KEY, "platform key does not match");
            return -1;
        }
        if (call->act_as == NULL || *call->act_as == '\0') {
            if (need_user) {
                svc_fail(call, PAT_E_MISSING_CREDENTIAL,
                         "this method acts as a user: add metadata x-act-as-user to the "
                         "platform key, or use a Bearer token");
                return -1;
            }
            p->platform = 1;
            return 0;
        }
        store_status_t s = store_user_get(svc->store, call->act_as, &p->user);
        if (s == STORE_NOT_FOUND) {
            svc_fail(call, PAT_E_USER_NOT_FOUND, "x-act-as-user names no known user");
            return -1;
        }
        if (s != STORE_OK) {
            svc_store_fail(call, s, "reading the acting user");
            return -1;
        }
        if (!p->user->active) {
            svc_principal_free(p);
            svc_fail(call, PAT_E_USER_DEACTIVATED, "the acting user is deactivated");
            return -1;
        }
        if (p->user->user_type == TYPE_SERVICE) {
            /* Service users are API-only accounts: they act through their
             * own tokens, never through the platform acting for them. */
            svc_principal_free(p);
            svc_fail(call, PAT_E_NOT_A_HUMAN,
                     "x-act-as-user names a service user; the platform acts for humans only");
            return -1;
        }
        return 0;
    }
    svc_fail(call, PAT_E_MISSING_CREDENTIAL,
             "authorization must be \"Bearer <token>\" or \"Platform <key>\"");
    return -1;
}

static int svc_require_platform(svc_call_t *call, svc_principal_t *p)
{
    if (svc_caller(call, p, 0) != 0) return -1;
    if (!p->platform) {
        svc_principal_free(p);
        svc_fail(call, PAT_E_PLATFORM_ONLY, "only the platform principal manages users");
        return -1;
    }
    return 0;
}

static int svc_require_admin(svc_call_t *call, svc_principal_t *p)
{
    if (svc_caller(call, p, 1) != 0) return -1;
    if (p->user->role < ROLE_ADMIN) {
        svc_principal_free(p);
        svc_fail(call, PAT_E_ADMIN_ONLY, "this needs the admin role");
        return -1;
    }
    return 0;
}

/* Loads a token the caller may see. Personal tokens are visible to their
 * owner only (R3); service tokens to Admins only (R4). Anything else answers
 * exactly as a missing token. */
static int svc_load_visible(svc_call_t *call, const svc_principal_t *p, uint64_t id,
                            token_rec_t **out)
{
    store_status_t s = store_token_get(call->svc->store, id, out);
    if (s == STORE_OK) {
        token_rec_t *t = *out;
        int visible = t->kind == KIND_SERVICE ? p->user->role >= ROLE_ADMIN
                                              : strcmp(t->owner_id, p->user->user_id) == 0;
        if (visible) return 0;
        store_record_free(t);
        *out = NULL;
        s = STORE_NOT_FOUND;
    }
    if (s == STORE_NOT_FOUND)
        svc_fail(call, PAT_E_TOKEN_NOT_FOUND, "no token %llu", (unsigned long long)id);
    else
        svc_store_fail(call, s, "reading the token");
    return -1;
}

/* Records a lifecycle event of token t in the batch. A DELETED event also
 * carries whose the token was, so its owner can still read its history. */
static void svc_activity(svc_t *svc, store_batch_t *b, const token_rec_t *t, int kind, int64_t now,
                         const char *actor)
{
    Patd__Store__ActivityRecord ev = PATD__STORE__ACTIVITY_RECORD__INIT;
    ev.schema = STORE_SCHEMA_VERSION;
    ev.kind = kind;
    ev.time = now;
    ev.actor = (char *)actor;
    if (kind == PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_DELETED) {
        ev.owner_id = t->owner_id;
        ev.token_kind = t->kind;
    }
    store_batch_put_activity(b, t->id, store_activity_seq(svc->store), &ev);
}

/* ---------------------------------------------------------------- Health */

static void svc_health(Pat__V1__TokenService_Service *service, const Pat__V1__HealthRequest *in,
                       Pat__V1__HealthResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    (void)in;
    Pat__V1__HealthResponse r = PAT__V1__HEALTH_RESPONSE__INIT;
    r.status = atomic_load(&svc->stats->draining) ? PAT__V1__SERVING_STATUS__SERVING_STATUS_DRAINING
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
    done(&r, cd);
}

/* ---------------------------------------------------------------- users */

static void svc_answer_user(svc_call_t *call, const user_rec_t *rec, Pat__V1__User_Closure done)
{
    Pat__V1__User u;
    svc_user_pb(rec, &u);
    done(&u, call);
}

static void svc_upsert_user(Pat__V1__TokenService_Service *service,
                            const Pat__V1__UpsertUserRequest *in, Pat__V1__User_Closure done,
                            void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    if (svc_require_platform(call, &p) != 0) goto fail;
    const Pat__V1__User *u = in->user;
    if (u == NULL) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user is required");
        goto fail;
    }
    if (svc_check_text(call, "user.user_id", u->user_id, SVC_USER_ID_MAX, 1) ||
        svc_check_text(call, "user.user_name", u->user_name, SVC_TEXT_MAX, 0) ||
        svc_check_text(call, "user.email", u->email, SVC_TEXT_MAX, 0) ||
        svc_check_text(call, "user.name", u->name, SVC_TEXT_MAX, 0))
        goto fail;
    if (!svc_valid_role(u->role)) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user.role %d is not a Role", u->role);
        goto fail;
    }
    if (u->user_type == TYPE_SERVICE) {
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "user.user_type SERVICE: service users are made by an Admin with "
                 "CreateServiceUser");
        goto fail;
    }
    if (u->user_type != TYPE_HUMAN && u->user_type != PAT__V1__USER_TYPE__USER_TYPE_UNSPECIFIED) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user.user_type %d is not a UserType", u->user_type);
        goto fail;
    }

    pthread_mutex_t *lock = svc_owner_lock(svc, u->user_id);
    pthread_mutex_lock(lock);
    user_rec_t *old = NULL;
    store_status_t s = store_user_get(svc->store, u->user_id, &old);
    if (s != STORE_OK && s != STORE_NOT_FOUND) {
        pthread_mutex_unlock(lock);
        svc_store_fail(call, s, "reading the user");
        goto fail;
    }
    if (old && old->user_type == TYPE_SERVICE) {
        pthread_mutex_unlock(lock);
        store_record_free(old);
        svc_fail(call, PAT_E_INVALID_FIELD, "user %s is a service user; its Admins manage it",
                 u->user_id);
        goto fail;
    }
    user_rec_t rec = PATD__STORE__USER_RECORD__INIT;
    rec.schema = STORE_SCHEMA_VERSION;
    rec.user_id = u->user_id;
    rec.user_name = u->user_name;
    rec.email = u->email;
    rec.name = u->name;
    rec.user_type = TYPE_HUMAN;
    rec.role = u->role ? (int)u->role : old ? old->role : (int)ROLE_MEMBER;
    rec.active = old ? old->active : 1;
    rec.created = old ? old->created : clock_now_ms();
    rec.created_by = old ? old->created_by : (char *)"platform";
    store_batch_t *b = store_batch_new(svc->store);
    store_batch_put_user(b, &rec);
    s = store_batch_commit(b, 1);
    store_batch_free(b);
    pthread_mutex_unlock(lock);
    if (s == STORE_OK) cache_user_invalidate(svc->cache, rec.user_id);
    if (s != STORE_OK) {
        store_record_free(old);
        svc_store_fail(call, s, "writing the user");
        goto fail;
    }
    /* Every change is logged: which fields changed, not their values (names
     * and addresses are personal data, and the log is not the place). */
    if (old == NULL) {
        log_info("event=user_created user_id=%s role=%s by=platform", rec.user_id,
                 svc_role_name(rec.role));
    } else {
        if (old->role != rec.role)
            log_info("event=role_changed user_id=%s from=%s to=%s", rec.user_id,
                     svc_role_name(old->role), svc_role_name(rec.role));
        int un = strcmp(old->user_name, rec.user_name) != 0;
        int nm = strcmp(old->name, rec.name) != 0;
        int em = strcmp(old->email, rec.email) != 0;
        if (un || nm || em)
            log_info("event=user_updated user_id=%s fields=%s%s%s", rec.user_id,
                     un ? "user_name," : "", nm ? "name," : "", em ? "email," : "");
    }
    svc_answer_user(call, &rec, done);
    store_record_free(old);
    return;
fail:
    done(NULL, call);
}

static void svc_get_user(Pat__V1__TokenService_Service *service, const Pat__V1__GetUserRequest *in,
                         Pat__V1__User_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    if (svc_caller(call, &p, 0) != 0) goto fail;
    user_rec_t *u = NULL;
    store_status_t s = store_user_get(svc->store, in->user_id, &u);
    /* The platform sees everyone; a user sees themself; an Admin also sees
     * service users. Anyone else is told the user does not exist. */
    int visible = s == STORE_OK && (p.platform || strcmp(u->user_id, p.user->user_id) == 0 ||
                                    (p.user->role >= ROLE_ADMIN && u->user_type == TYPE_SERVICE));
    svc_principal_free(&p);
    if (s != STORE_OK && s != STORE_NOT_FOUND) {
        svc_store_fail(call, s, "reading the user");
        goto fail;
    }
    if (!visible) {
        store_record_free(u);
        svc_fail(call, PAT_E_USER_NOT_FOUND, "no user %s", in->user_id);
        goto fail;
    }
    svc_answer_user(call, u, done);
    store_record_free(u);
    return;
fail:
    done(NULL, call);
}

/* Collects one page of users (optionally of one type). */
typedef struct {
    int type; /* 0: all */
    unsigned want;
    unsigned n;
    int more;
    user_rec_t **recs;
} svc_user_page_t;

static int svc_user_page_cb(void *arg, const user_rec_t *u)
{
    svc_user_page_t *pg = arg;
    if (pg->type && u->user_type != pg->type) return 0;
    if (pg->n == pg->want) {
        pg->more = 1;
        return 1;
    }
    /* Re-pack to own a copy that outlives the scan's record. */
    size_t len = patd__store__user_record__get_packed_size(u);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) abort();
    patd__store__user_record__pack(u, buf);
    pg->recs[pg->n++] = patd__store__user_record__unpack(NULL, len, buf);
    free(buf);
    return 0;
}

static void svc_list_users_page(svc_call_t *call, int type, uint32_t page_size,
                                const char *page_token, Pat__V1__ListUsersResponse_Closure done)
{
    svc_t *svc = call->svc;
    uint8_t after[SVC_USER_ID_MAX + 1];
    size_t after_len = 0;
    if (svc_unhex(page_token, after, SVC_USER_ID_MAX, &after_len) != 0) {
        svc_fail(call, PAT_E_INVALID_FIELD, "page_token is not one this server returned");
        done(NULL, call);
        return;
    }
    after[after_len] = '\0';
    svc_user_page_t pg = {.type = type, .want = svc_page_size(page_size)};
    pg.recs = calloc(pg.want, sizeof(*pg.recs));
    if (pg.recs == NULL) abort();
    store_status_t s = store_users_scan(svc->store, (char *)after, svc_user_page_cb, &pg);
    if (s != STORE_OK) {
        svc_store_fail(call, s, "listing users");
        done(NULL, call);
    } else {
        Pat__V1__ListUsersResponse r = PAT__V1__LIST_USERS_RESPONSE__INIT;
        Pat__V1__User *users = calloc(pg.n ? pg.n : 1, sizeof(*users));
        Pat__V1__User **ptrs = calloc(pg.n ? pg.n : 1, sizeof(*ptrs));
        if (users == NULL || ptrs == NULL) abort();
        for (unsigned i = 0; i < pg.n; i++) {
            svc_user_pb(pg.recs[i], &users[i]);
            ptrs[i] = &users[i];
        }
        r.n_users = pg.n;
        r.users = ptrs;
        char next[2 * SVC_USER_ID_MAX + 1] = "";
        if (pg.more && pg.n) {
            const char *last = pg.recs[pg.n - 1]->user_id;
            svc_hex((const uint8_t *)last, strlen(last), next);
        }
        r.next_page_token = next;
        done(&r, call);
        free(users);
        free(ptrs);
    }
    for (unsigned i = 0; i < pg.n; i++)
        store_record_free(pg.recs[i]);
    free(pg.recs);
}

static void svc_list_users(Pat__V1__TokenService_Service *service,
                           const Pat__V1__ListUsersRequest *in,
                           Pat__V1__ListUsersResponse_Closure done, void *cd)
{
    svc_call_t *call = cd;
    svc_principal_t p;
    (void)service;
    if (svc_require_platform(call, &p) != 0) {
        done(NULL, call);
        return;
    }
    if (in->user_type < 0 || in->user_type > TYPE_SERVICE) {
        svc_fail(call, PAT_E_INVALID_FIELD, "user_type %d is not a UserType", in->user_type);
        done(NULL, call);
        return;
    }
    svc_list_users_page(call, in->user_type, in->page_size, in->page_token, done);
}

/* Counts a user's tokens whose status is ACTIVE (for R4's rules). */
typedef struct {
    svc_t *svc;
    int64_t now;
    unsigned active;
    store_status_t err;
    uint64_t *ids;
    size_t n, cap;
} svc_owned_t;

static int svc_owned_cb(void *arg, const char *name, size_t name_len, uint64_t id)
{
    svc_owned_t *o = arg;
    (void)name;
    (void)name_len;
    token_rec_t *t = NULL;
    store_status_t s = store_token_get(o->svc->store, id, &t);
    if (s != STORE_OK) {
        o->err = s;
        return 1;
    }
    if (svc_token_status(t, o->now) == PAT__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE) o->active++;
    store_record_free(t);
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 16;
        o->ids = realloc(o->ids, o->cap * sizeof(*o->ids));
        if (o->ids == NULL) abort();
    }
    o->ids[o->n++] = id;
    return 0;
}

static store_status_t svc_owned_tokens(svc_t *svc, const user_rec_t *u, svc_owned_t *o)
{
    memset(o, 0, sizeof(*o));
    o->svc = svc;
    o->now = clock_now_ms();
    int kind = u->user_type == TYPE_SERVICE ? KIND_SERVICE : KIND_PERSONAL;
    store_status_t s = store_tokens_scan(svc->store, kind, u->user_id, NULL, 0, svc_owned_cb, o);
    return s != STORE_OK ? s : o->err;
}

static void svc_set_active(Pat__V1__TokenService_Service *service, const char *user_id, int active,
                           Pat__V1__User_Closure done, svc_call_t *call)
{
    svc_t *svc = svc_of(service);
    svc_principal_t p;
    if (svc_caller(call, &p, 0) != 0) goto fail;
    /* The platform manages every user; an Admin manages service users. A
     * caller who may manage nobody gets one answer before any lookup, and
     * an Admin gets the same answer for a human as for no user: neither
     * learns which user ids exist. */
    if (!p.platform && p.user->role < ROLE_ADMIN) {
        svc_principal_free(&p);
        svc_fail(call, PAT_E_ADMIN_ONLY,
                 "managing users needs the platform principal (service users: the admin role)");
        goto fail;
    }
    pthread_mutex_t *lock = svc_owner_lock(svc, user_id);
    pthread_mutex_lock(lock);
    user_rec_t *u = NULL;
    store_status_t s = store_user_get(svc->store, user_id, &u);
    if (!p.platform && (s == STORE_NOT_FOUND || (s == STORE_OK && u->user_type != TYPE_SERVICE))) {
        pthread_mutex_unlock(lock);
        store_record_free(u);
        svc_principal_free(&p);
        svc_fail(call, PAT_E_USER_NOT_FOUND, "no service user %s", user_id);
        goto fail;
    }
    svc_principal_free(&p);
    if (s != STORE_OK) {
        pthread_mutex_unlock(lock);
        if (s == STORE_NOT_FOUND)
            svc_fail(call, PAT_E_USER_NOT_FOUND, "no user %s", user_id);
        else
            svc_store_fail(call, s, "reading the user");
        goto fail;
    }
    if (!active && u->user_type == TYPE_SERVICE) {
        svc_owned_t o;
        s = svc_owned_tokens(svc, u, &o);
        free(o.ids);
        if (s != STORE_OK || o.active) {
            pthread_mutex_unlock(lock);
            store_record_free(u);
            if (s != STORE_OK)
                svc_store_fail(call, s, "reading the service user's tokens");
            else
                svc_fail(call, PAT_E_HAS_ACTIVE_TOKENS,
                         "service user %s still has %u active token(s): revoke them first", user_id,
                         o.active);
            goto fail;
        }
    }
    if (u->active != active) {
        u->active = active;
        store_batch_t *b = store_batch_new(svc->store);
        store_batch_put_user(b, u);
        s = store_batch_commit(b, 1);
        store_batch_free(b);
        /* Before the answer: the next Verify must see the new state (R14). */
        if (s == STORE_OK) cache_user_invalidate(svc->cache, user_id);
        if (s != STORE_OK) {
            pthread_mutex_unlock(lock);
            store_record_free(u);
            svc_store_fail(call, s, "writing the user");
            goto fail;
        }
        log_info("event=%s user_id=%s", active ? "user_activated" : "user_deactivated", user_id);
    }
    pthread_mutex_unlock(lock);
    svc_answer_user(call, u, done);
    store_record_free(u);
    return;
fail:
    done(NULL, call);
}

static void svc_deactivate_user(Pat__V1__TokenService_Service *service,
                                const Pat__V1__DeactivateUserRequest *in,
                                Pat__V1__User_Closure done, void *cd)
{
    svc_set_active(service, in->user_id, 0, done, cd);
}

static void svc_activate_user(Pat__V1__TokenService_Service *service,
                              const Pat__V1__ActivateUserRequest *in, Pat__V1__User_Closure done,
                              void *cd)
{
    svc_set_active(service, in->user_id, 1, done, cd);
}

/* ---------------------------------------------------------------- service users */

static void svc_create_service_user(Pat__V1__TokenService_Service *service,
                                    const Pat__V1__CreateServiceUserRequest *in,
                                    Pat__V1__User_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    if (svc_require_admin(call, &p) != 0) goto fail;
    if (svc_check_text(call, "user_name", in->user_name, SVC_TEXT_MAX, 1) ||
        svc_check_text(call, "name", in->name, SVC_TEXT_MAX, 0) ||
        svc_check_text(call, "email", in->email, SVC_TEXT_MAX, 0)) {
        svc_principal_free(&p);
        goto fail;
    }
    if (!svc_valid_role(in->role)) {
        svc_principal_free(&p);
        svc_fail(call, PAT_E_INVALID_FIELD, "role %d is not a Role", in->role);
        goto fail;
    }
    uint8_t rnd[8];
    char id[4 + 16 + 1] = "svc_";
    if (token_random(rnd, sizeof(rnd)) != 0) {
        svc_principal_free(&p);
        svc_fail(call, PAT_E_INTERNAL, "random generator failed");
        goto fail;
    }
    svc_hex(rnd, sizeof(rnd), id + 4);
    user_rec_t rec = PATD__STORE__USER_RECORD__INIT;
    rec.schema = STORE_SCHEMA_VERSION;
    rec.user_id = id;
    rec.user_name = in->user_name;
    rec.name = in->name;
    rec.email = in->email;
    rec.role = in->role ? in->role : ROLE_MEMBER;
    rec.user_type = TYPE_SERVICE;
    rec.active = 1;
    rec.created = clock_now_ms();
    rec.created_by = p.user->user_id;
    store_batch_t *b = store_batch_new(svc->store);
    store_batch_put_user(b, &rec);
    store_status_t s = store_batch_commit(b, 1);
    store_batch_free(b);
    if (s != STORE_OK) {
        svc_principal_free(&p);
        svc_store_fail(call, s, "writing the service user");
        goto fail;
    }
    log_info("event=service_user_created user_id=%s by=%s", id, p.user->user_id);
    svc_answer_user(call, &rec, done);
    svc_principal_free(&p);
    return;
fail:
    done(NULL, call);
}

static void svc_list_service_users(Pat__V1__TokenService_Service *service,
                                   const Pat__V1__ListServiceUsersRequest *in,
                                   Pat__V1__ListUsersResponse_Closure done, void *cd)
{
    svc_call_t *call = cd;
    svc_principal_t p;
    (void)service;
    if (svc_require_admin(call, &p) != 0) {
        done(NULL, call);
        return;
    }
    svc_principal_free(&p);
    svc_list_users_page(call, TYPE_SERVICE, in->page_size, in->page_token, done);
}

static void svc_delete_service_user(Pat__V1__TokenService_Service *service,
                                    const Pat__V1__DeleteServiceUserRequest *in,
                                    Pat__V1__DeleteServiceUserResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    if (svc_require_admin(call, &p) != 0) goto fail;
    pthread_mutex_t *lock = svc_owner_lock(svc, in->user_id);
    pthread_mutex_lock(lock);
    user_rec_t *u = NULL;
    store_status_t s = store_user_get(svc->store, in->user_id, &u);
    if (s == STORE_OK && u->user_type != TYPE_SERVICE) s = STORE_NOT_FOUND;
    if (s != STORE_OK) {
        pthread_mutex_unlock(lock);
        store_record_free(u);
        svc_principal_free(&p);
        if (s == STORE_NOT_FOUND)
            svc_fail(call, PAT_E_USER_NOT_FOUND, "no service user %s", in->user_id);
        else
            svc_store_fail(call, s, "reading the service user");
        goto fail;
    }
    svc_owned_t o;
    s = svc_owned_tokens(svc, u, &o);
    if (s != STORE_OK || o.active) {
        pthread_mutex_unlock(lock);
        free(o.ids);
        store_record_free(u);
        svc_principal_free(&p);
        if (s != STORE_OK)
            svc_store_fail(call, s, "reading the service user's tokens");
        else
            svc_fail(call, PAT_E_HAS_ACTIVE_TOKENS,
                     "service user %s still has %u active token(s): revoke them first", in->user_id,
                     o.active);
        goto fail;
    }
    /* Its revoked and expired tokens go with it, in the same batch. */
    store_batch_t *b = store_batch_new(svc->store);
    uint8_t(*hashes)[TOKEN_HASH_BYTES] = calloc(o.n + 1, TOKEN_HASH_BYTES);
    if (hashes == NULL) abort();
    for (size_t i = 0; i < o.n; i++) {
        token_rec_t *t = NULL;
        if (store_token_get(svc->store, o.ids[i], &t) == STORE_OK) {
            store_batch_delete_token(b, t);
            svc_activity(svc, b, t, PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_DELETED, clock_now_ms(),
                         p.user->user_id);
            if (t->hash.len == TOKEN_HASH_BYTES) memcpy(hashes[i], t->hash.data, TOKEN_HASH_BYTES);
        }
        store_record_free(t);
    }
    store_batch_delete_user(b, in->user_id);
    usage_hold(svc->usage);
    s = store_batch_commit(b, 1);
    if (s == STORE_OK) {
        /* Before the answer: none of its tokens may verify from memory. */
        for (size_t i = 0; i < o.n; i++) {
            usage_forget(svc->usage, o.ids[i]);
            cache_token_invalidate(svc->cache, hashes[i]);
        }
        cache_user_invalidate(svc->cache, in->user_id);
    }
    free(hashes);
    usage_release(svc->usage);
    store_batch_free(b);
    pthread_mutex_unlock(lock);
    free(o.ids);
    store_record_free(u);
    if (s != STORE_OK) {
        svc_principal_free(&p);
        svc_store_fail(call, s, "deleting the service user");
        goto fail;
    }
    log_info("event=service_user_deleted user_id=%s tokens=%zu by=%s", in->user_id, o.n,
             p.user->user_id);
    svc_principal_free(&p);
    Pat__V1__DeleteServiceUserResponse r = PAT__V1__DELETE_SERVICE_USER_RESPONSE__INIT;
    done(&r, call);
    return;
fail:
    done(NULL, call);
}

/* ---------------------------------------------------------------- tokens */

static void svc_create_token(Pat__V1__TokenService_Service *service,
                             const Pat__V1__CreateTokenRequest *in,
                             Pat__V1__CreateTokenResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    user_rec_t *owner = NULL;
    if (svc_caller(call, &p, 1) != 0) goto fail;

    if (svc_check_text(call, "name", in->name, SVC_NAME_MAX, 1)) goto fail_p;
    int has_expiry = in->expiry_case == PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY_EXPIRES_IN_DAYS;
    if (has_expiry && (in->expires_in_days < 1 || in->expires_in_days > SVC_EXPIRY_MAX)) {
        svc_fail(call, PAT_E_INVALID_FIELD,
                 "expires_in_days must be 1..%d, or unset for a token that never expires; "
                 "got %d",
                 SVC_EXPIRY_MAX, in->expires_in_days);
        goto fail_p;
    }
    int kind = in->kind ? in->kind : KIND_PERSONAL;
    if (kind != KIND_PERSONAL && kind != KIND_SERVICE) {
        svc_fail(call, PAT_E_INVALID_FIELD, "kind %d is not a TokenKind", in->kind);
        goto fail_p;
    }
    if (kind == KIND_PERSONAL && in->service_user_id[0]) {
        svc_fail(call, PAT_E_INVALID_FIELD, "service_user_id is only for kind SERVICE");
        goto fail_p;
    }
    if ((kind == KIND_SERVICE || in->scim_endpoints_only) && p.user->role < ROLE_ADMIN) {
        svc_fail(call, PAT_E_ADMIN_ONLY, "%s tokens need the admin role",
                 kind == KIND_SERVICE ? "service" : "SCIM");
        goto fail_p;
    }
    const char *owner_id = p.user->user_id;
    if (kind == KIND_PERSONAL && p.user->user_type == TYPE_SERVICE) {
        svc_fail(call, PAT_E_NOT_A_HUMAN,
                 "a service user has no personal tokens; an Admin creates its service tokens");
        goto fail_p;
    }
    if (kind == KIND_SERVICE) {
        if (in->service_user_id[0] == '\0') {
            svc_fail(call, PAT_E_INVALID_FIELD, "service_user_id is required for kind SERVICE");
            goto fail_p;
        }
        owner_id = in->service_user_id;
    }

    pthread_mutex_t *lock = svc_owner_lock(svc, owner_id);
    pthread_mutex_lock(lock);
    store_status_t s = STORE_OK;
    if (kind == KIND_SERVICE) {
        s = store_user_get(svc->store, owner_id, &owner);
        if (s == STORE_OK && owner->user_type != TYPE_SERVICE) s = STORE_NOT_FOUND;
        if (s == STORE_NOT_FOUND) {
            svc_fail(call, PAT_E_USER_NOT_FOUND, "no service user %s", owner_id);
            goto fail_locked;
        }
        if (s != STORE_OK) {
            svc_store_fail(call, s, "reading the service user");
            goto fail_locked;
        }
        if (!owner->active) {
            svc_fail(call, PAT_E_USER_INACTIVE, "service user %s is deactivated", owner_id);
            goto fail_locked;
        }
    }
    uint64_t id;
    s = store_token_id_by_name(svc->store, kind, owner_id, in->name, &id);
    if (s == STORE_OK) {
        svc_fail(call, PAT_E_DUPLICATE_NAME, "a token named '%.*s' already exists for %s",
                 (int)wire_utf8_cut(in->name, 64), in->name,
                 kind == KIND_SERVICE ? "this service user" : "this user");
        goto fail_locked;
    }
    if (s != STORE_NOT_FOUND || (s = store_next_token_id(svc->store, &id)) != STORE_OK) {
        svc_store_fail(call, s, "creating the token");
        goto fail_locked;
    }
    char secret[TOKEN_MAX_LEN + 1];
    token_prefix_t prefix = in->scim_endpoints_only ? TOKEN_PREFIX_SCIM
                            : kind == KIND_SERVICE  ? TOKEN_PREFIX_SERVICE
                                                    : TOKEN_PREFIX_PERSONAL;
    if (token_generate(prefix, secret) != 0) {
        svc_fail(call, PAT_E_INTERNAL, "random generator failed");
        goto fail_locked;
    }
    uint8_t hash[TOKEN_HASH_BYTES];
    token_hash(secret, strlen(secret), hash);
    int64_t now = clock_now_ms();
    token_rec_t t = PATD__STORE__TOKEN_RECORD__INIT;
    t.schema = STORE_SCHEMA_VERSION;
    t.id = id;
    t.name = in->name;
    t.owner_id = (char *)owner_id;
    t.kind = kind;
    t.scim = in->scim_endpoints_only;
    t.created = now;
    t.expiration = has_expiry ? now + (int64_t)in->expires_in_days * 86400000 : 0;
    t.active = 1;
    t.hash.data = hash;
    t.hash.len = sizeof(hash);
    t.created_by = p.user->user_id;
    store_batch_t *b = store_batch_new(svc->store);
    store_batch_put_token(b, &t);
    svc_activity(svc, b, &t, PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_CREATED, now, p.user->user_id);
    s = store_batch_commit(b, 1);
    store_batch_free(b);
    pthread_mutex_unlock(lock);
    if (s != STORE_OK) {
        explicit_bzero(secret, sizeof(secret));
        svc_store_fail(call, s, "writing the token");
        goto fail_p;
    }
    usage_note_rows(svc->usage, id, 1);
    log_info("event=token_created id=%llu kind=%s scim=%d owner=%s by=%s", (unsigned long long)id,
             kind == KIND_SERVICE ? "service" : "personal", t.scim, owner_id, p.user->user_id);

    Pat__V1__CreateTokenResponse r = PAT__V1__CREATE_TOKEN_RESPONSE__INIT;
    Pat__V1__TokenInfo ti;
    Pat__V1__User owner_pb;
    svc_token_pb(svc, &t, owner ? owner : p.user, now, 0, &ti, &owner_pb);
    r.token = &ti;
    r.bearer_token = secret;
    done(&r, call);
    explicit_bzero(secret, sizeof(secret));
    store_record_free(owner);
    svc_principal_free(&p);
    return;
fail_locked:
    pthread_mutex_unlock(lock);
fail_p:
    store_record_free(owner);
    svc_principal_free(&p);
fail:
    done(NULL, call);
}

/* Collects one page of token ids from the owner index. */
typedef struct {
    unsigned want, n;
    int more;
    uint64_t *ids;
} svc_id_page_t;

static int svc_id_page_cb(void *arg, const char *name, size_t name_len, uint64_t id)
{
    svc_id_page_t *pg = arg;
    (void)name;
    (void)name_len;
    if (pg->n == pg->want) {
        pg->more = 1;
        return 1;
    }
    pg->ids[pg->n++] = id;
    return 0;
}

static void svc_list_tokens(Pat__V1__TokenService_Service *service,
                            const Pat__V1__ListTokensRequest *in,
                            Pat__V1__ListTokensResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    if (svc_caller(call, &p, 1) != 0) {
        done(NULL, call);
        return;
    }
    int kind = in->kind ? in->kind : KIND_PERSONAL;
    const char *owner = NULL;
    pat_err_t e = PAT_E_OK;
    if (kind == KIND_PERSONAL) {
        if (in->service_user_id[0])
            e = PAT_E_INVALID_FIELD;
        else if (p.user->user_type == TYPE_SERVICE)
            e = PAT_E_NOT_A_HUMAN;
        owner = p.user->user_id;
    } else if (kind == KIND_SERVICE) {
        if (p.user->role < ROLE_ADMIN) e = PAT_E_ADMIN_ONLY;
        owner = in->service_user_id[0] ? in->service_user_id : NULL;
    } else {
        e = PAT_E_INVALID_FIELD;
    }
    if (e != PAT_E_OK) {
        svc_fail(call, e,
                 e == PAT_E_ADMIN_ONLY    ? "listing service tokens needs the admin role"
                 : e == PAT_E_NOT_A_HUMAN ? "a service user has no personal tokens"
                 : kind != KIND_PERSONAL && kind != KIND_SERVICE
                     ? "kind is not a TokenKind"
                     : "service_user_id is only for kind SERVICE");
        svc_principal_free(&p);
        done(NULL, call);
        return;
    }
    uint8_t after[2 + SVC_USER_ID_MAX + SVC_NAME_MAX];
    size_t after_len = 0;
    if (svc_unhex(in->page_token, after, sizeof(after), &after_len) != 0) {
        svc_fail(call, PAT_E_INVALID_FIELD, "page_token is not one this server returned");
        svc_principal_free(&p);
        done(NULL, call);
        return;
    }
    svc_id_page_t pg = {.want = svc_page_size(in->page_size)};
    pg.ids = calloc(pg.want, sizeof(*pg.ids));
    token_rec_t **toks = calloc(pg.want, sizeof(*toks));
    user_rec_t **owners = calloc(pg.want, sizeof(*owners));
    Pat__V1__TokenInfo *infos = calloc(pg.want, sizeof(*infos));
    Pat__V1__TokenInfo **ptrs = calloc(pg.want, sizeof(*ptrs));
    Pat__V1__User *users = calloc(pg.want, sizeof(*users));
    if (!pg.ids || !toks || !owners || !infos || !ptrs || !users) abort();

    store_status_t s =
        store_tokens_scan(svc->store, kind, owner, after, after_len, svc_id_page_cb, &pg);
    unsigned n = 0;
    int64_t now = clock_now_ms();
    for (unsigned i = 0; s == STORE_OK && i < pg.n; i++) {
        store_status_t ts = store_token_get(svc->store, pg.ids[i], &toks[n]);
        if (ts == STORE_NOT_FOUND) continue; /* deleted since the scan */
        if (ts != STORE_OK) {
            s = ts;
            break;
        }
        /* Owners repeat in runs (index order): reuse the previous lookup. */
        if (n > 0 && strcmp(toks[n - 1]->owner_id, toks[n]->owner_id) == 0) {
            owners[n] = NULL;
        } else {
            ts = store_user_get(svc->store, toks[n]->owner_id, &owners[n]);
            if (ts != STORE_OK && ts != STORE_NOT_FOUND) s = ts;
        }
        n++;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "listing tokens");
        done(NULL, call);
    } else {
        const user_rec_t *cur = NULL;
        usage_drain(svc->usage); /* once for the page: every use recorded before the list */
        for (unsigned i = 0; i < n; i++) {
            if (owners[i] || i == 0 || strcmp(toks[i - 1]->owner_id, toks[i]->owner_id) != 0)
                cur = owners[i];
            svc_token_pb(svc, toks[i], cur, now, 1, &infos[i], &users[i]);
            ptrs[i] = &infos[i];
        }
        Pat__V1__ListTokensResponse r = PAT__V1__LIST_TOKENS_RESPONSE__INIT;
        r.n_tokens = n;
        r.tokens = ptrs;
        char next[2 * sizeof(after) + 1] = "";
        if (pg.more && n) {
            uint8_t key[sizeof(after)];
            const token_rec_t *last = toks[n - 1];
            size_t kl = store_owner_key(kind, last->owner_id, last->name, key, sizeof(key));
            svc_hex(key, kl, next);
        }
        r.next_page_token = next;
        done(&r, call);
    }
    for (unsigned i = 0; i < pg.want; i++) {
        store_record_free(toks[i]);
        store_record_free(owners[i]);
    }
    free(pg.ids);
    free(toks);
    free(owners);
    free(infos);
    free(ptrs);
    free(users);
    svc_principal_free(&p);
}

static void svc_update_token(Pat__V1__TokenService_Service *service,
                             const Pat__V1__UpdateTokenRequest *in, Pat__V1__TokenInfo_Closure done,
                             void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    token_rec_t *t = NULL;
    user_rec_t *owner = NULL;
    if (svc_caller(call, &p, 1) != 0) goto fail;
    if (svc_load_visible(call, &p, in->id, &t) != 0) goto fail_p;
    pthread_mutex_t *lock = svc_owner_lock(svc, t->owner_id);
    pthread_mutex_lock(lock);
    store_record_free(t);
    t = NULL;
    /* Re-read under the lock: it may have been deleted meanwhile. */
    if (svc_load_visible(call, &p, in->id, &t) != 0) {
        pthread_mutex_unlock(lock);
        goto fail_p;
    }
    int64_t now = clock_now_ms();
    int active = !in->revoke;
    store_status_t s = STORE_OK;
    if (active && !t->active) {
        /* A restore while the owner is deactivated would bring an old token
         * back to use the moment the owner is activated, without anyone
         * issuing one (CreateToken refuses the same owner: user_inactive). */
        user_rec_t *o = NULL;
        s = store_user_get(svc->store, t->owner_id, &o);
        int inactive = s == STORE_OK && !o->active;
        store_record_free(o);
        if (s != STORE_OK || inactive) {
            pthread_mutex_unlock(lock);
            if (s != STORE_OK)
                svc_store_fail(call, s, "reading the token's user");
            else
                svc_fail(call, PAT_E_USER_INACTIVE,
                         "the token's user is deactivated: activate the user before restoring");
            goto fail_p;
        }
    }
    if (t->active != active) {
        /* R17/R18: restore of an expired token is accepted and flips
         * `active`; expiration is untouched, so it stays expired. */
        t->active = active;
        store_batch_t *b = store_batch_new(svc->store);
        store_batch_put_token(b, t);
        svc_activity(svc, b, t,
                     active ? PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_RESTORED
                            : PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_REVOKED,
                     now, p.user->user_id);
        s = store_batch_commit(b, 1);
        store_batch_free(b);
        /* Before the answer: no later Verify may see the old state (R16). */
        if (s == STORE_OK) cache_token_invalidate(svc->cache, t->hash.data);
    }
    pthread_mutex_unlock(lock);
    if (s != STORE_OK) {
        svc_store_fail(call, s, "writing the token");
        goto fail_p;
    }
    usage_note_rows(svc->usage, t->id, 1);
    log_info("event=token_%s id=%llu by=%s", active ? "restored" : "revoked",
             (unsigned long long)t->id, p.user->user_id);
    store_user_get(svc->store, t->owner_id, &owner);
    Pat__V1__TokenInfo ti;
    Pat__V1__User owner_pb;
    svc_token_pb(svc, t, owner, now, 0, &ti, &owner_pb);
    done(&ti, call);
    store_record_free(owner);
    store_record_free(t);
    svc_principal_free(&p);
    return;
fail_p:
    store_record_free(t);
    svc_principal_free(&p);
fail:
    done(NULL, call);
}

static void svc_delete_token(Pat__V1__TokenService_Service *service,
                             const Pat__V1__DeleteTokenRequest *in,
                             Pat__V1__DeleteTokenResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    token_rec_t *t = NULL;
    if (svc_caller(call, &p, 1) != 0) goto fail;
    if (svc_load_visible(call, &p, in->id, &t) != 0) goto fail_p;
    pthread_mutex_t *lock = svc_owner_lock(svc, t->owner_id);
    pthread_mutex_lock(lock);
    store_record_free(t);
    t = NULL;
    if (svc_load_visible(call, &p, in->id, &t) != 0) {
        pthread_mutex_unlock(lock);
        goto fail_p;
    }
    if (svc_token_status(t, clock_now_ms()) == PAT__V1__TOKEN_STATUS__TOKEN_STATUS_ACTIVE) {
        pthread_mutex_unlock(lock);
        svc_fail(call, PAT_E_TOKEN_ACTIVE, "token %llu is active: revoke it first",
                 (unsigned long long)in->id);
        goto fail_p;
    }
    store_batch_t *b = store_batch_new(svc->store);
    store_batch_delete_token(b, t);
    svc_activity(svc, b, t, PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_DELETED, clock_now_ms(),
                 p.user->user_id);
    usage_hold(svc->usage);
    store_status_t s = store_batch_commit(b, 1);
    if (s == STORE_OK) {
        usage_forget(svc->usage, t->id);
        cache_token_invalidate(svc->cache, t->hash.data);
    }
    usage_release(svc->usage);
    store_batch_free(b);
    pthread_mutex_unlock(lock);
    if (s != STORE_OK) {
        svc_store_fail(call, s, "deleting the token");
        goto fail_p;
    }
    log_info("event=token_deleted id=%llu owner=%s by=%s", (unsigned long long)t->id, t->owner_id,
             p.user->user_id);
    Pat__V1__DeleteTokenResponse r = PAT__V1__DELETE_TOKEN_RESPONSE__INIT;
    done(&r, call);
    store_record_free(t);
    svc_principal_free(&p);
    return;
fail_p:
    store_record_free(t);
    svc_principal_free(&p);
fail:
    done(NULL, call);
}

typedef struct {
    unsigned want, n;
    Pat__V1__ActivityEvent *evs;
    char **strs; /* 3 copied strings per event */
} svc_activity_page_t;

static char *svc_strdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (d == NULL) abort();
    return d;
}

static int svc_activity_cb(void *arg, const Patd__Store__ActivityRecord *rec)
{
    svc_activity_page_t *pg = arg;
    Pat__V1__ActivityEvent *ev = &pg->evs[pg->n];
    pat__v1__activity_event__init(ev);
    ev->time = rec->time;
    ev->kind = rec->kind;
    ev->count = rec->count;
    ev->first_time = rec->first_time;
    ev->path = pg->strs[3 * pg->n] = svc_strdup(rec->path);
    ev->client_ip = pg->strs[3 * pg->n + 1] = svc_strdup(rec->client_ip);
    ev->actor = pg->strs[3 * pg->n + 2] = svc_strdup(rec->actor);
    return ++pg->n == pg->want;
}

/* True if id is a deleted token whose owner is the caller (or, for a
 * service token, the caller is an Admin). */
static int svc_deleted_visible(svc_t *svc, const svc_principal_t *p, uint64_t id)
{
    Patd__Store__ActivityRecord *last = NULL;
    if (store_activity_newest(svc->store, id, &last) != STORE_OK) return 0;
    int visible =
        last->kind == PAT__V1__ACTIVITY_KIND__ACTIVITY_KIND_DELETED &&
        (last->token_kind == KIND_SERVICE ? p->user->role >= ROLE_ADMIN
                                          : strcmp(last->owner_id, p->user->user_id) == 0);
    store_record_free(last);
    return visible;
}

static void svc_list_token_activity(Pat__V1__TokenService_Service *service,
                                    const Pat__V1__ListTokenActivityRequest *in,
                                    Pat__V1__ListTokenActivityResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    token_rec_t *t = NULL;
    if (svc_caller(call, &p, 1) != 0) goto fail;
    if (svc_load_visible(call, &p, in->id, &t) != 0) {
        /* A deleted token's history stays visible to whoever could see the
         * token (R22): its last event says whose it was. */
        if (call->err != PAT_E_TOKEN_NOT_FOUND || !svc_deleted_visible(svc, &p, in->id))
            goto fail_p;
        call->err = PAT_E_OK;
        call->message[0] = '\0';
    }
    if (in->limit > USAGE_KEEP) {
        svc_fail(call, PAT_E_INVALID_FIELD, "limit must be 1..%d (0 means %d)", USAGE_KEEP,
                 SVC_ACTIVITY_DEF);
        goto fail_p;
    }
    /* Make the newest uses visible now rather than after the next flush. */
    usage_flush(svc->usage);
    svc_activity_page_t pg = {.want = in->limit ? in->limit : SVC_ACTIVITY_DEF};
    pg.evs = calloc(pg.want, sizeof(*pg.evs));
    pg.strs = calloc(3 * pg.want, sizeof(*pg.strs));
    Pat__V1__ActivityEvent **ptrs = calloc(pg.want, sizeof(*ptrs));
    if (!pg.evs || !pg.strs || !ptrs) abort();
    store_status_t s = store_activity_scan(svc->store, in->id, svc_activity_cb, &pg);
    if (s != STORE_OK) {
        svc_store_fail(call, s, "reading activity");
        done(NULL, call);
    } else {
        for (unsigned i = 0; i < pg.n; i++)
            ptrs[i] = &pg.evs[i];
        Pat__V1__ListTokenActivityResponse r = PAT__V1__LIST_TOKEN_ACTIVITY_RESPONSE__INIT;
        r.n_events = pg.n;
        r.events = ptrs;
        done(&r, call);
    }
    for (unsigned i = 0; i < 3 * pg.n; i++)
        free(pg.strs[i]);
    free(pg.strs);
    free(pg.evs);
    free(ptrs);
    store_record_free(t);
    svc_principal_free(&p);
    return;
fail_p:
    store_record_free(t);
    svc_principal_free(&p);
fail:
    done(NULL, call);
}

/* ---------------------------------------------------------------- Verify */

static void svc_user_pb_c(const cache_user_t *c, Pat__V1__User *u)
{
    pat__v1__user__init(u);
    u->user_id = (char *)c->user_id;
    u->user_name = (char *)c->user_name;
    u->email = (char *)c->email;
    u->name = (char *)c->name;
    u->role = c->role;
    u->user_type = c->user_type;
    u->active = c->active;
    u->created = c->created;
    u->created_by = (char *)c->created_by;
}

/* Verify, in full (cache_only = 0) or from the cache alone. Returns 0 when
 * cache_only and storage is needed (nothing answered), else 1. */
static int svc_verify_run(svc_t *svc, const Pat__V1__VerifyRequest *in, svc_call_t *call,
                          Pat__V1__VerifyResponse_Closure done, int cache_only)
{
    char path[SVC_PATH_MAX + 1] = "";
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
    cache_token_t t;
    cache_user_t u;
    int64_t now = clock_now_ms();
    e = svc_authenticate(svc, in->bearer_token, now, cache_only, &t, &u, &why);
    if (e == SVC_NEED_STORAGE) return 0;
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
    svc_user_pb_c(&u, &user_pb);
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

static void svc_verify(Pat__V1__TokenService_Service *service, const Pat__V1__VerifyRequest *in,
                       Pat__V1__VerifyResponse_Closure done, void *cd)
{
    svc_verify_run(svc_of(service), in, cd, done, 0);
}

int svc_verify_cached(svc_t *svc, const Pat__V1__VerifyRequest *in, svc_call_t *call,
                      Pat__V1__VerifyResponse_Closure done)
{
    return svc_verify_run(svc, in, call, done, 1);
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
    for (int i = 0; i < SVC_OWNER_LOCKS; i++)
        pthread_mutex_init(&svc->owner_locks[i], NULL);
}

void svc_destroy(svc_t *svc)
{
    for (int i = 0; i < SVC_OWNER_LOCKS; i++)
        pthread_mutex_destroy(&svc->owner_locks[i]);
    svc_keys_t *k = atomic_exchange(&svc->keys, NULL);
    if (k) k->next_retired = svc->retired;
    svc_keys_free(k ? k : svc->retired);
    svc->retired = NULL;
}
