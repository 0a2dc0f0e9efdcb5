/* stats: the server-wide counters that the network side keeps and that
 * Health (and later /metrics) reads.
 *
 * Owned by main, which hands the same struct to the server (srv, conn) and
 * to the service. Written on the loop thread, read from any thread: every
 * field is atomic, and a reader may see one a moment older than another. */
#ifndef PAT_STATS_H
#define PAT_STATS_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    _Atomic uint64_t connections; /* open connections, every listener */
    _Atomic uint64_t accepted;    /* connections accepted since start */
    _Atomic uint64_t requests;    /* read and not yet answered, every listener */
    _Atomic uint64_t in_flight;   /* requests on the worker pool */
    _Atomic int draining;         /* 1 from the shutdown signal on: not ready */
    /* TLS listeners (tls.c): handshakes by how they ended. */
    _Atomic uint64_t tls_done, tls_failed, tls_timed_out, tls_refused_busy;
    _Atomic uint64_t tls_resumed; /* of tls_done: resumed from a ticket */
} stats_t;

#endif
