/* patclient: the C client for patd (libpatclient).
 *
 * Blocking, one TCP connection per pat_client_t, not thread-safe (use one
 * client per thread). Two ways to talk:
 *   - pat_call(): send one request and wait for its response;
 *   - pat_send() / pat_recv(): pipelining, many requests in flight,
 *     responses matched by id by the caller (they may come in any order).
 * Do not mix the two while pipelined requests are outstanding.
 *
 * Credentials: pat_set_bearer() for a token, or pat_set_platform() for the
 * platform key (optionally acting as a user). Both strings are copied and
 * wiped from memory by pat_close(). Nothing here ever prints a secret.
 *
 * Ownership: messages returned through out-pointers belong to the caller,
 * freed with protobuf_c_message_free_unpacked(msg, NULL). */
#ifndef PATCLIENT_H
#define PATCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "pat/v1/pat.pb-c.h"

#define PAT_DEFAULT_SERVER       "127.0.0.1:7700"
#define PAT_CLIENT_MAX_RESPONSE  (16u << 20)
#define PAT_TOKEN_SERVICE_PREFIX "pat.v1.TokenService/"

typedef struct pat_client pat_client_t;

/* The outcome of a call, copied out of the response. */
typedef struct {
    int code;        /* pat.v1.Code; 0 = OK */
    unsigned http;   /* matching HTTP status */
    char reason[64]; /* e.g. "duplicate_name" */
    char message[256];
} pat_status_t;

/* TLS to patd's `--listen tls://...`. */
typedef struct {
    const char *ca_file;     /* CAs that sign the server's certificate; NULL: the system's */
    const char *cert_file;   /* a client certificate (mutual TLS), or NULL */
    const char *key_file;    /* its key */
    const char *server_name; /* checked against the certificate (and SNI); NULL: the host */
} pat_tls_options_t;

/* Connects to "HOST:PORT" (IPv4, IPv6 in brackets, or a name), or over
 * TLS to "tls://HOST:PORT" with default options. timeout_ms bounds
 * connect and every later read and write (0 = none). On failure returns
 * NULL with a message in err. */
pat_client_t *pat_connect(const char *server, int timeout_ms, char *err, size_t errlen);
/* The same over TLS 1.2 or 1.3 with the server's certificate verified
 * (tls NULL: default options); the handshake is done before it returns. */
pat_client_t *pat_connect_tls(const char *server, int timeout_ms, const pat_tls_options_t *tls,
                              char *err, size_t errlen);
void pat_close(pat_client_t *c);

void pat_set_bearer(pat_client_t *c, const char *token);
/* act_as may be NULL: the platform itself (user management). */
void pat_set_platform(pat_client_t *c, const char *key, const char *act_as);
void pat_clear_credentials(pat_client_t *c);
/* Sets the raw "authorization" value, e.g. "bearer <token>" (any scheme). */
void pat_set_authorization(pat_client_t *c, const char *value);

/* One request, one response. method is a short name ("CreateToken",
 * looked up in TokenService) or a full one ("pat.v1.X/Y"). Returns 0 when a
 * response arrived (see st->code; *out is set only when it is OK and
 * out != NULL), -1 on a transport error (st->message says what). */
int pat_call(pat_client_t *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **out, pat_status_t *st);

/* Pipelining. pat_send() queues one request with the given id; returns 0
 * or -1. pat_recv() reads the next response of any id; returns 0 or -1 on
 * a transport error or EOF. */
int pat_send(pat_client_t *c, uint64_t id, const char *method, const ProtobufCMessage *req);
int pat_recv(pat_client_t *c, Pat__V1__Response **out);
/* Writes raw bytes (for tests of hostile input). */
int pat_send_raw(pat_client_t *c, const void *data, size_t len);

/* Fills st from a response's status. */
void pat_status_from(const Pat__V1__Response *r, pat_status_t *st);
/* The name of a pat.v1.Code ("NOT_FOUND"). */
const char *pat_code_name(int code);
/* The socket, for callers that poll. */
int pat_fd(const pat_client_t *c);

/* Reads a secret from a file (first line, trimmed); malloc'd or NULL. */
char *pat_read_secret_file(const char *path, char *err, size_t errlen);

#endif
