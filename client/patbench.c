/* patbench: load harness for patd.
 *
 * One thread, epoll, C connections with up to P requests in flight each,
 * like redis-benchmark, so that client and server compare fairly on the
 * same small machine. Verify frames are encoded by hand (a few bytes of
 * protobuf) and responses read only for id and status code, to keep the
 * client's share of the CPU small. Latency goes into a log-linear
 * histogram (HdrHistogram-style, 128 sub-buckets per power of two, < 1%
 * error); percentiles come from it, never from an average. --tls runs any
 * scenario over TLS (OpenSSL, non-blocking after a blocking handshake);
 * --one-per-conn closes after each answer, so redis-get's churn compares
 * with patd's connect.
 *
 * Scenarios:
 *   verify       Verify tokens from --tokens-file, the first --hot of them,
 *                each connection walking them from its own offset
 *   verify-cold  Verify tokens drawn at random from the whole file, from a
 *                fixed seed unless --draw-seed says otherwise: runs are
 *                repeatable (bench/instructions.sh counts the same work
 *                each time), but a second run against the same server asks
 *                for the tokens the first one left in its caches
 *   create       CreateToken (synced writes) as --users users via the platform key
 *   mixed        95% Verify, 4% ListTokens, 1% CreateToken or UpdateToken
 *   revoke       each connection makes a token, then revokes and restores it
 *                in turn (UpdateToken): the latency of a fenced change
 *   connect      connect, one Verify, close: connection churn (with --tls,
 *                a full TLS handshake each)
 *   redis-get    GET key:__rand_int__ from a Redis server (RESP): the
 *                reference measured by this client, with this clock and
 *                histogram (redis-benchmark times a request from when it
 *                is written, after its own loop has run, so its p99 can
 *                come out below the mean latency Little's law implies) */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "patclient.h"

#define HIST_SUB   128
#define HIST_MAGS  40
#define MAX_DEPTH  1024
#define RBUF       (256 * 1024)
#define CODE_SLOTS 17

/* ---------------------------------------------------------------- histogram */

typedef struct {
    uint64_t counts[HIST_MAGS * HIST_SUB];
    uint64_t total, max;
} hist_t;

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB) return (unsigned)v;
    unsigned m = 63 - (unsigned)__builtin_clzll(v) - 6; /* v >> m in [128, 255] */
    unsigned idx = (m + 1) * HIST_SUB + (unsigned)((v >> m) - HIST_SUB);
    return idx < HIST_MAGS * HIST_SUB ? idx : HIST_MAGS * HIST_SUB - 1;
}

static uint64_t hist_value(unsigned idx)
{
    if (idx < HIST_SUB) return idx;
    unsigned m = idx / HIST_SUB - 1;
    uint64_t base = (uint64_t)(HIST_SUB + idx % HIST_SUB) << m;
    return base + ((1ull << m) >> 1); /* middle of the bucket */
}

static void hist_add(hist_t *h, uint64_t ns)
{
    h->counts[hist_index(ns)]++;
    h->total++;
    if (ns > h->max) h->max = ns;
}

static uint64_t hist_pct(const hist_t *h, double pct)
{
    if (h->total == 0) return 0;
    uint64_t want = (uint64_t)(pct / 100.0 * (double)h->total + 0.5);
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_MAGS * HIST_SUB; i++) {
        seen += h->counts[i];
        if (seen >= want) return hist_value(i) < h->max ? hist_value(i) : h->max;
    }
    return h->max;
}

/* ---------------------------------------------------------------- options */

static struct {
    const char *server, *scenario, *tokens_file, *key_file, *json_out, *path, *cacert;
    int conns, depth, users, json, tls, one_per_conn;
    double duration, warmup;
    long requests, hot, seed;
} opt = {.server = PAT_DEFAULT_SERVER,
         .scenario = "verify",
         .path = "/v1/verify/api/bench",
         .conns = 50,
         .depth = 1,
         .users = 32,
         .duration = 5,
         .hot = 10000};

/* The scenario, decoded once from --scenario: the request loop asks which
 * one it runs on every request and answer. */
typedef enum {
    SC_VERIFY,
    SC_VERIFY_COLD,
    SC_CREATE,
    SC_MIXED,
    SC_REVOKE,
    SC_CONNECT,
    SC_REDIS_GET,
    SC_HTTP,
    SC_COUNT
} scenario_t;
static const char *const scenario_names[SC_COUNT] = {"verify", "verify-cold", "create",    "mixed",
                                                     "revoke", "connect",     "redis-get", "http"};
