/* svc_ui: the Access Tokens page's logins: one-time codes (CreateUiLink)
 * and the browser sessions they start (design in service.h).
 *
 * Two fixed tables behind one mutex, held for a scan and a copy, never
 * across I/O; any thread (CreateUiLink on a worker, the HTTP routes on
 * the loop). Each entry keeps the SHA-256 of its secret, never the
 * secret: a dump of patd's memory yields no usable session. The hash
 * also places it (svc_ui_at); a full window evicts the entry nearest its
 * end. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "svc_internal.h"
#include "token.h"

#define SVC_UI_CODES    256  /* codes waiting to be opened */
#define SVC_UI_SESSIONS 4096 /* browser sessions open at once */
#define SVC_UI_PROBE    16   /* slots a secret's hash may sit in */

typedef struct {
    uint8_t hash[TOKEN_HASH_BYTES];
    char user_id[SVC_USER_ID_MAX + 1];
    char csrf[SVC_UI_SECRET_LEN + 1]; /* sessions only */
    int64_t expires;                  /* 0: a free slot */
} svc_ui_entry_t;

struct svc_ui {
    pthread_mutex_t mu;
    uint64_t link_ms, session_ms;
    uint8_t csrf_key[32]; /* for the auth proxy's users' CSRF tokens */
    svc_ui_entry_t code[SVC_UI_CODES];
    svc_ui_entry_t session[SVC_UI_SESSIONS];
};

svc_ui_t *svc_ui_new(void)
{
    svc_ui_t *ui = calloc(1, sizeof(*ui));
    if (ui == NULL || token_random(ui->csrf_key, sizeof(ui->csrf_key)) != 0) abort();
    pthread_mutex_init(&ui->mu, NULL);
    ui->link_ms = 10 * 60 * 1000;
    ui->session_ms = 12 * 3600 * 1000;
    return ui;
}

void svc_ui_free(svc_ui_t *ui)
{
    if (ui == NULL) return;
    pthread_mutex_destroy(&ui->mu);
    explicit_bzero(ui, sizeof(*ui));
    free(ui);
}

void svc_ui_set_ttl(svc_t *svc, uint64_t link_ms, uint64_t session_ms)
{
    svc->ui->link_ms = link_ms;
    svc->ui->session_ms = session_ms;
}

/* An entry lives in a window of SVC_UI_PROBE slots that starts where its
 * hash points, so a lookup reads 16 slots, not the table, on the loop
 * thread. A window is always read whole: freeing a slot in it loses
 * nothing. */
static svc_ui_entry_t *svc_ui_at(svc_ui_entry_t *t, size_t n, const uint8_t *hash, size_t i)
{
    uint32_t h;
    memcpy(&h, hash, sizeof(h));
    return &t[(h + i) % n];
}

/* The live entry of hash, or NULL; expired entries of its window are freed. */
static svc_ui_entry_t *svc_ui_find(svc_ui_entry_t *t, size_t n, const uint8_t *hash, int64_t now)
{
    svc_ui_entry_t *found = NULL;
    for (size_t i = 0; i < SVC_UI_PROBE; i++) {
        svc_ui_entry_t *e = svc_ui_at(t, n, hash, i);
        if (e->expires == 0) continue;
        if (e->expires <= now) {
            explicit_bzero(e, sizeof(*e));
            continue;
        }
        if (found == NULL && token_ct_equal(e->hash, hash, TOKEN_HASH_BYTES)) found = e;
    }
    return found;
}

/* Where hash goes: a free (or expired) slot of its window, else the one
 * there that ends first. */
static svc_ui_entry_t *svc_ui_slot(svc_ui_entry_t *t, size_t n, const uint8_t *hash, int64_t now)
{
    svc_ui_entry_t *best = NULL;
    for (size_t i = 0; i < SVC_UI_PROBE; i++) {
        svc_ui_entry_t *e = svc_ui_at(t, n, hash, i);
        if (e->expires == 0 || e->expires <= now) return e;
        if (best == NULL || e->expires < best->expires) best = e;
    }
    return best;
}

static int svc_ui_hash(const char *secret, uint8_t hash[TOKEN_HASH_BYTES])
{
    size_t len = strlen(secret);
    if (len != SVC_UI_SECRET_LEN) return -1;
    token_hash(secret, len, hash);
    return 0;
}

int svc_ui_redeem(svc_t *svc, const char *code, char sid[SVC_UI_SECRET_LEN + 1],
                  char csrf[SVC_UI_SECRET_LEN + 1], int64_t *expires)
{
    svc_ui_t *ui = svc->ui;
    uint8_t hash[TOKEN_HASH_BYTES];
    if (svc_ui_hash(code, hash) != 0) return -1;
    /* sid and csrf are written only on success. */
    char new_sid[SVC_UI_SECRET_LEN + 1], new_csrf[SVC_UI_SECRET_LEN + 1];
    if (token_secret(new_sid) != 0 || token_secret(new_csrf) != 0) return -1;
    int64_t now = clock_now_ms();
    pthread_mutex_lock(&ui->mu);
    svc_ui_entry_t *c = svc_ui_find(ui->code, SVC_UI_CODES, hash, now);
    int rc = -1;
    if (c) {
        uint8_t sh[TOKEN_HASH_BYTES];
        token_hash(new_sid, SVC_UI_SECRET_LEN, sh);
        svc_ui_entry_t *s = svc_ui_slot(ui->session, SVC_UI_SESSIONS, sh, now);
        memcpy(s->hash, sh, sizeof(sh));
        snprintf(s->user_id, sizeof(s->user_id), "%s", c->user_id);
        memcpy(s->csrf, new_csrf, sizeof(s->csrf));
        memcpy(sid, new_sid, sizeof(new_sid));
        memcpy(csrf, new_csrf, sizeof(new_csrf));
        s->expires = *expires = now + (int64_t)ui->session_ms;
        log_info("event=ui_login user_id=%s", c->user_id);
        explicit_bzero(c, sizeof(*c)); /* once */
        rc = 0;
    }
    pthread_mutex_unlock(&ui->mu);
    explicit_bzero(new_sid, sizeof(new_sid));
    explicit_bzero(new_csrf, sizeof(new_csrf));
    return rc;
}

