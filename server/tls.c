/* tls: the TLS transport over memory BIOs, and its contexts (design in
 * tls.h). */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "conn.h"
#include "log.h"

#define TLS_READ_BUF (16 * 1024) /* one record's plaintext at most */

/* ---------------------------------------------------------------- contexts */

typedef struct {
    unsigned char name[16], aes[32], hmac[32];
    time_t made;
} tls_ticket_key_t;

struct tls_ctx {
    SSL_CTX *ssl; /* the current context; connections hold their own reference */
    tls_config_t cfg;
    char *cert, *key, *client_ca, *alpn;
    unsigned char alpn_wire[32];
    size_t alpn_len;
    unsigned handshakes;    /* in progress (loop thread) */
    tls_ticket_key_t tk[2]; /* [0] current, [1] previous */
};

static int tls_ctx_index = -1; /* SSL_CTX ex_data: its tls_ctx_t */

/* Counts a handshake's outcome in the server's stats (for /metrics). */
#define TLS_COUNT(ctx, field)                                                                      \
    do {                                                                                           \
        if ((ctx)->cfg.stats)                                                                      \
            atomic_fetch_add_explicit(&(ctx)->cfg.stats->field, 1, memory_order_relaxed);          \
    } while (0)

/* OpenSSL's error queue as one sentence, then cleared: converted here, at
 * the module's boundary, never further. */
static void tls_errors(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

static int tls_alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen,
                           const unsigned char *in, unsigned inlen, void *arg)
{
    tls_ctx_t *t = arg;
    (void)s;
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, t->alpn_wire, (unsigned)t->alpn_len, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* offers only protocols this port does not speak */
}

static void tls_ticket_new(tls_ticket_key_t *k)
{
    if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
        RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
        abort();
    k->made = time(NULL);
}

/* Ticket keys: encrypt with the current one (rotated when old), decrypt
 * with either; 2 asks the client to take a fresh ticket. */
static int tls_ticket_cb(SSL *s, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *ectx,
                         EVP_MAC_CTX *hctx, int enc)
{
    tls_ctx_t *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), tls_ctx_index);
    if (time(NULL) - t->tk[0].made > TLS_TICKET_ROTATE_S) {
        explicit_bzero(&t->tk[1], sizeof(t->tk[1]));
        t->tk[1] = t->tk[0];
        tls_ticket_new(&t->tk[0]);
    }
    const tls_ticket_key_t *k = NULL;
    if (enc) {
        k = &t->tk[0];
        memcpy(name, k->name, sizeof(k->name));
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
    } else {
        for (int i = 0; i < 2 && k == NULL; i++)
            if (t->tk[i].made && memcmp(name, t->tk[i].name, sizeof(t->tk[i].name)) == 0)
                k = &t->tk[i];
        if (k == NULL) return 0; /* unknown: a full handshake */
    }
    OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string("key", (void *)k->hmac, 32),
                           OSSL_PARAM_construct_utf8_string("digest", "sha256", 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
    if (enc) return EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv) == 1 ? 1 : -1;
    if (EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1) return -1;
    return k == &t->tk[0] ? 1 : 2;
}

