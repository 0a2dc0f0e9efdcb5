/* patclient: blocking TCP (or TLS) client speaking patd's framed protobuf. */
#include "patclient.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct pat_client {
    int fd;
    SSL_CTX *tls_ctx; /* NULL: clear text */
    SSL *tls;
    int timeout_ms;
    uint64_t next_id;
    char *authorization; /* "Bearer ..." or "Platform ..." */
    char *act_as;
};

static void pat_wipe_free(char *s)
{
    if (s == NULL) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static void pat_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void pat_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static pat_client_t *pat_connect_mode(const char *server, int timeout_ms,
                                      const pat_tls_options_t *tls, int use_tls, char *err,
                                      size_t errlen);

pat_client_t *pat_connect(const char *server, int timeout_ms, char *err, size_t errlen)
{
    if (strncmp(server, "tls://", 6) == 0)
        return pat_connect_mode(server + 6, timeout_ms, NULL, 1, err, errlen);
    return pat_connect_mode(server, timeout_ms, NULL, 0, err, errlen);
}

pat_client_t *pat_connect_tls(const char *server, int timeout_ms, const pat_tls_options_t *tls,
                              char *err, size_t errlen)
{
    if (strncmp(server, "tls://", 6) == 0) server += 6;
    return pat_connect_mode(server, timeout_ms, tls, 1, err, errlen);
}

static void pat_tls_error(char *err, size_t errlen, const char *what, const char *server)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    pat_set_err(err, errlen, "TLS to %s: %s%s%s", server, what, buf[0] ? ": " : "", buf);
}

/* The handshake over a connected socket, the server's name checked. */
static int pat_tls_start(pat_client_t *c, const char *host, const pat_tls_options_t *o,
                         const char *server, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        pat_tls_error(err, errlen, "no context", server);
        return -1;
    }
    c->tls_ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = o && o->ca_file ? SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL)
                             : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        pat_tls_error(err, errlen, "cannot read the CA file", server);
        return -1;
    }
    if (o && o->cert_file &&
        (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1 ||
         SSL_CTX_use_PrivateKey_file(ctx, o->key_file ? o->key_file : o->cert_file,
                                     SSL_FILETYPE_PEM) != 1)) {
        pat_tls_error(err, errlen, "cannot use the client certificate", server);
        return -1;
    }
    c->tls = SSL_new(ctx);
    if (c->tls == NULL) abort();
    const char *name = o && o->server_name ? o->server_name : host;
    /* An address is checked as an IP SAN, a name as a DNS one (and sent
     * as SNI, which takes names only). */
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1 || inet_pton(AF_INET6, name, &a6) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->tls), name);
    } else {
        SSL_set_tlsext_host_name(c->tls, name);
        SSL_set1_host(c->tls, name);
    }
    SSL_set_fd(c->tls, c->fd);
    if (SSL_connect(c->tls) != 1) {
        long v = SSL_get_verify_result(c->tls);
        if (v != X509_V_OK)
            pat_set_err(err, errlen, "TLS to %s: the server's certificate is not trusted: %s",
                        server, X509_verify_cert_error_string(v));
        else
            pat_tls_error(err, errlen, "handshake failed", server);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

static pat_client_t *pat_connect_mode(const char *server, int timeout_ms,
                                      const pat_tls_options_t *tls, int use_tls, char *err,
                                      size_t errlen)
{
    char host[256];
    const char *colon = strrchr(server, ':');
    if (colon == NULL || colon == server || (size_t)(colon - server) >= sizeof(host)) {
        pat_set_err(err, errlen, "server '%s' is not HOST:PORT", server);
        return NULL;
    }
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = '\0';
    if (host[0] == '[') {
        size_t hl = strlen(host);
        if (host[hl - 1] != ']') {
            pat_set_err(err, errlen, "server '%s' is not HOST:PORT", server);
            return NULL;
        }
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0) {
        pat_set_err(err, errlen, "cannot resolve %s: %s", server, gai_strerror(rc));
        return NULL;
    }
    int fd = -1;
    const char *why = "no address";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        why = strerror(errno);
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        pat_set_err(err, errlen, "cannot connect to %s: %s", server, why);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (timeout_ms > 0) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    pat_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL) abort();
    c->fd = fd;
    c->timeout_ms = timeout_ms;
    c->next_id = 1;
    if (use_tls && pat_tls_start(c, host, tls, server, err, errlen) != 0) {
        pat_close(c);
        return NULL;
    }
    return c;
}

void pat_close(pat_client_t *c)
{
    if (c == NULL) return;
    if (c->tls) {
        SSL_shutdown(c->tls);
        SSL_free(c->tls);
    }
    SSL_CTX_free(c->tls_ctx);
    close(c->fd);
    pat_clear_credentials(c);
    free(c);
}

void pat_clear_credentials(pat_client_t *c)
{
    pat_wipe_free(c->authorization);
    pat_wipe_free(c->act_as);
    c->authorization = c->act_as = NULL;
}

static char *pat_concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s == NULL) abort();
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

void pat_set_bearer(pat_client_t *c, const char *token)
{
    pat_clear_credentials(c);
    c->authorization = pat_concat("Bearer ", token);
}

void pat_set_authorization(pat_client_t *c, const char *value)
{
    pat_clear_credentials(c);
    c->authorization = pat_concat("", value);
}

void pat_set_platform(pat_client_t *c, const char *key, const char *act_as)
{
    pat_clear_credentials(c);
    c->authorization = pat_concat("Platform ", key);
    if (act_as) c->act_as = pat_concat("", act_as);
}

