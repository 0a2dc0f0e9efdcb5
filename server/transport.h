/* transport: the byte streams a connection runs over, as a table of
 * operations (read, write, close over an accepted socket), chosen per
 * listener. Plain TCP is tcp.c, TLS tls.c: the same shape, so protocols
 * never learn which one carries them.
 *
 * DESIGN. Like Redis's ConnectionType: the connection module (conn.c) calls
 * these operations and the transport reports back through conn_io(), the
 * one place where a connection's I/O events are dispatched (libuv's
 * uv__stream_io plays that role for its streams). Loop thread only.
 *
 * Ownership: accept() returns the transport's per-connection state, which
 * the transport owns and frees after it has reported CONN_IO_CLOSED. The
 * bytes given to write() stay owned by the caller and must stay valid and
 * unchanged until the transport reports CONN_IO_WRITTEN or CONN_IO_ERROR
 * for them; a transport has at most one write outstanding. */
#ifndef PAT_TRANSPORT_H
#define PAT_TRANSPORT_H

#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct conn conn_t;
typedef struct transport transport_t;

typedef struct {
    const char *name; /* "tcp", in logs */
    /* Accepts the pending connection on listener for c, with the
     * listener's transport_cfg (tls: its tls_ctx_t; tcp: none). NULL when
     * it could not (logged); the connection is then dropped. */
    transport_t *(*accept)(uv_stream_t *listener, conn_t *c, const void *cfg);
    /* Starts or stops delivering CONN_IO_READ events. */
    int (*read_start)(transport_t *t);
    void (*read_stop)(transport_t *t);
    /* Writes what the socket takes now without waiting: returns the bytes
     * taken (0 when it would block) or a negative libuv error. */
    int (*try_write)(transport_t *t, const unsigned char *buf, size_t len);
    /* Queues len bytes; reports CONN_IO_WRITTEN (or CONN_IO_ERROR) once they
     * are written. Returns 0, or a negative libuv error and reports nothing. */
    int (*write)(transport_t *t, const unsigned char *buf, size_t len);
    /* Closes; reports CONN_IO_CLOSED once, after any write's report. */
    void (*close)(transport_t *t);
    /* The peer's address; 0 or a negative libuv error. */
    int (*peer)(transport_t *t, struct sockaddr_storage *out);
    /* 1 if the peer presented a certificate that chains to the listener's
     * client CA; NULL for a transport that has none (TCP). */
    int (*peer_verified)(transport_t *t);
} transport_ops_t;

#endif