static SSL_CTX *tls_build(tls_ctx_t *t, char *err, size_t errlen)
{
    struct stat st;
    if (stat(t->key, &st) != 0) {
        snprintf(err, errlen, "cannot read the TLS key %s", t->key);
        return NULL;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen,
                 "the TLS key %s may be read by group or others (mode %03o): chmod 600 it", t->key,
                 (unsigned)(st.st_mode & 0777));
        return NULL;
    }
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (c == NULL) {
        tls_errors(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(c, t->cert) != 1) {
        tls_errors(err, errlen, "the TLS certificate");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c, t->key, SSL_FILETYPE_PEM) != 1) {
        tls_errors(err, errlen, "the TLS key");
        goto fail;
    }
    if (SSL_CTX_check_private_key(c) != 1) {
        tls_errors(err, errlen, "the TLS key does not match the certificate");
        goto fail;
    }
    if (t->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
        if (names == NULL || SSL_CTX_load_verify_locations(c, t->client_ca, NULL) != 1) {
            if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
            tls_errors(err, errlen, "the client CA file");
            goto fail;
        }
        SSL_CTX_set_client_CA_list(c, names);
        SSL_CTX_set_verify(
            c, SSL_VERIFY_PEER | (t->cfg.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
            NULL);
    }
    if (t->alpn_len) SSL_CTX_set_alpn_select_cb(c, tls_alpn_select, t);
    /* Resumption with client certificates asked for needs a session id
     * context, else OpenSSL ends the resumed handshake with an internal
     * error (test_tls); one per kind of listener, so a session of one
     * never resumes on the other. */
    const char *sid_ctx = t->alpn ? t->alpn : "patd-framed";
    SSL_CTX_set_session_id_context(c, (const unsigned char *)sid_ctx, (unsigned)strlen(sid_ctx));
    SSL_CTX_set_ex_data(c, tls_ctx_index, t);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(c, tls_ticket_cb);
    return c;
fail:
    SSL_CTX_free(c);
    return NULL;
}

static char *tls_dup(const char *s)
{
    if (s == NULL || s[0] == '\0') return NULL;
    char *d = strdup(s);
    if (d == NULL) abort();
    return d;
}

tls_ctx_t *tls_new(const tls_config_t *cfg, char *err, size_t errlen)
{
    if (tls_ctx_index < 0) tls_ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (cfg->cert == NULL || cfg->key == NULL || !cfg->cert[0] || !cfg->key[0]) {
        snprintf(err, errlen, "a TLS listener needs --tls-cert FILE and --tls-key FILE");
        return NULL;
    }
    tls_ctx_t *t = calloc(1, sizeof(*t));
    if (t == NULL) abort();
    t->cfg = *cfg;
    t->cert = tls_dup(cfg->cert);
    t->key = tls_dup(cfg->key);
    t->client_ca = tls_dup(cfg->client_ca);
    t->alpn = tls_dup(cfg->alpn);
    if (t->alpn) {
        t->alpn_len = strlen(t->alpn) + 1;
        t->alpn_wire[0] = (unsigned char)(t->alpn_len - 1);
        memcpy(t->alpn_wire + 1, t->alpn, t->alpn_len - 1);
    }
    tls_ticket_new(&t->tk[0]);
    t->ssl = tls_build(t, err, errlen);
    if (t->ssl == NULL) {
        tls_free(t);
        return NULL;
    }
    return t;
}

int tls_reload(tls_ctx_t *t, char *err, size_t errlen)
{
    SSL_CTX *c = tls_build(t, err, errlen);
    if (c == NULL) return -1;
    SSL_CTX_free(t->ssl); /* connections made with it keep their reference */
    t->ssl = c;
    return 0;
}

void tls_free(tls_ctx_t *t)
{
    if (t == NULL) return;
    SSL_CTX_free(t->ssl);
    free(t->cert);
    free(t->key);
    free(t->client_ca);
    free(t->alpn);
    explicit_bzero(t->tk, sizeof(t->tk));
    free(t);
}

unsigned tls_handshakes(const tls_ctx_t *t)
{
    return t->handshakes;
}

/* ---------------------------------------------------------------- connections */

struct transport {
    uv_tcp_t tcp;     /* first: the handle's data points here too */
    uv_timer_t timer; /* the handshake's deadline */
    uv_write_t wr;
    conn_t *conn;
    tls_ctx_t *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
    int handshaking, closing, open_handles, verified;
    /* Ciphertext: wbuf[0, wlen) is on its way (one uv_write), out[0,
     * out_len) waits behind it. */
    unsigned char *wbuf, *out;
    size_t wlen, wcap, out_len, out_cap;
    int writing;
    int app_write; /* the connection's write() waits for CONN_IO_WRITTEN */
    const unsigned char *early;
    size_t early_len; /* a write() before the handshake finished */
};

