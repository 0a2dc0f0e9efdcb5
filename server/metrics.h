/* metrics: process-wide counters and histograms, and their Prometheus text
 * form (exposition format 0.0.4) for GET /metrics.
 *
 * Counters are kept per thread and bumped with plain adds by whichever
 * thread did the work (the loop thread for inline Verifies, workers for
 * the rest); the page sums them. Gauges (connections, cache
 * entries) are read from their owners when the page is rendered. Like
 * Redis's server.stat_* fields they are global: one process, one set.
 *
 * Ownership: metrics_render() returns a malloc'd string the caller frees. */
#ifndef PAT_METRICS_H
#define PAT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "service.h"
#include "stats.h"

/* Counts one call of the TokenService method with this index (its place
 * in the generated descriptor) and its outcome. */
void metrics_count_call(unsigned method_index, pat_err_t outcome);
/* One Verify's time in the handler, in nanoseconds. */
void metrics_observe_verify(uint64_t ns);
/* Monotonic nanoseconds, for the above. */
uint64_t metrics_now_ns(void);

/* The whole page. */
char *metrics_render(svc_t *svc, const stats_t *stats, size_t *len);

#endif
