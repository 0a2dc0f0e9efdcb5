/* conn: a connection's lifetime, state, backpressure, idle timeout, output
 * and drain, apart from any protocol (protocol.h) or transport
 * (transport.h); and the set of all connections of one server.
 *
 * DESIGN. Threads have fixed roles: only the loop thread touches a conn_t.
 * Work a protocol hands to the worker pool (conn_submit) runs on a worker
 * and comes back to the loop thread in its done callback.
 *
 * State is explicit, as memcached's conn_states are, instead of loose flags:
 *
 *   OPEN ----(in-flight bound)----> PAUSED ---(half written)--> OPEN
 *   OPEN/PAUSED --(server drain)--> DRAINING
 *   OPEN/PAUSED --(conn_fail)-----> FAILING --(all written)--> CLOSING
 *   any --(EOF, error, idle, output cap, drain end)-----------> CLOSING
 *
 * A connection reads only while OPEN. Every event (bytes read, bytes
 * written, the peer gone, work done) enters through conn_io() or the work
 * callback and ends in one function, conn_settle(), which alone decides
 * whether to read, resume from the stash or close; so reading is never
 * re-entered from several places.
 *
 * Bounds: at most max_inflight requests per connection are in flight (read
 * but not yet written back); at the bound the connection stops reading, and
 * keeps the unread rest of its last chunk, until half of them are written:
 * backpressure for a client that pipelines without reading. The whole
 * server has at most max_queue requests on the pool (conn_submit refuses
 * beyond). Beyond max_connections a new connection is refused by its
 * protocol and closed. A connection that makes no progress (nothing read,
 * nothing written) for idle_timeout_ms while no worker holds a request of
 * it is closed. The whole server's unwritten answers are bounded by
 * max_output_total: a connection holding more than its fair share of it
 * (the budget over the open connections) is not read until it drains, and
 * while the budget is spent a protocol answers new requests "overloaded"
 * at once (conn_budget_spent) and replaces a large finished answer by that
 * refusal (conn_budget_ok), so memory stays within the budget plus what
 * the workers are computing, however many clients stop reading. A
 * connection's unwritten output is also capped at max_output
 * bytes: beyond it the client is not reading and is cut off.
 *
 * Output: conn_send() copies bytes into the connection's buffer; the
 * buffers of all connections are written once per loop iteration (a
 * uv_check handle), so a pipelined batch costs one write system call. The
 * common case, an empty socket buffer, is one try_write with no callback;
 * the rest goes to one transport write at a time, as Redis does.
 *
 * Lifetime: reference-counted: one reference for the open transport, one
 * per request on the pool, one while on the set's list of connections with
 * output to write. The protocol's close() runs and the memory is freed when
 * the last one goes; work that finishes after the peer left sees alive = 0
 * and drops its answer. */
#ifndef PAT_CONN_H
#define PAT_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "protocol.h"
#include "stats.h"
#include "transport.h"

typedef enum {
    CONN_OPEN = 0, /* reading */
    CONN_PAUSED,   /* at the in-flight bound: not reading until half are written */
    CONN_DRAINING, /* the server is shutting down: not reading; answers still written */
    CONN_FAILING,  /* protocol error answered: not reading; closes once written */
    CONN_CLOSING,  /* closing: waiting for the transport's CONN_IO_CLOSED */
} conn_state_t;

/* What a transport reports to conn_io(). */
typedef enum {
    CONN_IO_READ,    /* data, n: bytes read (valid during the call only) */
    CONN_IO_EOF,     /* the peer closed its side */
    CONN_IO_ERROR,   /* n: the negative libuv error of a read or write */
    CONN_IO_WRITTEN, /* the outstanding write completed */
    CONN_IO_CLOSED,  /* the transport is closed and gone */
} conn_io_t;

typedef struct {
    unsigned max_connections;
    unsigned max_inflight; /* per connection */
    unsigned max_queue;    /* requests on the worker pool, whole server */
    uint64_t idle_timeout_ms;
    size_t max_output;       /* bytes of answers waiting to be written, per connection */
    size_t max_output_total; /* the same, whole server */
} conn_limits_t;

typedef struct conn_set conn_set_t;

/* Work for the pool. The protocol embeds it in its request and fills run,
 * done and urgent; conn_submit() fills the rest.
 *
 * Two lanes: a worker that becomes free takes the oldest urgent work
 * first (a Verify that must read the store), then the oldest of the rest,
 * so a cold Verify waits for a free worker, not behind a queue of pages
 * of tokens; and the last eighth of the queue's bound is the urgent
 * lane's alone. */
typedef struct conn_work {
    struct conn_work *next; /* in its lane */
    conn_t *conn;
    int urgent;
    /* An urgent work's bearer token (the request's: it outlives the work's
     * run), for conn_set_batch's prefetch; NULL if none. */
    const char *token;
    /* On a worker thread: must not touch the connection. */
    void (*run)(struct conn_work *w);
    /* On the loop thread, always called: alive is 0 when the connection
     * closed meanwhile (the answer is then dropped). */
    void (*done)(struct conn_work *w, int alive);
} conn_work_t;

