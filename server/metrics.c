/* metrics: counters, histograms and the Prometheus text page. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "pat/v1/pat.pb-c.h"
#include "usage.h"

#define METRICS_METHODS 32 /* TokenService has fewer; checked at render */

/* Verify buckets from 10 us to 100 ms, in nanoseconds. */
static const uint64_t metrics_verify_le[] = {
    10000,   25000,   50000,    100000,   250000,   500000,    1000000,
    2500000, 5000000, 10000000, 25000000, 50000000, 100000000,
};
#define METRICS_VERIFY_BUCKETS (sizeof(metrics_verify_le) / sizeof(metrics_verify_le[0]))

/* Each thread counts into its own block, with plain increments: no locked
 * instruction on the hot path (three atomic adds per Verify were measurable
 * on pipelined Verify). The page sums the blocks; a block lives as long as
 * the process, as the loop and pool threads do. */
typedef struct metrics_tls {
    struct metrics_tls *next;
    _Atomic uint64_t calls[METRICS_METHODS][PAT_E__COUNT];
    _Atomic uint64_t verify_bucket[METRICS_VERIFY_BUCKETS + 1];
    _Atomic uint64_t verify_sum_ns;
} metrics_tls_t;

static _Thread_local metrics_tls_t *metrics_mine;
static metrics_tls_t *metrics_all;
static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;

static metrics_tls_t *metrics_tls(void)
{
    if (metrics_mine) return metrics_mine;
    metrics_tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL) abort();
    pthread_mutex_lock(&metrics_lock);
    t->next = metrics_all;
    metrics_all = t;
    pthread_mutex_unlock(&metrics_lock);
    metrics_mine = t;
    return t;
}

/* One writer per block: a relaxed load and store, which compile to a plain
 * add, while a reader on another thread still reads whole values. */
static void metrics_bump(_Atomic uint64_t *c, uint64_t by)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

void metrics_count_call(unsigned method_index, pat_err_t outcome)
{
    if (method_index < METRICS_METHODS && (unsigned)outcome < PAT_E__COUNT)
        metrics_bump(&metrics_tls()->calls[method_index][outcome], 1);
}

void metrics_observe_verify(uint64_t ns)
{
    size_t i = 0;
    while (i < METRICS_VERIFY_BUCKETS && ns > metrics_verify_le[i])
        i++;
    metrics_tls_t *t = metrics_tls();
    metrics_bump(&t->verify_bucket[i], 1);
    metrics_bump(&t->verify_sum_ns, ns);
}

static uint64_t metrics_sum_calls(unsigned m, int e)
{
    uint64_t v = 0;
    pthread_mutex_lock(&metrics_lock);
    for (metrics_tls_t *t = metrics_all; t; t = t->next)
        v += atomic_load_explicit(&t->calls[m][e], memory_order_relaxed);
    pthread_mutex_unlock(&metrics_lock);
    return v;
}

uint64_t metrics_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- the page */

typedef struct {
    char *buf;
    size_t len, cap;
} metrics_buf_t;

__attribute__((format(printf, 2, 3))) static void metrics_put(metrics_buf_t *b, const char *fmt,
                                                              ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) abort();
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n;
        b->buf = realloc(b->buf, b->cap);
        if (b->buf == NULL) abort();
    }
}

static void metrics_head(metrics_buf_t *b, const char *name, const char *type, const char *help)
{
    metrics_put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_histogram(metrics_buf_t *b, const char *name, const uint64_t *le_ns, size_t n,
                              const uint64_t *counts, uint64_t sum_ns)
{
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += counts[i];
        metrics_put(b, "%s_bucket{le=\"%g\"} %llu\n", name, (double)le_ns[i] / 1e9,
                    (unsigned long long)cum);
    }
    cum += counts[n];
    metrics_put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    metrics_put(b, "%s_sum %.9f\n", name, (double)sum_ns / 1e9);
    metrics_put(b, "%s_count %llu\n", name, (unsigned long long)cum);
}

