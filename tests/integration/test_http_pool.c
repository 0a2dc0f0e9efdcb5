/* HTTP Verify through the worker pool, against a real patd-testclock: with
 * the verification cache off and the store's non-blocking reads made to
 * decline (SetFault cold_reads), every /v1/verify goes to a worker. With
 * one worker and a queue of one, three requests pipelined in one write get
 * the worker's 200 first and then two 503 overloaded with Retry-After:
 * answers ready at once wait for the one before them, in request order. A
 * revoke then shows on the very next request through the same path (R11). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Complete answers at the start of buf (headers, then Content-Length
 * bytes of body). */
static int complete_answers(const char *buf)
{
    int n = 0;
    const char *p = buf;
    for (;;) {
        const char *end = strstr(p, "\r\n\r\n");
        if (end == NULL) return n;
        const char *cl = strstr(p, "Content-Length: ");
        size_t body = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
        if (strlen(end + 4) < body) return n;
        n++;
        p = end + 4 + body;
    }
}

/* Reads until n complete answers arrived, or 5 s. */
static size_t read_answers(int fd, char *buf, size_t cap, int n)
{
    size_t have = 0;
    buf[0] = '\0';
    for (int waited = 0; waited < 5000 && complete_answers(buf) < n;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0) {
            waited += 50;
            continue;
        }
        ssize_t r = read(fd, buf + have, cap - 1 - have);
        if (r <= 0) break;
        have += (size_t)r;
        buf[have] = '\0';
    }
    return have;
}

static void test_cold_http_verify_goes_to_a_worker_and_overload_is_503_in_order(void **state)
{
    (void)state;
    patd_t p;
    const char *extra[] = {"--workers", "1", "--max-queue", "1", "--cache-entries", "0", NULL};
    assert_int_equal(h_start(&p, 1, extra), 0);
    assert_int_equal(h_user(&p, "cold", 1), 0);
    char *tok = h_create(&p, "cold", "t", 30, NULL, NULL);
    assert_non_null(tok);
    assert_int_equal(h_set_faults(&p, 0, 1), 0);

    char req[4096];
    int n = 0;
    for (int i = 0; i < 3; i++)
        n += snprintf(req + n, sizeof(req) - (size_t)n,
                      "GET /v1/verify/api/x HTTP/1.1\r\nHost: t\r\nX-Request-Id: r%d\r\n"
                      "Authorization: Bearer %s\r\n\r\n",
                      i, tok);
    int fd = dial(p.http_port);
    assert_int_equal(write(fd, req, (size_t)n), n);
    static char buf[16384];
    read_answers(fd, buf, sizeof(buf), 3);
    assert_int_equal(complete_answers(buf), 3);
    const char *a0 = strstr(buf, "HTTP/1.1 ");
    assert_non_null(a0);
    const char *a1 = strstr(a0 + 1, "HTTP/1.1 ");
    assert_non_null(a1);
    const char *a2 = strstr(a1 + 1, "HTTP/1.1 ");
    assert_non_null(a2);
    assert_true(strncmp(a0, "HTTP/1.1 200", 12) == 0);
    assert_true(strncmp(a1, "HTTP/1.1 503", 12) == 0);
    assert_true(strncmp(a2, "HTTP/1.1 503", 12) == 0);
    assert_non_null(strstr(a0, "X-Request-Id: r0"));
    assert_non_null(strstr(a1, "X-Request-Id: r1"));
    assert_non_null(strstr(a2, "X-Request-Id: r2"));
    assert_non_null(strstr(a1, "X-Patd-Reason: overloaded"));
    assert_non_null(strstr(a1, "Retry-After: 1"));
    assert_non_null(strstr(a0, "X-Patd-User-Id: cold"));

    /* R11 through the worker path: revoked, refused on the next request. */
    pat_client_t *c = h_platform(&p, "cold");
    size_t nt;
    pat_status_t st;
    Pat__V1__TokenInfo **list = h_list(c, 0, NULL, &nt, &st);
    assert_int_equal(nt, 1);
    assert_int_equal(h_update(c, list[0]->id, 1, NULL, &st), 0);
    h_list_free(list, nt);
    pat_close(c);
    n = snprintf(req, sizeof(req),
                 "GET /v1/verify/api/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n",
                 tok);
    assert_int_equal(write(fd, req, (size_t)n), n);
    read_answers(fd, buf, sizeof(buf), 1);
    assert_true(strncmp(buf, "HTTP/1.1 401", 12) == 0);
    assert_non_null(strstr(buf, "X-Patd-Reason: revoked"));
    close(fd);
    assert_true(h_log_contains(&p, "route=/v1/verify status=503 reason=overloaded"));
    free(tok);
    h_cleanup(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cold_http_verify_goes_to_a_worker_and_overload_is_503_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