static scenario_t scen;

static char **tokens;
static uint8_t *token_len; /* strlen of each, at most 255 (load_tokens' line) */
static long ntokens;
static char *platform_key;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "patbench: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64; --draw-seed N starts it at splitmix64(N) instead. */
static uint64_t rng_state = 88172645463325252ull;
static void rng_seed(uint64_t n)
{
    uint64_t z = n + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    rng_state = z ? z : 88172645463325252ull; /* xorshift's state must not be 0 */
}
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---------------------------------------------------------------- encoding */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static size_t put_bytes(uint8_t *p, unsigned field, const void *data, size_t len)
{
    size_t n = put_varint(p, field << 3 | 2);
    n += put_varint(p + n, len);
    memcpy(p + n, data, len);
    return n + len;
}

/* A method name and its length, for encode_request. */
#define METHOD(name) "pat.v1.TokenService/" name, sizeof("pat.v1.TokenService/" name) - 1

/* A whole frame: length prefix + Request{id, method, payload, metadata}. */
static size_t encode_request(uint8_t *out, uint64_t id, const char *method, size_t mlen,
                             const uint8_t *payload, size_t plen, int with_platform,
                             const char *act_as)
{
    uint8_t *p = out + 4;
    size_t n = 0;
    n += put_varint(p + n, 1 << 3 | 0);
    n += put_varint(p + n, id);
    n += put_bytes(p + n, 2, method, mlen);
    n += put_bytes(p + n, 3, payload, plen);
    if (with_platform) {
        uint8_t entry[512];
        char auth[300];
        snprintf(auth, sizeof(auth), "Platform %s", platform_key);
        size_t e = put_bytes(entry, 1, "authorization", 13);
        e += put_bytes(entry + e, 2, auth, strlen(auth));
        n += put_bytes(p + n, 4, entry, e);
        if (act_as) {
            e = put_bytes(entry, 1, "x-act-as-user", 13);
            e += put_bytes(entry + e, 2, act_as, strlen(act_as));
            n += put_bytes(p + n, 4, entry, e);
        }
    }
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    return n + 4;
}

static size_t encode_verify(uint8_t *out, uint64_t id, long t)
{
    uint8_t payload[256 + 32];
    size_t pl = put_bytes(payload, 1, tokens[t], token_len[t]);
    pl += put_bytes(payload + pl, 2, "/api/v1/bench", 13);
    return encode_request(out, id, METHOD("Verify"), payload, pl, 0, NULL);
}

static size_t encode_create(uint8_t *out, uint64_t id, const char *user, uint64_t seq)
{
    uint8_t payload[128];
    char name[64];
    snprintf(name, sizeof(name), "bench-%llu-%llu", (unsigned long long)(now_ns() % 1000000007),
             (unsigned long long)seq);
    size_t pl = put_bytes(payload, 1, name, strlen(name));
    pl += put_varint(payload + pl, 2 << 3 | 0);
    pl += put_varint(payload + pl, 30);
    return encode_request(out, id, METHOD("CreateToken"), payload, pl, 1, user);
}

static size_t encode_list(uint8_t *out, uint64_t id, const char *user)
{
    uint8_t payload[8];
    size_t pl = put_varint(payload, 3 << 3 | 0);
    pl += put_varint(payload + pl, 20);
    return encode_request(out, id, METHOD("ListTokens"), payload, pl, 1, user);
}

static size_t encode_update(uint8_t *out, uint64_t id, const char *user, uint64_t token_id,
                            int revoke)
{
    uint8_t payload[32];
    size_t pl = put_varint(payload, 1 << 3 | 0);
    pl += put_varint(payload + pl, token_id);
    pl += put_varint(payload + pl, 2 << 3 | 0);
    pl += put_varint(payload + pl, (uint64_t)revoke);
    return encode_request(out, id, METHOD("UpdateToken"), payload, pl, 1, user);
}

