/* harness: starts a real patd process for integration tests and wraps the
 * calls tests make over libpatclient.
 *
 * patd runs on 127.0.0.1 with an ephemeral port (--port-file) and a fresh
 * temporary data dir; its log goes to <dir>/patd.log, which tests read.
 * The binary comes from $PATD_BIN (set by ctest), or $PATD_TESTCLOCK_BIN
 * when h_start() is asked for the test clock.
 *
 * Cluster mode ($PATD_TEST_NODES = n >= 2, with PostgreSQL): h_start starts
 * n nodes on the same database (docs/cluster.md), the first one the one a
 * test names, the others given its platform key file. Writes go to the
 * first node; Verify (h_verify) and the read calls (h_call of List*, Get*,
 * Verify on a client of the first node) go to the others in turn, so every
 * test reads on another node than the one it wrote on. The test clock and
 * the injected faults move on every node; h_stop, h_kill and h_restart act
 * on the first only. */
#ifndef PAT_HARNESS_H
#define PAT_HARNESS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "patclient.h"

typedef struct patd {
    pid_t pid;
    int port;
    int http_port; /* the HTTP listener's */
    int testclock;
    char dir[256];
    char server[64];
    char log_path[300];
    char *key; /* platform key, read from the key file patd made */
    const char *extra[16];
    /* The store: "" for the embedded one in dir; with PATD_TEST_PG_DIR set
     * (ctest's .postgresql entries), a fresh database of that server. */
    char store[512];
    char db[64];
    /* Cluster mode: the other nodes (owned; NULL otherwise). */
    struct patd *peers;
    int n_peers;
    char key_file[300]; /* a peer's --platform-key-file */
    _Atomic unsigned next_reader;
} patd_t;

/* "rocksdb" or "postgresql": the backend these tests run against. */
const char *h_backend(void);
/* Runs SQL on the test's database (PostgreSQL only) with psql; its output
 * (unaligned, tuples only) into out. Returns psql's exit code. */
int h_sql(const patd_t *p, const char *sql, char *out, size_t cap);

/* Starts patd; extra is a NULL-terminated list of more flags (may be NULL).
 * Returns 0 or -1. */
int h_start(patd_t *p, int testclock, const char *const *extra);
/* Starts again on the same data dir (after h_stop or h_kill). */
int h_restart(patd_t *p);
/* SIGTERM and wait; returns the exit status (or -1 on timeout/signal). */
int h_stop(patd_t *p);
/* SIGKILL and wait. */
void h_kill(patd_t *p);
/* Stops if running and removes the data dir. */
void h_cleanup(patd_t *p);

/* Nodes: 1 + the peers; node 0 is p itself. */
int h_nodes(const patd_t *p);
patd_t *h_node(const patd_t *p, int i);
/* The node the next read goes to: a peer in turn, or p itself. */
patd_t *h_reader(const patd_t *p);

pat_client_t *h_connect(const patd_t *p);
/* Closes a client from h_connect, h_platform or h_bearer (and its twin on
 * a reading node, in cluster mode). */
void h_close(pat_client_t *c);
/* pat_set_authorization on c and its twin. */
void h_set_authorization(pat_client_t *c, const char *value);
/* A client holding the platform key, acting as user_id (NULL: platform). */
pat_client_t *h_platform(const patd_t *p, const char *user_id);
/* A client holding a bearer token. */
pat_client_t *h_bearer(const patd_t *p, const char *token);

/* Generic call; returns st->code (-1 on transport error). */
int h_call(pat_client_t *c, const char *method, const ProtobufCMessage *req,
           const ProtobufCMessageDescriptor *desc, void *out, pat_status_t *st);

/* Upserts a human user with role (1 member, 2 manager, 3 admin). */
int h_user(const patd_t *p, const char *user_id, int role);
int h_set_active(const patd_t *p, const char *user_id, int active, pat_status_t *st);
/* Creates a token through c. days < 0: never expires. Returns the secret
 * (malloc'd) and sets *id, or NULL with st filled. */
char *h_create_with(pat_client_t *c, const char *name, int days, int scim, int kind,
                    const char *service_user_id, uint64_t *id, pat_status_t *st);
/* Same, acting as user_id through the platform key (personal tokens). */
char *h_create(const patd_t *p, const char *user_id, const char *name, int days, uint64_t *id,
               pat_status_t *st);
/* Verify; returns st.code; *out (may be NULL) receives the response. */
int h_verify(const patd_t *p, const char *token, const char *path, int required_role,
             Pat__V1__VerifyResponse **out, pat_status_t *st);
int h_update(pat_client_t *c, uint64_t id, int revoke, Pat__V1__TokenInfo **out, pat_status_t *st);
int h_delete(pat_client_t *c, uint64_t id, pat_status_t *st);
/* Lists the caller's tokens of a kind (0 = personal), all pages. */
Pat__V1__TokenInfo **h_list(pat_client_t *c, int kind, const char *service_user_id, size_t *n,
                            pat_status_t *st);
void h_list_free(Pat__V1__TokenInfo **list, size_t n);
/* Sends n CreateToken requests at once on c (pipelined, names prefix0..),
 * then reads the n answers; counts those created and those refused as
 * overloaded. Returns 0, or -1 on a transport error or another answer. */
int h_create_burst(pat_client_t *c, int n, const char *prefix, int *ok, int *overloaded);
/* Moves the test clock (patd-testclock only). */
int h_advance(const patd_t *p, int64_t ms);
/* Cluster mode: every node writes its pending last-used times and use
 * events now (patd-testclock only), so a read on another node sees them
 * without waiting up to last_used_lag_ms (docs/cluster.md). No-op on one
 * node, where reads see the memory that holds them. */
int h_flush_usage(const patd_t *p);
/* Runs `patd --check` on the (stopped) data dir; returns its exit code. */
int h_check(const patd_t *p);
/* Turns injected storage write failures on or off (patd-testclock only). */
int h_set_fault(const patd_t *p, int fail_writes);
/* Both faults; cold_reads sends every cache-missing Verify to a worker. */
int h_set_faults(const patd_t *p, int fail_writes, int cold_reads);
/* 1 if the whole log (of any node) contains needle. */
int h_log_contains(const patd_t *p, const char *needle);
/* Resident memory of the patd process in KiB. */
long h_rss_kib(const patd_t *p);

#endif