int svc_ui_session(svc_t *svc, const char *sid, char user_id[SVC_USER_ID_MAX + 1],
                   char csrf[SVC_UI_SECRET_LEN + 1])
{
    svc_ui_t *ui = svc->ui;
    uint8_t hash[TOKEN_HASH_BYTES];
    if (svc_ui_hash(sid, hash) != 0) return -1;
    pthread_mutex_lock(&ui->mu);
    svc_ui_entry_t *s = svc_ui_find(ui->session, SVC_UI_SESSIONS, hash, clock_now_ms());
    if (s) {
        memcpy(user_id, s->user_id, SVC_USER_ID_MAX + 1);
        memcpy(csrf, s->csrf, SVC_UI_SECRET_LEN + 1);
    }
    pthread_mutex_unlock(&ui->mu);
    return s ? 0 : -1;
}

void svc_ui_logout(svc_t *svc, const char *sid)
{
    svc_ui_t *ui = svc->ui;
    uint8_t hash[TOKEN_HASH_BYTES];
    if (svc_ui_hash(sid, hash) != 0) return;
    pthread_mutex_lock(&ui->mu);
    svc_ui_entry_t *s = svc_ui_find(ui->session, SVC_UI_SESSIONS, hash, clock_now_ms());
    if (s) {
        log_info("event=ui_logout user_id=%s", s->user_id);
        explicit_bzero(s, sizeof(*s));
    }
    pthread_mutex_unlock(&ui->mu);
}

void svc_ui_end_user(svc_t *svc, const char *user_id)
{
    svc_ui_t *ui = svc->ui;
    unsigned n = 0;
    pthread_mutex_lock(&ui->mu);
    for (size_t i = 0; i < SVC_UI_SESSIONS; i++) {
        if (ui->session[i].expires && strcmp(ui->session[i].user_id, user_id) == 0) {
            explicit_bzero(&ui->session[i], sizeof(ui->session[i]));
            n++;
        }
    }
    pthread_mutex_unlock(&ui->mu);
    if (n) log_info("event=ui_sessions_ended user_id=%s sessions=%u", user_id, n);
}

void svc_ui_proxy_csrf(svc_t *svc, const char *user_id, char csrf[SVC_UI_SECRET_LEN + 1])
{
    char msg[SVC_USER_ID_MAX + 16];
    snprintf(msg, sizeof(msg), "csrf|%s", user_id);
    token_mac_text(svc->ui->csrf_key, msg, csrf);
}

void svc_create_ui_link(Pat__V1__TokenService_Service *service,
                        const Pat__V1__CreateUiLinkRequest *in,
                        Pat__V1__CreateUiLinkResponse_Closure done, void *cd)
{
    svc_t *svc = svc_of(service);
    svc_call_t *call = cd;
    svc_principal_t p;
    store_user_t u;
    char code[SVC_UI_SECRET_LEN + 1];
    if (svc_require_platform(call, &p) != 0) goto fail;
    store_status_t s = store_user_get(svc->store, in->user_id, &u);
    if (s == STORE_NOT_FOUND) {
        svc_fail(call, PAT_E_USER_NOT_FOUND, "no user %s", in->user_id);
        goto fail;
    }
    if (s != STORE_OK) {
        svc_store_fail(call, s, "reading the user");
        goto fail;
    }
    if (u.user_type == TYPE_SERVICE) {
        svc_fail(call, PAT_E_NOT_A_HUMAN, "a service user is API-only: it has no page to open");
        goto fail;
    }
    if (!u.active) {
        svc_fail(call, PAT_E_USER_DEACTIVATED, "user %s is deactivated", in->user_id);
        goto fail;
    }
    if (token_secret(code) != 0) {
        svc_fail(call, PAT_E_INTERNAL, "no randomness for a login code");
        goto fail;
    }
    svc_ui_t *ui = svc->ui;
    int64_t expires = clock_now_ms() + (int64_t)ui->link_ms;
    pthread_mutex_lock(&ui->mu);
    uint8_t ch[TOKEN_HASH_BYTES];
    token_hash(code, SVC_UI_SECRET_LEN, ch);
    svc_ui_entry_t *c = svc_ui_slot(ui->code, SVC_UI_CODES, ch, clock_now_ms());
    memcpy(c->hash, ch, sizeof(ch));
    snprintf(c->user_id, sizeof(c->user_id), "%s", u.user_id);
    c->expires = expires;
    pthread_mutex_unlock(&ui->mu);
    log_info("event=ui_link_created user_id=%s", u.user_id);
    char path[64 + SVC_UI_SECRET_LEN];
    snprintf(path, sizeof(path), "/ui/login?code=%s", code);
    Pat__V1__CreateUiLinkResponse r = PAT__V1__CREATE_UI_LINK_RESPONSE__INIT;
    r.path = path;
    r.expiration = expires;
    done(&r, call);
    explicit_bzero(code, sizeof(code));
    explicit_bzero(path, sizeof(path));
    return;
fail:
    done(NULL, call);
}