static int get_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *i < len && shift < 64; shift += 7) {
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Reads id and status code of a Response without a full decode. */
static int parse_response(const uint8_t *p, size_t len, uint64_t *id, int *code)
{
    size_t i = 0;
    *id = 0;
    *code = 0;
    while (i < len) {
        uint64_t key, v;
        if (get_varint(p, len, &i, &key)) return -1;
        if ((key & 7) == 0) {
            if (get_varint(p, len, &i, &v)) return -1;
            if (key >> 3 == 1) *id = v;
        } else if ((key & 7) == 2) {
            if (get_varint(p, len, &i, &v) || v > len - i) return -1;
            if (key >> 3 == 2) {
                size_t j = 0;
                while (j < v) {
                    uint64_t k2, v2;
                    if (get_varint(p + i, v, &j, &k2)) return -1;
                    if ((k2 & 7) == 0) {
                        if (get_varint(p + i, v, &j, &v2)) return -1;
                        if (k2 >> 3 == 1) *code = (int)v2;
                    } else if ((k2 & 7) == 2) {
                        if (get_varint(p + i, v, &j, &v2) || v2 > v - j) return -1;
                        j += v2;
                    } else {
                        return -1;
                    }
                }
            }
            i += v;
        } else {
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- run */

typedef struct {
    int fd;
    SSL *ssl; /* --tls */
    int idx;
    uint64_t seq;
    uint64_t hot_start; /* verify: where in the hot set this one begins */
    int inflight;
    uint64_t sent_at[MAX_DEPTH];
    int slot_free[MAX_DEPTH];
    uint8_t slot_create[MAX_DEPTH]; /* the request in this slot is a CreateToken */
    uint8_t *rbuf;
    size_t rlen;
    uint8_t wbuf[64 * 1024];
    size_t wlen;
    int fifo[MAX_DEPTH]; /* redis-get: slots in the order sent (RESP has no ids) */
    int fhead, ftail;
    uint64_t last_token_id; /* mixed: a token this connection made */
    int revoke_next;
} conn_t;

static conn_t *conns;
static int epfd;
static hist_t hist;
static uint64_t done_count, err_counts[CODE_SLOTS], started_ns, measure_from_ns;
static uint64_t connects;
static long sent_total;

static int connect_fd(void)
{
    char host[256];
    const char *colon = strrchr(opt.server, ':');
    if (!colon) die("--server is HOST:PORT");
    snprintf(host, sizeof(host), "%.*s", (int)(colon - opt.server), opt.server);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) die("cannot resolve %s", opt.server);
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0)
        die("cannot connect to %s: %s", opt.server, strerror(errno));
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    connects++;
    return fd;
}

static SSL_CTX *tls_ctx;

/* --tls: the handshake, blocking (it is what the connect scenario times),
 * then the socket goes non-blocking. No session is kept, so each
 * connection is a full handshake, on both servers alike. */
static SSL *tls_start(int fd)
{
    if (tls_ctx == NULL) {
        tls_ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
        if (opt.cacert ? SSL_CTX_load_verify_locations(tls_ctx, opt.cacert, NULL) != 1
                       : SSL_CTX_set_default_verify_paths(tls_ctx) != 1)
            die("--cacert %s cannot be read", opt.cacert ? opt.cacert : "(system)");
        SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(tls_ctx, SSL_OP_NO_TICKET);
    }
    SSL *s = SSL_new(tls_ctx);
    SSL_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_fd(s, fd);
    if (SSL_connect(s) != 1) {
        char buf[256];
        ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
        die("TLS to %s: %s", opt.server, buf);
    }
    return s;
}

/* A blocking client for the set-up calls (users, seeding). */
static pat_client_t *bench_connect(int timeout_ms, char *err, size_t errlen)
{
    pat_tls_options_t t = {.ca_file = opt.cacert};
    return opt.tls ? pat_connect_tls(opt.server, timeout_ms, &t, err, errlen)
                   : pat_connect(opt.server, timeout_ms, err, errlen);
}

static void close_conn(conn_t *c)
{
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    close(c->fd);
}

static const char *user_of(int idx)
{
    static char buf[32];
    snprintf(buf, sizeof(buf), "bench-user-%d", idx % opt.users);
    return buf;
}

/* Queues one request on c (encoded into its write buffer). */
static void queue_one(conn_t *c)
{
    int slot = -1;
    for (int s = 0; s < opt.depth; s++)
        if (c->slot_free[s]) {
            slot = s;
            break;
        }
    if (slot < 0) return;
    c->slot_free[slot] = 0;
    uint64_t id = ((uint64_t)c->idx << 20) | (uint64_t)slot;
    uint8_t *out = c->wbuf + c->wlen;
    size_t n;
    c->slot_create[slot] = 0;
    if (scen == SC_CREATE) {
        n = encode_create(out, id, user_of(c->idx), c->seq++);
    } else if (scen == SC_MIXED) {
        unsigned r = (unsigned)(rng() % 100);
        if (r < 95)
            n = encode_verify(out, id, (long)(rng() % (uint64_t)opt.hot));
        else if (r < 99)
            n = encode_list(out, id, user_of(c->idx));
        else if (c->last_token_id && (rng() & 1))
            n = encode_update(out, id, user_of(c->idx), c->last_token_id, (c->revoke_next ^= 1));
        else {
            n = encode_create(out, id, user_of(c->idx), c->seq++);
            c->slot_create[slot] = 1;
        }
    } else if (scen == SC_REVOKE) {
        if (c->last_token_id) { /* -P 1: its one token is made before any change of it */
            n = encode_update(out, id, user_of(c->idx), c->last_token_id, (c->revoke_next ^= 1));
        } else {
            n = encode_create(out, id, user_of(c->idx), c->seq++);
            c->slot_create[slot] = 1;
        }
    } else if (scen == SC_REDIS_GET) {
        static const char get[] = "*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n";
        memcpy(out, get, sizeof(get) - 1);
        n = sizeof(get) - 1;
        c->fifo[c->ftail] = slot;
        c->ftail = (c->ftail + 1) % MAX_DEPTH;
    } else if (scen == SC_HTTP) {
        /* What a gateway sends: keep-alive, the token in Authorization. */
        const char *tok = tokens[(c->hot_start + c->seq++) % (uint64_t)opt.hot];
        n = (size_t)snprintf((char *)out, sizeof(c->wbuf) - c->wlen,
                             "GET %s HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n\r\n",
                             opt.path, tok);
        c->fifo[c->ftail] = slot;
        c->ftail = (c->ftail + 1) % MAX_DEPTH;
    } else if (scen == SC_VERIFY_COLD) {
        n = encode_verify(out, id, (long)(rng() % (uint64_t)ntokens));
    } else {
        n = encode_verify(out, id, (long)((c->hot_start + c->seq++) % (uint64_t)opt.hot));
    }
    c->wlen += n;
    c->sent_at[slot] = now_ns();
    c->inflight++;
    sent_total++;
}

static void flush_conn(conn_t *c)
{
    size_t off = 0;
    while (off < c->wlen && c->ssl) {
        int w = SSL_write(c->ssl, c->wbuf + off, (int)(c->wlen - off));
        if (w <= 0) {
            int e = SSL_get_error(c->ssl, w);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
            die("TLS write failed");
        }
        off += (size_t)w;
    }
    while (off < c->wlen && !c->ssl) {
        ssize_t w = send(c->fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) break;
            die("send: %s", strerror(errno));
        }
        off += (size_t)w;
    }
    memmove(c->wbuf, c->wbuf + off, c->wlen - off);
    c->wlen -= off;
}

static int budget_left(void)
{
    return opt.requests <= 0 || sent_total < opt.requests;
}

static void open_conn(conn_t *c, int idx)
{
    c->fd = connect_fd();
    c->ssl = opt.tls ? tls_start(c->fd) : NULL;
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    c->idx = idx;
    /* Each connection starts at its own place in the hot set: in lockstep
     * from token 0, the set would be first seen only as fast as one
     * connection walks it, and "hot" would keep missing. */
    c->hot_start = (uint64_t)idx * (uint64_t)opt.hot / (uint64_t)opt.conns;
    c->inflight = 0;
    c->fhead = c->ftail = 0;
    c->rlen = 0;
    c->wlen = 0;
    for (int s = 0; s < opt.depth; s++)
        c->slot_free[s] = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

/* Times and counts the answer to the request in slot (measured phase only). */
static void record_answer(conn_t *c, int slot, int code)
{
    uint64_t now = now_ns();
    if (now < measure_from_ns) return;
    hist_add(&hist, now - c->sent_at[slot]);
    done_count++;
    if (code != 0) err_counts[code < CODE_SLOTS ? code : CODE_SLOTS - 1]++;
}

static void on_response(conn_t *c, const uint8_t *p, size_t len)
{
    uint64_t id;
    int code;
    if (parse_response(p, len, &id, &code) != 0) die("undecodable response");
    int slot = (int)(id & 0xfffff);
    if (slot >= opt.depth || c->slot_free[slot])
        die("response to an unknown id %llu", (unsigned long long)id);
    record_answer(c, slot, code);
    /* mixed: remember the id of a token we created to revoke/restore it. */
    if (code == 0 && c->slot_create[slot] && (scen == SC_MIXED || scen == SC_REVOKE)) {
        Pat__V1__Response *r = pat__v1__response__unpack(NULL, len, p);
        if (r && r->payload.len) {
            Pat__V1__CreateTokenResponse *cr =
                pat__v1__create_token_response__unpack(NULL, r->payload.len, r->payload.data);
            if (cr && cr->token && cr->bearer_token[0]) c->last_token_id = cr->token->id;
            if (cr) pat__v1__create_token_response__free_unpacked(cr, NULL);
        }
        if (r) pat__v1__response__free_unpacked(r, NULL);
    }
    c->slot_free[slot] = 1;
    c->inflight--;
}

/* redis-get: one RESP reply (a bulk string, nil, or an error) answers the
 * oldest request. Returns its length, 0 if incomplete. */
static size_t on_redis_reply(conn_t *c, const uint8_t *p, size_t len)
{
    const uint8_t *eol = memchr(p, '\n', len);
    if (eol == NULL) return 0;
    size_t need = (size_t)(eol - p) + 1;
    int code = 0;
    if (p[0] == '$') {
        long n = strtol((const char *)p + 1, NULL, 10);
        if (n > 0) need += (size_t)n + 2;
        if (need > RBUF) die("redis reply of %zu bytes is too large", need);
    } else if (p[0] == '-') {
        code = 2; /* an error reply */
    } else if (p[0] != '+') {
        die("unexpected redis reply");
    }
    if (need > len) return 0;
    int slot = c->fifo[c->fhead];
    c->fhead = (c->fhead + 1) % MAX_DEPTH;
    record_answer(c, slot, code);
    c->slot_free[slot] = 1;
    c->inflight--;
    return need;
}

/* http: one HTTP/1.1 answer (answers come in request order) for the
 * oldest request; 200 counts as success, another status as an error.
 * Returns its length, 0 if incomplete. */
static size_t on_http_answer(conn_t *c, const uint8_t *p, size_t len)
{
    const char *s = (const char *)p;
    const char *end = memmem(s, len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len >= RBUF) die("HTTP headers of more than %d bytes", RBUF);
        return 0;
    }
    if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0) die("not an HTTP answer");
    int status = atoi(s + 9);
    size_t body = 0;
    for (const char *h = s; h < end; h++) {
        if ((*h == 'C' || *h == 'c') && (size_t)(end - h) > 15 &&
            strncasecmp(h, "Content-Length:", 15) == 0) {
            body = strtoul(h + 15, NULL, 10);
            break;
        }
    }
    size_t need = (size_t)(end - s) + 4 + body;
    if (need > RBUF) die("HTTP answer of %zu bytes is too large", need);
    if (need > len) return 0;
    int slot = c->fifo[c->fhead];
    c->fhead = (c->fhead + 1) % MAX_DEPTH;
    /* Error counts are kept by gRPC code: 401 as UNAUTHENTICATED, 403 as
     * PERMISSION_DENIED, anything else as UNKNOWN. */
    record_answer(c, slot, status == 200 ? 0 : status == 401 ? 16 : status == 403 ? 7 : 2);
    c->slot_free[slot] = 1;
    c->inflight--;
    return need;
}