static _Thread_local unsigned char tls_read_buf[TLS_READ_BUF];

static void tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)tls_read_buf, TLS_READ_BUF);
}

static void tls_on_closed(uv_handle_t *h)
{
    transport_t *t = h->data;
    if (--t->open_handles) return;
    conn_t *c = t->conn;
    if (t->handshaking) t->ctx->handshakes--;
    SSL_free(t->ssl); /* frees both BIOs */
    if (t->wbuf) explicit_bzero(t->wbuf, t->wcap);
    if (t->out) explicit_bzero(t->out, t->out_cap);
    free(t->wbuf);
    free(t->out);
    free(t);
    conn_io(c, CONN_IO_CLOSED, NULL, 0);
}

static void tls_shut(transport_t *t)
{
    if (t->closing) return;
    t->closing = 1;
    uv_close((uv_handle_t *)&t->timer, tls_on_closed);
    uv_close((uv_handle_t *)&t->tcp, tls_on_closed);
}

/* Moves what OpenSSL wrote into the write BIO to the end of out. */
static void tls_drain(transport_t *t)
{
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (pending == 0) return;
    if (t->out_cap - t->out_len < pending) {
        size_t cap = t->out_cap ? t->out_cap : 16 * 1024;
        while (cap - t->out_len < pending)
            cap *= 2;
        t->out = realloc(t->out, cap);
        if (t->out == NULL) abort();
        t->out_cap = cap;
    }
    int n = BIO_read(t->wbio, t->out + t->out_len, (int)pending);
    if (n > 0) t->out_len += (size_t)n;
}

static void tls_flush(transport_t *t);

static void tls_on_write(uv_write_t *req, int status)
{
    transport_t *t = req->data;
    t->writing = 0;
    t->wlen = 0;
    if (status < 0) {
        if (t->app_write) {
            t->app_write = 0;
            conn_io(t->conn, CONN_IO_WRITTEN, NULL, status);
        } else if (!t->closing) {
            conn_io(t->conn, CONN_IO_ERROR, NULL, status);
        }
        return;
    }
    tls_flush(t);
    if (!t->writing && t->out_len == 0 && t->app_write) {
        t->app_write = 0;
        conn_io(t->conn, CONN_IO_WRITTEN, NULL, 0);
    }
}

/* Sends out: what the socket takes now, the rest with one uv_write. */
static void tls_flush(transport_t *t)
{
    if (t->writing || t->out_len == 0 || t->closing) return;
    uv_buf_t b = uv_buf_init((char *)t->out, (unsigned)t->out_len);
    int n = uv_try_write((uv_stream_t *)&t->tcp, &b, 1);
    size_t sent = n > 0 ? (size_t)n : 0;
    if (n < 0 && n != UV_EAGAIN) {
        t->out_len = 0;
        return; /* the read side sees the error */
    }
    if (sent == t->out_len) {
        t->out_len = 0;
        return;
    }
    /* The rest goes out in the background from wbuf, which nothing
     * touches until it has. */
    size_t rest = t->out_len - sent;
    if (t->wcap < rest) {
        free(t->wbuf);
        t->wbuf = malloc(rest);
        if (t->wbuf == NULL) abort();
        t->wcap = rest;
    }
    memcpy(t->wbuf, t->out + sent, rest);
    t->wlen = rest;
    t->out_len = 0;
    t->wr.data = t;
    b = uv_buf_init((char *)t->wbuf, (unsigned)rest);
    if (uv_write(&t->wr, (uv_stream_t *)&t->tcp, &b, 1, tls_on_write) == 0) t->writing = 1;
}

