/* tcp: plain TCP as a transport: accept, read, write, close. */
#include "tcp.h"

#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"

#define TCP_READ_BUF (64 * 1024)

struct transport {
    uv_tcp_t tcp; /* first: the handle's data points here too */
    uv_write_t wr;
    conn_t *conn;
};

/* One read buffer per loop thread (see tcp.h). */
static _Thread_local uint8_t tcp_read_buf[TCP_READ_BUF];

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)tcp_read_buf, TCP_READ_BUF);
}

static void tcp_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    transport_t *t = s->data;
    if (nread == UV_EOF)
        conn_io(t->conn, CONN_IO_EOF, NULL, 0);
    else if (nread < 0)
        conn_io(t->conn, CONN_IO_ERROR, NULL, nread);
    else if (nread > 0)
        conn_io(t->conn, CONN_IO_READ, (const uint8_t *)buf->base, nread);
}

static transport_t *tcp_accept(uv_stream_t *listener, conn_t *c, const void *cfg)
{
    (void)cfg;
    transport_t *t = calloc(1, sizeof(*t));
    if (t == NULL) abort();
    t->conn = c;
    uv_tcp_init(listener->loop, &t->tcp);
    t->tcp.data = t;
    int rc = uv_accept(listener, (uv_stream_t *)&t->tcp);
    if (rc != 0) {
        log_warn("tcp: accept failed: %s", uv_strerror(rc));
        uv_close((uv_handle_t *)&t->tcp, (uv_close_cb)free);
        return NULL;
    }
    uv_tcp_nodelay(&t->tcp, 1);
    return t;
}

static int tcp_read_start(transport_t *t)
{
    return uv_read_start((uv_stream_t *)&t->tcp, tcp_alloc, tcp_on_read);
}

static void tcp_read_stop(transport_t *t)
{
    uv_read_stop((uv_stream_t *)&t->tcp);
}

static int tcp_try_write(transport_t *t, const unsigned char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    return uv_try_write((uv_stream_t *)&t->tcp, &b, 1);
}

static void tcp_on_write(uv_write_t *req, int status)
{
    transport_t *t = req->data;
    conn_io(t->conn, CONN_IO_WRITTEN, NULL, status);
}

static int tcp_write(transport_t *t, const unsigned char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    t->wr.data = t;
    return uv_write(&t->wr, (uv_stream_t *)&t->tcp, &b, 1, tcp_on_write);
}

static void tcp_on_close(uv_handle_t *h)
{
    transport_t *t = h->data;
    conn_t *c = t->conn;
    free(t);
    conn_io(c, CONN_IO_CLOSED, NULL, 0);
}

static void tcp_close(transport_t *t)
{
    uv_close((uv_handle_t *)&t->tcp, tcp_on_close);
}

static int tcp_peer(transport_t *t, struct sockaddr_storage *out)
{
    int len = sizeof(*out);
    return uv_tcp_getpeername(&t->tcp, (struct sockaddr *)out, &len);
}

const transport_ops_t tcp_transport = {
    .name = "tcp",
    .accept = tcp_accept,
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .try_write = tcp_try_write,
    .write = tcp_write,
    .close = tcp_close,
    .peer = tcp_peer,
};