static void on_readable(conn_t *c)
{
    int resp = scen == SC_REDIS_GET;
    int http = scen == SC_HTTP;
    for (;;) {
        ssize_t r;
        if (c->ssl) {
            r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(RBUF - c->rlen));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, (int)r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
                die("server closed a TLS connection");
            }
        } else {
            r = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
            if (r < 0 && errno == EAGAIN) break;
        }
        if (r <= 0) die("server closed a connection (%s)", r < 0 ? strerror(errno) : "EOF");
        c->rlen += (size_t)r;
        size_t off = 0, used;
        while (resp && off < c->rlen && (used = on_redis_reply(c, c->rbuf + off, c->rlen - off)))
            off += used;
        while (http && off < c->rlen && (used = on_http_answer(c, c->rbuf + off, c->rlen - off)))
            off += used;
        while (!resp && !http && c->rlen - off >= 4) {
            uint32_t n = (uint32_t)c->rbuf[off] << 24 | (uint32_t)c->rbuf[off + 1] << 16 |
                         (uint32_t)c->rbuf[off + 2] << 8 | c->rbuf[off + 3];
            if (n + 4 > RBUF) die("response of %u bytes is too large", n);
            if (c->rlen - off < 4 + n) break;
            on_response(c, c->rbuf + off + 4, n);
            off += 4 + n;
        }
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    if ((scen == SC_CONNECT || opt.one_per_conn) && c->inflight == 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close_conn(c);
        if (budget_left())
            open_conn(c, c->idx);
        else
            c->fd = -1;
    }
    while (c->fd >= 0 && c->inflight < opt.depth && budget_left())
        queue_one(c);
    if (c->fd >= 0) flush_conn(c);
}