static void tls_fail(transport_t *t, const char *why)
{
    char buf[200];
    tls_errors(buf, sizeof(buf), why);
    log_debug("tls: conn %llu: %s", (unsigned long long)conn_id(t->conn), buf);
    tls_drain(t); /* the alert, if OpenSSL made one */
    tls_flush(t);
    conn_io(t->conn, CONN_IO_ERROR, NULL, UV_EPROTO);
}

static void tls_on_deadline(uv_timer_t *timer)
{
    transport_t *t = timer->data;
    if (!t->handshaking || t->closing) return;
    TLS_COUNT(t->ctx, tls_timed_out);
    log_debug("tls: conn %llu: handshake not done within %llu ms",
              (unsigned long long)conn_id(t->conn),
              (unsigned long long)t->ctx->cfg.handshake_timeout_ms);
    conn_io(t->conn, CONN_IO_ERROR, NULL, UV_ETIMEDOUT);
}

static void tls_on_reported(uv_timer_t *timer)
{
    transport_t *t = timer->data;
    if (t->closing || !t->app_write || t->writing || t->out_len) return;
    t->app_write = 0;
    conn_io(t->conn, CONN_IO_WRITTEN, NULL, 0);
}

/* A write whose ciphertext all went out at once is reported on the next
 * loop iteration, as libuv reports a write: never from inside write(). The
 * handshake's timer is free once the handshake is done. */
static void tls_report_later(transport_t *t)
{
    if (t->app_write && !t->writing && t->out_len == 0 && !t->handshaking)
        uv_timer_start(&t->timer, tls_on_reported, 0, 0);
}

static int tls_write_plain(transport_t *t, const unsigned char *buf, size_t len)
{
    if (len == 0) return 0;
    int n = SSL_write(t->ssl, buf, (int)len);
    if (n <= 0) return -1;
    tls_drain(t);
    return 0;
}

static void tls_handshake(transport_t *t)
{
    int rc = SSL_do_handshake(t->ssl);
    tls_drain(t);
    if (rc == 1) {
        t->handshaking = 0;
        t->ctx->handshakes--;
        uv_timer_stop(&t->timer);
        t->verified =
            SSL_get0_peer_certificate(t->ssl) != NULL && SSL_get_verify_result(t->ssl) == X509_V_OK;
        TLS_COUNT(t->ctx, tls_done);
        if (SSL_session_reused(t->ssl)) TLS_COUNT(t->ctx, tls_resumed);
        if (t->early) {
            const unsigned char *e = t->early;
            t->early = NULL;
            if (tls_write_plain(t, e, t->early_len) != 0) {
                tls_fail(t, "encrypting");
                return;
            }
        }
        tls_flush(t);
        tls_report_later(t);
        return;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        tls_flush(t);
        return;
    }
    TLS_COUNT(t->ctx, tls_failed);
    tls_fail(t, "handshake failed");
}

static void tls_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    transport_t *t = s->data;
    if (t->closing) return;
    if (nread == UV_EOF) {
        conn_io(t->conn, CONN_IO_EOF, NULL, 0);
        return;
    }
    if (nread < 0) {
        conn_io(t->conn, CONN_IO_ERROR, NULL, nread);
        return;
    }
    if (nread == 0) return;
    if (BIO_write(t->rbio, buf->base, (int)nread) != (int)nread) abort();
    if (t->handshaking) {
        tls_handshake(t);
        if (t->handshaking || t->closing) return;
    }
    /* The plaintext, a record at a time; the connection may close itself
     * from inside conn_io, after which nothing more is delivered. */
    for (;;) {
        int n = SSL_read(t->ssl, tls_read_buf, TLS_READ_BUF);
        if (n > 0) {
            conn_io(t->conn, CONN_IO_READ, tls_read_buf, n);
            if (t->closing) return;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        tls_drain(t); /* tickets, key updates, alerts */
        tls_flush(t);
        if (e == SSL_ERROR_WANT_READ) return;
        if (e == SSL_ERROR_ZERO_RETURN) {
            conn_io(t->conn, CONN_IO_EOF, NULL, 0);
            return;
        }
        tls_fail(t, "reading a record");
        return;
    }
}