int pat_fd(const pat_client_t *c)
{
    return c->fd;
}

static int pat_write_all(pat_client_t *c, const uint8_t *p, size_t n)
{
    while (n > 0 && c->tls) {
        int w = SSL_write(c->tls, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (w <= 0) {
            ERR_clear_error();
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int pat_read_all(pat_client_t *c, uint8_t *p, size_t n)
{
    while (n > 0 && c->tls) {
        int r = SSL_read(c->tls, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (r <= 0) {
            ERR_clear_error();
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    while (n > 0) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int pat_send_raw(pat_client_t *c, const void *data, size_t len)
{
    return pat_write_all(c, data, len);
}

int pat_send(pat_client_t *c, uint64_t id, const char *method, const ProtobufCMessage *req)
{
    char full[256];
    if (strchr(method, '/'))
        snprintf(full, sizeof(full), "%s", method);
    else
        snprintf(full, sizeof(full), "%s%s", PAT_TOKEN_SERVICE_PREFIX, method);

    size_t plen = req ? protobuf_c_message_get_packed_size(req) : 0;
    uint8_t *payload = malloc(plen ? plen : 1);
    if (payload == NULL) abort();
    if (req) protobuf_c_message_pack(req, payload);

    Pat__V1__Request r = PAT__V1__REQUEST__INIT;
    Pat__V1__Request__MetadataEntry md[2], *mdp[2];
    r.id = id;
    r.method = full;
    r.payload.data = payload;
    r.payload.len = plen;
    size_t n = 0;
    if (c->authorization) {
        pat__v1__request__metadata_entry__init(&md[n]);
        md[n].key = "authorization";
        md[n].value = c->authorization;
        mdp[n] = &md[n];
        n++;
    }
    if (c->act_as) {
        pat__v1__request__metadata_entry__init(&md[n]);
        md[n].key = "x-act-as-user";
        md[n].value = c->act_as;
        mdp[n] = &md[n];
        n++;
    }
    r.n_metadata = n;
    r.metadata = mdp;
    size_t len = pat__v1__request__get_packed_size(&r);
    uint8_t *frame = malloc(4 + len);
    if (frame == NULL) abort();
    frame[0] = (uint8_t)(len >> 24);
    frame[1] = (uint8_t)(len >> 16);
    frame[2] = (uint8_t)(len >> 8);
    frame[3] = (uint8_t)len;
    pat__v1__request__pack(&r, frame + 4);
    int rc = pat_write_all(c, frame, 4 + len);
    /* The frame may carry a token (Verify, CreateToken's answer is ours). */
    explicit_bzero(frame, 4 + len);
    explicit_bzero(payload, plen);
    free(frame);
    free(payload);
    return rc;
}

int pat_recv(pat_client_t *c, Pat__V1__Response **out)
{
    uint8_t hdr[4];
    *out = NULL;
    if (pat_read_all(c, hdr, 4) != 0) return -1;
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len == 0 || len > PAT_CLIENT_MAX_RESPONSE) return -1;
    uint8_t *buf = malloc(len);
    if (buf == NULL) abort();
    int rc = pat_read_all(c, buf, len);
    if (rc == 0) {
        *out = pat__v1__response__unpack(NULL, len, buf);
        if (*out == NULL) rc = -1;
    }
    explicit_bzero(buf, len);
    free(buf);
    return rc;
}

void pat_status_from(const Pat__V1__Response *r, pat_status_t *st)
{
    memset(st, 0, sizeof(*st));
    if (r->status == NULL) {
        st->http = 200;
        return;
    }
    st->code = r->status->code;
    st->http = r->status->http_status;
    snprintf(st->reason, sizeof(st->reason), "%s", r->status->reason);
    snprintf(st->message, sizeof(st->message), "%s", r->status->message);
}

const char *pat_code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&pat__v1__code__descriptor, code);
    return v ? v->name : "UNKNOWN";
}

int pat_call(pat_client_t *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **out, pat_status_t *st)
{
    if (out) *out = NULL;
    memset(st, 0, sizeof(*st));
    uint64_t id = c->next_id++;
    if (pat_send(c, id, method, req) != 0) {
        st->code = -1;
        snprintf(st->message, sizeof(st->message), "send failed: %s", strerror(errno));
        return -1;
    }
    for (;;) {
        Pat__V1__Response *r;
        if (pat_recv(c, &r) != 0) {
            st->code = -1;
            snprintf(st->message, sizeof(st->message), "connection lost waiting for a response");
            return -1;
        }
        /* id 0 is the server speaking about the connection itself. */
        if (r->id != id && r->id != 0) {
            pat__v1__response__free_unpacked(r, NULL);
            continue;
        }
        pat_status_from(r, st);
        int rc = 0;
        if (st->code == 0 && out && resp_desc) {
            *out = protobuf_c_message_unpack(resp_desc, NULL, r->payload.len, r->payload.data);
            if (*out == NULL) {
                st->code = 13;
                snprintf(st->message, sizeof(st->message), "response payload is not a %s",
                         resp_desc->name);
            }
        }
        pat__v1__response__free_unpacked(r, NULL);
        return rc;
    }
}

char *pat_read_secret_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        pat_set_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[1024];
    char *line = fgets(buf, sizeof(buf), f);
    fclose(f);
    if (line == NULL) {
        pat_set_err(err, errlen, "%s is empty", path);
        return NULL;
    }
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = 0;
    char *s = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return s;
}
