/* node: this patd as one node of several on one PostgreSQL store: drives
 * the store's cluster link (store_cluster_*) from the loop thread, with a
 * poll handle on its connection and a timer, so the loop never waits on
 * the database (docs/cluster.md).
 *
 * Ownership: node_start borrows the loop and the store, which outlive it;
 * node_close (on the loop thread, before the loop's last run) closes its
 * handles and frees it once they are closed. */
#ifndef PAT_NODE_H
#define PAT_NODE_H

#include <uv.h>

#include "store.h"

typedef struct node node_t;

/* NULL when the store has no cluster (RocksDB): nothing to drive. */
node_t *node_start(uv_loop_t *loop, store_t *st);
void node_close(node_t *n);

#endif