static transport_t *tls_accept(uv_stream_t *listener, conn_t *c, const void *cfg)
{
    tls_ctx_t *ctx = (tls_ctx_t *)cfg;
    transport_t *t = calloc(1, sizeof(*t));
    if (t == NULL) abort();
    t->conn = c;
    t->ctx = ctx;
    uv_tcp_init(listener->loop, &t->tcp);
    t->tcp.data = t;
    t->open_handles = 1;
    int rc = uv_accept(listener, (uv_stream_t *)&t->tcp);
    if (rc != 0 || ctx->handshakes >= ctx->cfg.max_handshakes) {
        if (rc != 0)
            log_warn("tls: accept failed: %s", uv_strerror(rc));
        else
            log_debug("tls: %u handshakes in progress: a new connection is closed",
                      ctx->handshakes);
        if (rc == 0) TLS_COUNT(ctx, tls_refused_busy);
        uv_close((uv_handle_t *)&t->tcp, (uv_close_cb)free);
        return NULL;
    }
    uv_tcp_nodelay(&t->tcp, 1);
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) abort();
    BIO_set_mem_eof_return(t->rbio, -1); /* an empty read BIO means "more to come" */
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    t->handshaking = 1;
    ctx->handshakes++;
    uv_timer_init(listener->loop, &t->timer);
    t->timer.data = t;
    t->open_handles = 2;
    uv_timer_start(&t->timer, tls_on_deadline, ctx->cfg.handshake_timeout_ms, 0);
    return t;
}

static int tls_read_start(transport_t *t)
{
    return uv_read_start((uv_stream_t *)&t->tcp, tls_alloc, tls_on_read);
}

static void tls_read_stop(transport_t *t)
{
    uv_read_stop((uv_stream_t *)&t->tcp);
}

static int tls_try_write(transport_t *t, const unsigned char *buf, size_t len)
{
    if (t->handshaking || t->writing || t->out_len || t->closing) return 0;
    if (tls_write_plain(t, buf, len) != 0) return UV_EPROTO;
    tls_flush(t); /* what the socket does not take now follows in the background */
    return (int)len;
}

static int tls_write(transport_t *t, const unsigned char *buf, size_t len)
{
    if (t->closing) return UV_ECANCELED;
    t->app_write = 1;
    if (t->handshaking) {
        t->early = buf; /* valid until CONN_IO_WRITTEN, by the contract */
        t->early_len = len;
        return 0;
    }
    if (tls_write_plain(t, buf, len) != 0) {
        t->app_write = 0;
        return UV_EPROTO;
    }
    tls_flush(t);
    tls_report_later(t);
    return 0;
}

static void tls_close(transport_t *t)
{
    if (t->closing) return;
    if (!t->handshaking) {
        SSL_shutdown(t->ssl); /* close_notify, best effort */
        tls_drain(t);
        if (!t->writing && t->out_len) {
            uv_buf_t b = uv_buf_init((char *)t->out, (unsigned)t->out_len);
            uv_try_write((uv_stream_t *)&t->tcp, &b, 1);
        }
    }
    tls_shut(t);
}

static int tls_peer(transport_t *t, struct sockaddr_storage *out)
{
    int len = sizeof(*out);
    return uv_tcp_getpeername(&t->tcp, (struct sockaddr *)out, &len);
}

static int tls_peer_verified(transport_t *t)
{
    return t->verified;
}

const transport_ops_t tls_transport = {
    .name = "tls",
    .accept = tls_accept,
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .try_write = tls_try_write,
    .write = tls_write,
    .close = tls_close,
    .peer = tls_peer,
    .peer_verified = tls_peer_verified,
};
