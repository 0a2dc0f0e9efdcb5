/* tls: TLS 1.2 and 1.3 (OpenSSL 3) as a transport (transport.h), under
 * any protocol: `--listen tls://HOST:PORT`, `--http-listen https://...`.
 *
 * DESIGN. Loop thread only, never blocking: the socket is a libuv
 * uv_tcp_t as in tcp.c, and OpenSSL sees only two memory BIOs. Bytes read
 * from the socket go into the read BIO; the handshake or SSL_read runs
 * over them; whatever OpenSSL writes into the write BIO (handshake
 * records, alerts, application records, tickets) is sent. Answers are
 * encrypted as they are written: try_write encrypts and sends what the
 * socket takes at once (the ciphertext it does not take goes out in the
 * background, and try_write answers 0 until it has), write encrypts and
 * reports CONN_IO_WRITTEN once its ciphertext is on the socket, so the
 * connection module works as over plain TCP and the hot Verify stays on
 * the loop thread.
 *
 * Limits: a handshake must finish within handshake_timeout_ms, and at
 * most max_handshakes may be in progress on a listener (beyond, a new
 * connection is closed at once), so half-open TLS connections cannot fill
 * the loop. Renegotiation is refused (TLS 1.2; 1.3 has none). ALPN
 * selects the listener's protocol ("http/1.1" on the HTTP port; a client
 * offering none is served, one offering only others is refused). Session
 * tickets are encrypted with a key that rotates every TLS_TICKET_ROTATE_S
 * (the previous one still decrypts), so a resumption works for a while
 * and a stolen key decrypts little; another node falls back to a full
 * handshake.
 *
 * The context (certificate, key, client CA) is built from files at start
 * and by tls_reload (SIGHUP): a new context replaces the old for new
 * connections only; established ones keep theirs (OpenSSL counts the
 * references), and a reload that fails keeps the old one. The key file
 * is refused if group or others may read it. No key material is logged.
 *
 * Ownership: the listener's tls_ctx_t (tls_new) outlives the listener
 * and is freed by tls_free after srv_free. */
#ifndef PAT_TLS_H
#define PAT_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"
#include "transport.h"

#define TLS_TICKET_ROTATE_S (12 * 3600)

typedef struct {
    const char *cert;      /* PEM chain */
    const char *key;       /* PEM private key, mode 0600 or stricter */
    const char *client_ca; /* PEM CAs whose client certificates are verified; NULL: none asked */
    int require_client_cert;
    const char *alpn; /* "http/1.1", or NULL */
    unsigned max_handshakes;
    uint64_t handshake_timeout_ms;
    stats_t *stats; /* counts handshakes by outcome; may be NULL */
} tls_config_t;

typedef struct tls_ctx tls_ctx_t;

/* Builds the context from the files; NULL with a sentence in err. The
 * strings of cfg are copied. */
tls_ctx_t *tls_new(const tls_config_t *cfg, char *err, size_t errlen);
/* Reads the files again: 0, or -1 with err (the old context stays). */
int tls_reload(tls_ctx_t *t, char *err, size_t errlen);
void tls_free(tls_ctx_t *t);
/* Handshakes in progress, and those refused or timed out (for tests and
 * /metrics). */
unsigned tls_handshakes(const tls_ctx_t *t);

/* The transport; a listener's transport_cfg is its tls_ctx_t. */
extern const transport_ops_t tls_transport;

#endif
