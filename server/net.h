/* net: the libuv loop thread: accept, read, frame, hand off, write.
 *
 * DESIGN. Threads have fixed roles. The loop thread owns every socket and
 * every net_conn_t; it reads, splits frames (frame.c) and queues each
 * request on libuv's thread pool (uv_queue_work), whose workers decode,
 * run the handler and encode (dispatch.c). The finished response comes
 * back to the loop thread in the after-work callback, which writes it.
 *
 * One exception, the hot path: a Verify that can be answered from memory
 * is answered on the loop thread itself (disp_handle_inline): from the
 * verification cache, or on a miss from RocksDB's memtables and block
 * cache with a read that returns "incomplete" rather than do I/O. The hop
 * to a worker and back costs two context switches and two wake-ups, which
 * on a 2-core machine were most of a Verify's cost (perf: futex and
 * interrupt handling, 80% of the cold path; RocksDB's Get, 9%). That path
 * never does I/O and never blocks: it takes only short shard mutexes.
 * Anything that would need the disk, and every other method, goes to the
 * workers.
 *
 * Bounds: a connection has at most max_inflight requests queued, running
 * or waiting to be written; at the bound the loop stops reading it (the
 * unread rest of the current chunk is stashed) until half of them are
 * written: backpressure that keeps memory bounded for a client that
 * pipelines without reading. The whole server has at most max_queue
 * requests on the pool; beyond it requests are answered OVERLOADED at once.
 * Beyond max_connections a new connection gets one TOO_MANY_CONNECTIONS
 * response and is closed. A connection that makes no progress (no bytes
 * read, no response written) for idle_timeout_ms while no worker holds one
 * of its requests is closed: silent, stalled and non-reading clients alike.
 * Responses are framed into a per-connection buffer and handed to one
 * uv_write per loop iteration (a uv_check handle), so a pipelined batch
 * costs one write system call, not one per response.
 *
 * Lifetime: a connection is reference-counted: one reference for the open
 * handle, one per request on the pool and one per pending write. A request
 * whose connection closed while it ran is finished and dropped; the memory
 * is freed when the last reference goes.
 *
 * Shutdown (SIGINT/SIGTERM): stop accepting and reading, let in-flight
 * requests finish and be written (at most drain_timeout_ms), then close
 * every connection and return from net_run(). */
#ifndef PAT_NET_H
#define PAT_NET_H

#include <stdint.h>

#include "service.h"
#include "usage.h"

typedef struct {
    const char *host;
    int port; /* 0: ephemeral, reported through port_file and the log */
    const char *port_file;
    uint32_t max_frame;
    unsigned max_connections;
    unsigned max_inflight; /* per connection */
    unsigned max_queue;    /* whole server */
    uint64_t idle_timeout_ms;
    uint64_t drain_timeout_ms;
    size_t max_output; /* bytes of responses waiting to be written, per connection */
} net_config_t;

/* Runs the server until SIGINT/SIGTERM; returns 0 after a clean drain, -1
 * if it could not listen (logged). */
int net_run(const net_config_t *cfg, svc_t *svc, usage_t *usage);

#endif