static void load_tokens(void)
{
    FILE *f = fopen(opt.tokens_file, "r");
    if (f == NULL) die("cannot read --tokens-file %s", opt.tokens_file);
    long cap = 1024;
    tokens = malloc((size_t)cap * sizeof(*tokens));
    token_len = malloc((size_t)cap);
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        if (ntokens == cap) {
            cap *= 2;
            tokens = realloc(tokens, (size_t)cap * sizeof(*tokens));
            token_len = realloc(token_len, (size_t)cap);
        }
        token_len[ntokens] = (uint8_t)strlen(line);
        tokens[ntokens++] = strdup(line);
    }
    fclose(f);
    if (ntokens == 0) die("no tokens in %s", opt.tokens_file);
    if (opt.hot <= 0 || opt.hot > ntokens) opt.hot = ntokens;
}

/* Seed phase: creates opt.seed tokens through the API (CreateToken as the
 * bench users, 64 in flight), appends them to --tokens-file, and shows
 * progress once a second on a terminal. For millions of tokens on a
 * stopped server, bench/patseed loads the store directly instead. */
static void seed_tokens(void)
{
    char err[256];
    pat_client_t *c = bench_connect(30000, err, sizeof(err));
    if (c == NULL) die("%s", err);
    FILE *f = fopen(opt.tokens_file, "a");
    if (f == NULL) die("cannot write --tokens-file %s", opt.tokens_file);
    fchmod(fileno(f), 0600);
    int tty = isatty(STDERR_FILENO);
    uint64_t t0 = now_ns(), tick = t0 + 1000000000u;
    long sent = 0, done = 0;
    unsigned stamp = (unsigned)(t0 % 1000000007u);
    while (done < opt.seed) {
        while (sent < opt.seed && sent - done < 64) {
            uint8_t frame[1024];
            size_t n = encode_create(frame, (uint64_t)sent + 1, user_of((int)(sent % opt.users)),
                                     ((uint64_t)stamp << 24) + (uint64_t)sent);
            if (pat_send_raw(c, frame, n) != 0) die("seed: connection lost");
            sent++;
        }
        Pat__V1__Response *r;
        if (pat_recv(c, &r) != 0) die("seed: connection lost");
        if (r->status == NULL || r->status->code != 0)
            die("seed: CreateToken failed: %s", r->status ? r->status->message : "?");
        Pat__V1__CreateTokenResponse *cr =
            pat__v1__create_token_response__unpack(NULL, r->payload.len, r->payload.data);
        if (cr == NULL) die("seed: undecodable CreateTokenResponse");
        fprintf(f, "%s\n", cr->bearer_token);
        pat__v1__create_token_response__free_unpacked(cr, NULL);
        pat__v1__response__free_unpacked(r, NULL);
        done++;
        if (tty && now_ns() >= tick) {
            fprintf(stderr, "\rseeding: %ld/%ld tokens", done, opt.seed);
            tick += 1000000000u;
        }
    }
    if (fclose(f) != 0) die("cannot write --tokens-file %s", opt.tokens_file);
    pat_close(c);
    fprintf(stderr, "%sseeded %ld tokens in %.1f s\n", tty ? "\r" : "", opt.seed,
            (double)(now_ns() - t0) / 1e9);
}

