/* tcp: the plain TCP transport (transport.h) over a libuv uv_tcp_t.
 *
 * Loop thread only. Reads go into one buffer shared by every connection of
 * the loop thread: a read is handed to conn_io() and consumed (or copied)
 * before the next read, so a connection holds no read buffer of its own.
 * Nagle is off: answers are small and latency matters more. */
#ifndef PAT_TCP_H
#define PAT_TCP_H

#include "transport.h"

extern const transport_ops_t tcp_transport;

#endif