char *metrics_render(svc_t *svc, const stats_t *stats, size_t *len)
{
    metrics_buf_t b = {.cap = 16384};
    b.buf = malloc(b.cap);
    if (b.buf == NULL) abort();

    const ProtobufCServiceDescriptor *sd = &pat__v1__token_service__descriptor;
    metrics_head(&b, "patd_requests_total", "counter",
                 "Calls of each method by outcome reason (\"ok\" for success).");
    for (unsigned m = 0; m < sd->n_methods && m < METRICS_METHODS; m++) {
        for (int e = 0; e < PAT_E__COUNT; e++) {
            uint64_t v = metrics_sum_calls(m, e);
            if (v == 0 && e != PAT_E_OK) continue;
            const char *reason = e == PAT_E_OK ? "ok" : pat_err_reason((pat_err_t)e);
            metrics_put(&b, "patd_requests_total{method=\"%s\",reason=\"%s\"} %llu\n",
                        sd->methods[m].name, reason, (unsigned long long)v);
        }
    }

    uint64_t vb[METRICS_VERIFY_BUCKETS + 1] = {0}, vsum = 0;
    pthread_mutex_lock(&metrics_lock);
    for (metrics_tls_t *t = metrics_all; t; t = t->next) {
        for (size_t i = 0; i <= METRICS_VERIFY_BUCKETS; i++)
            vb[i] += atomic_load_explicit(&t->verify_bucket[i], memory_order_relaxed);
        vsum += atomic_load_explicit(&t->verify_sum_ns, memory_order_relaxed);
    }
    pthread_mutex_unlock(&metrics_lock);
    metrics_head(&b, "patd_verify_duration_seconds", "histogram",
                 "Time a Verify spent in its handler, cache and storage included.");
    metrics_histogram(&b, "patd_verify_duration_seconds", metrics_verify_le, METRICS_VERIFY_BUCKETS,
                      vb, vsum);

    cache_stats_t cs;
    cache_stats(svc->cache, &cs);
    metrics_head(&b, "patd_cache_hits_total", "counter", "Verification cache hits.");
    metrics_put(&b, "patd_cache_hits_total %llu\n", (unsigned long long)cs.hits);
    metrics_head(&b, "patd_verify_prepared_total", "counter",
                 "Verifies answered with a prepared answer (each also two cache hits).");
    metrics_put(&b, "patd_verify_prepared_total %llu\n", (unsigned long long)cs.prepared);
    metrics_head(&b, "patd_cache_misses_total", "counter",
                 "Verification cache misses answered by the store.");
    metrics_put(&b, "patd_cache_misses_total %llu\n", (unsigned long long)cs.misses);
    metrics_head(&b, "patd_cache_evictions_total", "counter",
                 "Entries evicted from the verification cache.");
    metrics_put(&b, "patd_cache_evictions_total %llu\n", (unsigned long long)cs.evictions);
    metrics_head(&b, "patd_cache_entries", "gauge", "Tokens in the verification cache.");
    metrics_put(&b, "patd_cache_entries %llu\n", (unsigned long long)cs.entries);

    metrics_head(&b, "patd_connections", "gauge", "Open connections on every listener.");
    metrics_put(&b, "patd_connections %llu\n",
                (unsigned long long)atomic_load(&stats->connections));
    metrics_head(&b, "patd_tls_handshakes_total", "counter",
                 "TLS handshakes by how they ended: done (resumed: of those, from a session "
                 "ticket), failed, timed_out, refused_busy (beyond --tls-max-handshakes).");
    metrics_put(&b,
                "patd_tls_handshakes_total{result=\"done\"} %llu\n"
                "patd_tls_handshakes_total{result=\"resumed\"} %llu\n"
                "patd_tls_handshakes_total{result=\"failed\"} %llu\n"
                "patd_tls_handshakes_total{result=\"timed_out\"} %llu\n"
                "patd_tls_handshakes_total{result=\"refused_busy\"} %llu\n",
                (unsigned long long)atomic_load(&stats->tls_done),
                (unsigned long long)atomic_load(&stats->tls_resumed),
                (unsigned long long)atomic_load(&stats->tls_failed),
                (unsigned long long)atomic_load(&stats->tls_timed_out),
                (unsigned long long)atomic_load(&stats->tls_refused_busy));
    metrics_head(&b, "patd_connections_accepted_total", "counter",
                 "Connections accepted since start (a gateway that churns them shows here).");
    metrics_put(&b, "patd_connections_accepted_total %llu\n",
                (unsigned long long)atomic_load(&stats->accepted));
    metrics_head(&b, "patd_requests_in_flight", "gauge",
                 "Requests read and not yet answered, every listener.");
    metrics_put(&b, "patd_requests_in_flight %llu\n",
                (unsigned long long)atomic_load(&stats->requests));
    metrics_head(&b, "patd_pool_queue_depth", "gauge",
                 "Requests handed to the worker pool and not yet finished.");
    metrics_put(&b, "patd_pool_queue_depth %llu\n",
                (unsigned long long)atomic_load(&stats->in_flight));

    store_write_stats_t ws;
    store_write_stats(svc->store, &ws);
    metrics_head(&b, "patd_store_write_duration_seconds", "histogram",
                 "Time of each write batch committed to the store (synced or not).");
    metrics_histogram(&b, "patd_store_write_duration_seconds", ws.le_ns, STORE_WRITE_BUCKETS,
                      ws.counts, ws.sum_ns);

    metrics_head(&b, "patd_last_used_lag_seconds", "gauge",
                 "The most that last-used times and activity can lag in storage after a crash.");
    metrics_put(&b, "patd_last_used_lag_seconds %g\n",
                (double)(USAGE_PERSIST_MS + USAGE_FLUSH_MS) / 1000.0);
    metrics_head(&b, "patd_draining", "gauge", "1 from the shutdown signal on (not ready).");
    metrics_put(&b, "patd_draining %d\n", atomic_load(&stats->draining));
    store_cluster_t cl;
    store_cluster_status(svc->store, &cl);
    if (cl.clustered) {
        metrics_head(&b, "patd_cluster_ready", "gauge",
                     "1 while this node's lease holds and it has applied every change it knows.");
        metrics_put(&b, "patd_cluster_ready %d\n", cl.ready);
        metrics_head(&b, "patd_cluster_connected", "gauge",
                     "1 while the listening connection to PostgreSQL is up.");
        metrics_put(&b, "patd_cluster_connected %d\n", cl.connected);
        metrics_head(&b, "patd_cluster_lease_seconds", "gauge",
                     "What is left of this node's lease (<= 0: Verify reads the database).");
        metrics_put(&b, "patd_cluster_lease_seconds %g\n", (double)cl.lease_left_ms / 1000.0);
        metrics_head(&b, "patd_cluster_applied_change", "gauge",
                     "The newest change each node has applied, as this node knows it.");
        for (unsigned i = 0; i < cl.n_nodes; i++)
            metrics_put(&b, "patd_cluster_applied_change{node=\"%s\",self=\"%d\"} %lld\n",
                        cl.nodes[i].node_id, cl.nodes[i].self, (long long)cl.nodes[i].applied);
        metrics_head(&b, "patd_cluster_lag_changes", "gauge",
                     "Changes each node is behind the newest this node knows.");
        for (unsigned i = 0; i < cl.n_nodes; i++)
            metrics_put(
                &b, "patd_cluster_lag_changes{node=\"%s\"} %lld\n", cl.nodes[i].node_id,
                (long long)(cl.latest > cl.nodes[i].applied ? cl.latest - cl.nodes[i].applied : 0));
        metrics_head(&b, "patd_cluster_nodes", "gauge", "Nodes with a lease that has not expired.");
        unsigned live = 0;
        for (unsigned i = 0; i < cl.n_nodes; i++)
            live += !cl.nodes[i].expired;
        metrics_put(&b, "patd_cluster_nodes %u\n", live);
        metrics_head(&b, "patd_cluster_fences_total", "counter",
                     "Changes made here that waited for every node to apply them (the fence).");
        metrics_put(&b, "patd_cluster_fences_total %llu\n", (unsigned long long)cl.fences);
        metrics_head(&b, "patd_cluster_fence_wait_seconds_total", "counter",
                     "Time those changes waited, in all.");
        metrics_put(&b, "patd_cluster_fence_wait_seconds_total %g\n",
                    (double)cl.fence_wait_ms / 1000.0);
        metrics_head(&b, "patd_cluster_fence_timeouts_total", "counter",
                     "Of those, how many waited out a lease (a node that did not answer).");
        metrics_put(&b, "patd_cluster_fence_timeouts_total %llu\n",
                    (unsigned long long)cl.fence_timeouts);
        metrics_head(&b, "patd_cluster_reconnects_total", "counter",
                     "Times the listening connection was made again.");
        metrics_put(&b, "patd_cluster_reconnects_total %llu\n", (unsigned long long)cl.reconnects);
    }
    *len = b.len;
    return b.buf;
}