/* ---------------------------------------------------------------- the set */

/* The connections of one server on loop; limits and stats must outlive it. */
conn_set_t *conn_set_new(uv_loop_t *loop, const conn_limits_t *limits, stats_t *stats);
/* Batches of urgent work, for a store whose reads are cheaper together
 * (PostgreSQL: one statement for many Verifies). A thread of its own takes
 * every urgent work queued at once, calls prefetch with their tokens (it
 * reads what they will need in one go), runs each, calls done(arg), and
 * hands them back to the loop in one wake-up: per batch, one wake-up of
 * the thread, one round trip to the store and one of the loop, where the
 * pool pays one of each per request. Urgent work then never goes to the
 * pool. Call before serving; NULL prefetch: the pool runs urgent work. */
typedef struct {
    void (*prefetch)(void *arg, const char *const *tokens, size_t n);
    void (*done)(void *arg);
    void *arg;
} conn_batch_t;
int conn_set_batch(conn_set_t *s, const conn_batch_t *b);

/* Accepts one connection from listener with the listener's transport and
 * protocol (cfg is handed to the protocol's open). */
void conn_set_accept(conn_set_t *s, uv_stream_t *listener, const transport_ops_t *tr,
                     const void *tr_cfg, const protocol_ops_t *proto, const void *cfg,
                     int refuse_all);
/* Closes connections without progress for the idle timeout; call it
 * periodically (a fraction of the timeout). */
void conn_set_sweep(conn_set_t *s);
/* Shutdown: every connection stops reading; answers still get written. */
void conn_set_drain(conn_set_t *s);
/* 1 when no request is on the pool or waiting to be written. */
int conn_set_idle(const conn_set_t *s);
unsigned conn_set_queued(const conn_set_t *s);
unsigned conn_set_count(const conn_set_t *s);
/* Closes every connection and the set's handle. */
void conn_set_close(conn_set_t *s);
/* Frees the set once uv_run has returned: every close callback has run and
 * no work is left on the pool (libuv runs close callbacks last-closed
 * first, so the set cannot go in its own handle's callback). */
void conn_set_free(conn_set_t *s);

/* ---------------------------------------------------------------- transports */

/* The one entry point of a transport's events. */
void conn_io(conn_t *c, conn_io_t ev, const uint8_t *data, ssize_t n);

/* ---------------------------------------------------------------- protocols */

/* Counts one request read from c; returns 1 when c has reached its
 * in-flight bound and the protocol must stop consuming input. */
int conn_begin_request(conn_t *c);
/* Queues len bytes of answers (copied), which complete `completes`
 * requests once written. The caller wipes its own copy if it is secret. */
void conn_send(conn_t *c, const uint8_t *data, size_t len, unsigned completes);
/* Two parts in one call: a header and a body, e.g. a frame's length. */
void conn_send2(conn_t *c, const uint8_t *head, size_t head_len, const uint8_t *body,
                size_t body_len, unsigned completes);
/* The same for answers that hold no secret (a Verify's): the copies are
 * not wiped after the write. Answers sent with conn_send() are, with
 * everything queued before them: wiping a pipelined batch of Verify
 * answers was 7% of a hot /v1/verify's instructions. */
void conn_send2_public(conn_t *c, const uint8_t *head, size_t head_len, const uint8_t *body,
                       size_t body_len, unsigned completes);
/* Runs w on the worker pool; -1 without running it when the server's
 * queue is full (the protocol answers "overloaded"). */
int conn_submit(conn_t *c, conn_work_t *w);
/* 1 while the server's budget for unwritten answers is spent and c itself
 * holds unread answers: the protocol answers a new request "overloaded"
 * without computing it. */
int conn_budget_spent(const conn_t *c);
/* 1 if an answer of len bytes fits the budget; a protocol sends a
 * refusal instead of a large answer that does not. */
int conn_budget_ok(const conn_t *c, size_t len);
/* The protocol answered an error it cannot recover from: stop reading and
 * close once every answer is written. */
void conn_fail(conn_t *c);
/* The loop's monotonic ms (uv_now): the clock of activity, of the idle
 * sweep and of protocol_ops_t.expired's now_ms, so a protocol's deadline
 * is set on the clock it is checked against. */
uint64_t conn_now_ms(const conn_t *c);
/* 1 when the server is draining: the protocol answers "shutting down". */
int conn_draining(const conn_t *c);
conn_state_t conn_state(const conn_t *c);
uint64_t conn_id(const conn_t *c);
int conn_peer(const conn_t *c, struct sockaddr_storage *out);
/* 1 if the peer's client certificate was verified (TLS with a client CA). */
int conn_peer_verified(const conn_t *c);
/* 1 if the connection runs over TLS. */
int conn_is_tls(const conn_t *c);
/* An address as text ("192.0.2.1", "2001:db8::1"; an IPv4 peer on a
 * dual-stack socket as IPv4), "unknown" if it has none. */
void conn_addr_text(const struct sockaddr_storage *a, char *out, size_t cap);
/* The protocol's state of c. */
void *conn_protocol_state(const conn_t *c);

#endif
