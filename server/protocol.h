/* protocol: what a listener speaks over its connections, as a table of
 * operations (open, feed bytes, refuse, close), chosen per listener. The
 * length-prefixed protobuf protocol is framed.c; HTTP/1.1 fits the same
 * table, and a test adds a toy line protocol through it alone.
 *
 * DESIGN. The connection module (conn.c) owns everything that is not the
 * protocol: lifetime, backpressure, timeouts, output and drain. A protocol
 * turns bytes into requests and answers into bytes with conn.h's calls:
 * conn_begin_request() for each request it reads, conn_submit() to run one
 * on the worker pool, conn_send() for the bytes of its answers. A protocol
 * that answers by id (framed) sends each answer when it is ready; one that
 * must answer in order (HTTP/1.1) keeps its own queue of finished answers
 * and sends them in turn. Loop thread only.
 *
 * Ownership: open() returns the protocol's state for one connection; the
 * connection module calls close() with it once, when the last reference to
 * the connection goes, so that work returning from the pool may still use
 * it. cfg belongs to the listener and outlives every connection. */
#ifndef PAT_PROTOCOL_H
#define PAT_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct conn conn_t;

typedef struct {
    const char *name; /* "framed", in logs */
    /* A new connection: the protocol's state for it, or NULL to drop it. */
    void *(*open)(conn_t *c, const void *cfg);
    /* Bytes read from the connection. Returns how many it consumed: less
     * than len only when conn_begin_request() answered that the connection
     * is full; the connection keeps the rest and feeds it again later. */
    size_t (*feed)(void *state, const uint8_t *data, size_t len);
    /* Answers a connection that is refused as it opens (too many
     * connections, shutting down) with one message in its own words; the
     * connection closes once it is written. */
    void (*refuse)(void *state, pat_err_t why, const char *message);
    /* The connection is gone and no work of it is pending: free state. */
    void (*close)(void *state);
    /* A short note for the idle-timeout log line ("half a frame sent"), or
     * NULL. */
    const char *(*idle_note)(void *state);
    /* Optional: 1 when a deadline of the protocol's own has passed (HTTP's
     * header timeout against slowloris), checked by the periodic sweep;
     * the connection is then closed as an idle one is. */
    int (*expired)(void *state, uint64_t now_ms);
} protocol_ops_t;

#endif
