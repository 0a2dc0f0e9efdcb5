/* srv: the server's event loop, its listeners (each with a protocol and a
 * transport), signals and the phased shutdown.
 *
 * DESIGN. One libuv loop, owned by the srv_t and run on the thread that
 * calls srv_run() (the loop thread). Every listener accepts into the one
 * connection set (conn.h), so limits such as max_connections and the
 * worker queue are for the whole server, whatever the listener.
 *
 * Shutdown, in phases, so that a load balancer sees the node leave before
 * its connections are refused:
 *   1. not ready: stats->draining is set (Health answers DRAINING, and the
 *      gateway's /readyz will answer 503) while everything is still served,
 *      for drain_grace_ms;
 *   2. draining: the listeners close, connections stop reading, requests in
 *      flight finish and are written (at most drain_timeout_ms);
 *   3. closed: every connection and handle is closed, uv_run returns, and
 *      srv_run checks that the loop closed with no handle left.
 * SIGTERM (what orchestrators send) starts at phase 1; SIGINT (Ctrl-C at a
 * terminal) and a second signal skip the grace; once the drain is over,
 * both are ignored while the process writes its last data and exits.
 *
 * Ownership: the caller owns cfg, stats and every listener's protocol
 * configuration; they must outlive the srv_t. */
#ifndef PAT_SRV_H
#define PAT_SRV_H

#include <stdint.h>

#include "conn.h"
#include "protocol.h"
#include "stats.h"
#include "transport.h"

#define SRV_MAX_LISTENERS 8

typedef struct {
    conn_limits_t limits;
    uint64_t drain_grace_ms;   /* phase 1 on SIGTERM */
    uint64_t drain_timeout_ms; /* phase 2 at most */
    int handle_signals;        /* install SIGINT/SIGTERM/SIGHUP handlers (patd: yes; tests: no) */
    /* SIGHUP: called on the loop thread; reloads what can be reloaded
     * without dropping a connection (the platform keys). May be NULL. */
    void (*on_reload)(void *arg);
    void *reload_arg;
    /* Phase 3, on the loop thread: close the handles of other modules
     * (srv_loop) so that the loop can end. May be NULL. */
    void (*on_close)(void *arg);
    void *close_arg;
    /* Urgent work in batches (conn_set_batch); NULL: on the pool. */
    const conn_batch_t *batch;
} srv_config_t;

typedef struct {
    const char *host; /* an IPv4 or IPv6 address */
    int port;         /* 0: any free port, reported in port_file and the log */
    const char *port_file;
    const transport_ops_t *transport;
    const void *transport_cfg; /* tls: the tls_ctx_t; tcp: NULL */
    const protocol_ops_t *protocol;
    const void *protocol_cfg;
} srv_listener_t;

typedef struct srv srv_t;

srv_t *srv_new(const srv_config_t *cfg, stats_t *stats);
/* Binds and listens; the listener copies l (its strings must outlive srv).
 * Returns 0, or -1 (logged) when the address is bad or taken. */
int srv_listen(srv_t *srv, const srv_listener_t *l);
/* The bound port of listener i (in srv_listen order). */
int srv_port(const srv_t *srv, int i);
/* The server's loop, for handles of other modules that run on the loop
 * thread (they must be closed before the shutdown ends, or srv_run fails). */
uv_loop_t *srv_loop(srv_t *srv);
/* Runs the loop until the shutdown has completed. Returns 0 after a clean
 * shutdown, -1 if the loop did not close (a handle leaked; logged). */
int srv_run(srv_t *srv);
/* Starts the shutdown from any thread, at any time (nothing once the loop
 * has closed): with the grace of phase 1 or not. */
void srv_shutdown(srv_t *srv, int with_grace);
/* Frees srv after srv_run has returned (or if it never ran). */
void srv_free(srv_t *srv);

#endif
