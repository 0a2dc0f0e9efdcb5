/* libFuzzer target: the HTTP request path. Each input is sent, as it is,
 * over a real loopback connection to an in-process server whose HTTP
 * listener runs on its own loop thread in front of a real RocksDB store;
 * the write side is then shut and the answer read until the server closes
 * or 200 ms pass. A crash or sanitizer report on the loop thread ends the
 * run. The seed corpus holds gateway requests, smuggling attempts and
 * pipelines (tests/fuzz/corpus/http). */
#include "fuzz_svc.h" /* first: it sets _XOPEN_SOURCE for nftw */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "srv.h"
#include "tcp.h"

static fuzz_svc_t f;
static srv_config_t scfg;
static http_cfg_t hcfg;
static srv_t *srv;
static pthread_t loop;
static int port;

static void *fuzz_loop(void *arg)
{
    (void)arg;
    if (srv_run(srv) != 0) abort(); /* a leaked handle is a bug too */
    return NULL;
}

static void fuzz_cleanup(void)
{
    srv_shutdown(srv, 0);
    pthread_join(loop, NULL);
    srv_free(srv);
    http_cfg_destroy(&hcfg);
    fuzz_svc_close(&f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_svc_open(&f, "http");
    if (http_cfg_init(&hcfg, &f.svc, &f.stats) != 0) abort();
    hcfg.max_header_bytes = 16 * 1024;
    hcfg.max_headers = 100;
    hcfg.max_body_bytes = 64 * 1024;
    hcfg.header_timeout_ms = 10000;
    hcfg.access_log = 0;
    hcfg.revoke_per_minute = 1000;
    char terr[128];
    if (http_set_trusted(&hcfg, "127.0.0.0/8,::1/128", terr, sizeof(terr)) != 0) abort();
    scfg.limits = (conn_limits_t){.max_connections = 64,
                                  .max_inflight = 16,
                                  .max_queue = 256,
                                  .idle_timeout_ms = 2000,
                                  .max_output = 1 << 20,
                                  .max_output_total = 16 << 20};
    scfg.drain_timeout_ms = 1000;
    srv = srv_new(&scfg, &f.stats);
    srv_listener_t l = {.host = "127.0.0.1",
                        .transport = &tcp_transport,
                        .protocol = &http_protocol,
                        .protocol_cfg = &hcfg};
    if (srv_listen(srv, &l) != 0) abort();
    port = srv_port(srv, 0);
    if (pthread_create(&loop, NULL, fuzz_loop, NULL) != 0) abort();
    atexit(fuzz_cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) abort(); /* the server must serve */
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) break; /* closed on us: a refusal, which is fine */
        off += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) break;
        if (read(fd, buf, sizeof(buf)) <= 0) break;
    }
    close(fd);
    return 0;
}
