/* node: the loop's side of the store's cluster link (design in node.h). */
#include "node.h"

#include <stdlib.h>

struct node {
    store_t *st;
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_poll_t *poll; /* on the link's socket; remade with each connection */
    int fd, closing, handles;
    uint64_t gen;
};

static void node_step(node_t *n);

static void node_on_poll(uv_poll_t *p, int status, int events)
{
    (void)status; /* an error shows in the step, as a failed read */
    (void)events;
    node_step(p->data);
}

static void node_on_timer(uv_timer_t *t)
{
    node_step(t->data);
}

static void node_free_poll(uv_handle_t *h)
{
    free(h);
}

static void node_on_closed(uv_handle_t *h)
{
    node_t *n = h->data;
    if (--n->handles == 0) free(n);
}

/* Steps the link, then polls what it now waits for. The poll stops during
 * the step: the step may close the socket and open another one. */
static void node_step(node_t *n)
{
    if (n->closing) return;
    if (n->poll) uv_poll_stop(n->poll);
    uint64_t ms = store_cluster_step(n->st);
    int want_write;
    uint64_t gen;
    int fd = store_cluster_fd(n->st, &want_write, &gen);
    if (n->poll && (fd < 0 || fd != n->fd || gen != n->gen)) {
        uv_close((uv_handle_t *)n->poll, node_free_poll);
        n->poll = NULL;
    }
    if (fd >= 0 && n->poll == NULL) {
        n->poll = malloc(sizeof(*n->poll));
        if (n->poll == NULL) abort();
        if (uv_poll_init(n->loop, n->poll, fd) != 0) {
            free(n->poll);
            n->poll = NULL;
        } else {
            n->poll->data = n;
            n->fd = fd;
            n->gen = gen;
        }
    }
    if (n->poll) uv_poll_start(n->poll, UV_READABLE | (want_write ? UV_WRITABLE : 0), node_on_poll);
    uv_timer_start(&n->timer, node_on_timer, ms ? ms : 1, 0);
}

node_t *node_start(uv_loop_t *loop, store_t *st)
{
    if (store_cluster_step(st) == 0) return NULL; /* no cluster */
    node_t *n = calloc(1, sizeof(*n));
    if (n == NULL) abort();
    n->st = st;
    n->loop = loop;
    n->fd = -1;
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    n->handles = 1;
    node_step(n);
    return n;
}

void node_close(node_t *n)
{
    if (n == NULL || n->closing) return;
    n->closing = 1;
    if (n->poll) {
        n->poll->data = n;
        uv_close((uv_handle_t *)n->poll, node_free_poll);
        n->poll = NULL;
    }
    uv_close((uv_handle_t *)&n->timer, node_on_closed);
}