/* Makes the bench users once (UpsertUser as the platform). */
static void make_users(void)
{
    char err[256];
    pat_client_t *c = bench_connect(10000, err, sizeof(err));
    if (c == NULL) die("%s", err);
    pat_set_platform(c, platform_key, NULL);
    for (int i = 0; i < opt.users; i++) {
        Pat__V1__User u = PAT__V1__USER__INIT;
        u.user_id = (char *)user_of(i);
        u.role = PAT__V1__ROLE__ROLE_MEMBER;
        Pat__V1__UpsertUserRequest req = PAT__V1__UPSERT_USER_REQUEST__INIT;
        req.user = &u;
        pat_status_t st;
        if (pat_call(c, "UpsertUser", &req.base, NULL, NULL, &st) != 0 || st.code)
            die("UpsertUser: %s", st.message);
    }
    pat_close(c);
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: patbench [options]\n"
        "  --server HOST:PORT        (default 127.0.0.1:7700)\n"
        "  --scenario S              verify | verify-cold | create | mixed | revoke | connect\n"
        "                            | redis-get (the reference, against redis-server)\n"
        "                            | http (GET --path with a hot token as Bearer, keep-alive:\n"
        "                            patd's HTTP port, or a gateway or nginx in front)\n"
        "  --path P                  http: the path (default /v1/verify/api/bench)\n"
        "  -c, --connections N       (default 50)\n"
        "  -P, --pipeline N          requests in flight per connection (default 1)\n"
        "  -d, --duration SECONDS    (default 5)\n"
        "  -n, --requests N          stop after N requests instead\n"
        "  --warmup SECONDS          run unmeasured first (default 0)\n"
        "  --tokens-file F           tokens to verify, one per line (patseed or --seed write it)\n"
        "  --seed N                  first create N tokens through the API (with progress)\n"
        "                            and append them to --tokens-file\n"
        "  --hot N                   verify: use the first N tokens (default 10000)\n"
        "  --draw-seed N             verify-cold, mixed: draw other tokens than the fixed\n"
        "                            default does (a second run on one server otherwise\n"
        "                            repeats the first one's tokens, now cached)\n"
        "  --platform-key-file F     create/mixed/revoke: the platform key\n"
        "  --users N                 create/mixed/revoke: users to spread over (default 32)\n"
        "  --tls                     over TLS (patd's --listen tls://, redis-server --tls-port)\n"
        "  --cacert F                --tls: the CA that signs the server (default: the system's)\n"
        "  --one-per-conn            close each connection after one answer (any scenario)\n"
        "  --json                    print one JSON object\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (ARG("--server"))
            opt.server = v;
        else if (ARG("--scenario"))
            opt.scenario = v;
        else if (ARG("-c") || ARG("--connections"))
            opt.conns = atoi(v);
        else if (ARG("-P") || ARG("--pipeline"))
            opt.depth = atoi(v);
        else if (ARG("-d") || ARG("--duration"))
            opt.duration = atof(v);
        else if (ARG("-n") || ARG("--requests"))
            opt.requests = atol(v);
        else if (ARG("--warmup"))
            opt.warmup = atof(v);
        else if (ARG("--tokens-file"))
            opt.tokens_file = v;
        else if (ARG("--hot"))
            opt.hot = atol(v);
        else if (ARG("--platform-key-file"))
            opt.key_file = v;
        else if (ARG("--path"))
            opt.path = v;
        else if (ARG("--users"))
            opt.users = atoi(v);
        else if (ARG("--seed"))
            opt.seed = atol(v);
        else if (ARG("--draw-seed")) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (errno || end == v || *end || *v == '-')
                die("--draw-seed takes a number, not '%s'", v);
            rng_seed(n);
        } else if (strcmp(a, "--json") == 0)
            opt.json = 1;
        else if (strcmp(a, "--tls") == 0)
            opt.tls = 1;
        else if (strcmp(a, "--one-per-conn") == 0)
            opt.one_per_conn = 1;
        else if (ARG("--cacert"))
            opt.cacert = v;
        else
            usage();
