/* lineproto: a toy second protocol for the connection tests, added through
 * the public tables alone (protocol.h, conn.h, dispatch.h): one command a
 * line, answers in the order of the requests, as HTTP/1.1 must.
 *
 *   HEALTH      the service's Health through dispatch on a worker: "SERVING"
 *   ECHO text   answered on the loop thread: "text"
 *   SLOW        runs cfg->slow() on a worker, then "SLEPT"
 *   URGENT tok  urgent work carrying tok as its token (conn_set_batch's
 *               prefetch sees it), then "RAN tok"
 *
 * A line longer than LINEPROTO_MAX is answered "ERR line too long" and the
 * connection closes after it. */
#ifndef PAT_LINEPROTO_H
#define PAT_LINEPROTO_H

#include <stdatomic.h>

#include "protocol.h"
#include "service.h"

#define LINEPROTO_MAX 1024

typedef struct {
    svc_t *svc;
    void (*slow)(void);  /* blocks a worker until the test lets it go */
    _Atomic int dropped; /* answers of work whose connection had closed */
} lineproto_cfg_t;

extern const protocol_ops_t lineproto_protocol;

#endif