#undef ARG
    }
    if (opt.conns < 1 || opt.conns > 10000 || opt.depth < 1 || opt.depth > MAX_DEPTH)
        die("--connections is 1..10000 and --pipeline 1..%d", MAX_DEPTH);
    const char *sc = opt.scenario;
    for (scen = 0; scen < SC_COUNT && strcmp(sc, scenario_names[scen]) != 0; scen++)
        ;
    if (scen == SC_COUNT) die("unknown scenario '%s'", sc);
    int needs_tokens = scen != SC_CREATE && scen != SC_REDIS_GET && scen != SC_REVOKE;
    if (scen == SC_REVOKE && opt.depth != 1)
        die("revoke changes one token per connection, one change at a time: -P 1");
    int needs_key = scen == SC_CREATE || scen == SC_MIXED || scen == SC_REVOKE || opt.seed > 0;
    if (needs_key) {
        char err[256];
        if (!opt.key_file) die("%s needs --platform-key-file", opt.seed ? "--seed" : sc);
        platform_key = pat_read_secret_file(opt.key_file, err, sizeof(err));
        if (!platform_key) die("%s", err);
        make_users();
    }
    if (opt.seed > 0) {
        if (!opt.tokens_file) die("--seed needs --tokens-file to write the tokens to");
        seed_tokens();
    }
    if (needs_tokens) {
        if (!opt.tokens_file) die("%s needs --tokens-file", sc);
        load_tokens();
    }

    epfd = epoll_create1(0);
    conns = calloc((size_t)opt.conns, sizeof(*conns));
    for (int i = 0; i < opt.conns; i++) {
        conns[i].rbuf = malloc(RBUF);
        open_conn(&conns[i], i);
    }
    started_ns = now_ns();
    measure_from_ns = started_ns + (uint64_t)(opt.warmup * 1e9);
    uint64_t end_ns = measure_from_ns + (uint64_t)(opt.duration * 1e9);
    for (int i = 0; i < opt.conns; i++) {
        while (conns[i].inflight < opt.depth && budget_left())
            queue_one(&conns[i]);
        flush_conn(&conns[i]);
    }
    int tty = isatty(STDERR_FILENO);
    uint64_t next_tick = started_ns + 1000000000u, last_done = 0;
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, 100);
        for (int k = 0; k < n; k++)
            on_readable(evs[k].data.ptr);
        uint64_t now = now_ns();
        if (tty && now >= next_tick) {
            fprintf(stderr, "\r%s: %.0f req/s, %llu done, p99 %.0f us   ", sc,
                    (double)(done_count - last_done), (unsigned long long)done_count,
                    hist_pct(&hist, 99) / 1e3);
            last_done = done_count;
            next_tick += 1000000000u;
        }
        int busy = 0;
        for (int i = 0; i < opt.conns; i++)
            busy += conns[i].fd >= 0 && conns[i].inflight > 0;
        if (opt.requests > 0 ? (!budget_left() && busy == 0) : now >= end_ns) break;
    }
    double secs = (double)(now_ns() - measure_from_ns) / 1e9;
    if (tty) fprintf(stderr, "\n");
    uint64_t errors = 0;
    for (int i = 0; i < CODE_SLOTS; i++)
        errors += err_counts[i];
    double rps = (double)done_count / secs;
    if (opt.json) {
        printf("{\"scenario\":\"%s\",\"connections\":%d,\"pipeline\":%d,\"seconds\":%.3f,"
               "\"requests\":%llu,\"rps\":%.1f,\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,"
               "\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},\"errors\":%llu,\"errors_by_code\":{",
               sc, opt.conns, opt.depth, secs, (unsigned long long)done_count, rps,
               hist_pct(&hist, 50) / 1e3, hist_pct(&hist, 90) / 1e3, hist_pct(&hist, 99) / 1e3,
               hist_pct(&hist, 99.9) / 1e3, (double)hist.max / 1e3, (unsigned long long)errors);
        int first = 1;
        for (int i = 0; i < CODE_SLOTS; i++)
            if (err_counts[i]) {
                printf("%s\"%s\":%llu", first ? "" : ",", pat_code_name(i),
                       (unsigned long long)err_counts[i]);
                first = 0;
            }
        printf("},\"connects\":%llu}\n", (unsigned long long)connects);
    } else {
        printf("%s: %d connections x %d in flight, %.1f s\n", sc, opt.conns, opt.depth, secs);
        printf("  requests/s  %.0f  (%llu requests, %llu errors)\n", rps,
               (unsigned long long)done_count, (unsigned long long)errors);
        printf("  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
               hist_pct(&hist, 50) / 1e3, hist_pct(&hist, 90) / 1e3, hist_pct(&hist, 99) / 1e3,
               hist_pct(&hist, 99.9) / 1e3, (double)hist.max / 1e3);
        for (int i = 0; i < CODE_SLOTS; i++)
            if (err_counts[i])
                printf("  errors      %s: %llu\n", pat_code_name(i),
                       (unsigned long long)err_counts[i]);
        if (scen == SC_CONNECT) printf("  connections/s %.0f\n", (double)connects / secs);
    }
    return errors && done_count == errors ? 1 : 0;
}
