/* main: patd's command line, start-up (data dir, platform key, store) and
 * orderly shutdown. Every flag has a default that just works. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "clock.h"
#include "log.h"
#include "framed.h"
#include "http.h"
#include "service.h"
#include "srv.h"
#include "stats.h"
#include "store.h"
#include "tcp.h"
#include "token.h"
#include "usage.h"

#ifndef PATD_VERSION
#define PATD_VERSION "0.0.0"
#endif

#define MAIN_KEY_BYTES     32
#define MAIN_KEY_MIN_CHARS 32

static void main_usage(FILE *out)
{
    fprintf(
        out,
        "usage: patd [options]\n"
        "\n"
        "A personal-access-token service speaking length-prefixed protobuf over TCP.\n"
        "\n"
        "  --listen HOST:PORT          address to serve (default 127.0.0.1:7700; port 0 = any)\n"
        "  --data-dir DIR              RocksDB store and key file (default ./data, made 0700)\n"
        "  --platform-key-file PATH    platform key (default <data-dir>/platform.key; made\n"
        "                              with a fresh random key, mode 0600, if missing)\n"
        "  --workers N                 worker threads (default 16, 1..256)\n"
        "  --max-frame-bytes N         largest request frame (default 65536, 1024..16777216)\n"
        "  --max-connections N         open connections (default 1024)\n"
        "  --max-inflight N            requests in flight per connection (default 128)\n"
        "  --max-queue N               requests queued for workers, whole server (default 4096)\n"
        "  --idle-timeout T            close silent or stalled connections after T\n"
        "                              (seconds, or with ms suffix; default 60)\n"
        "  --http-listen HOST:PORT     HTTP/1.1 for gateways (/v1/verify), /metrics, /healthz,\n"
        "                              /readyz (default 127.0.0.1:7780; '' = off)\n"
        "  --http-port-file PATH       write the HTTP port here once listening\n"
        "  --trusted-proxies CIDR,...  peers whose X-Forwarded-For / X-Real-IP are believed\n"
        "                              (default 127.0.0.0/8,::1/128: a gateway on this host)\n"
        "  --http-max-header-bytes N   request line and headers (default 16384: a bearer token\n"
        "                              and a gateway's headers take 1-2 KiB; nginx allows 32k)\n"
        "  --http-max-headers N        header fields (default 100, Node.js's bound; 8..256)\n"
        "  --http-max-body-bytes N     request body (default 65536: no route reads a larger one)\n"
        "  --http-header-timeout T     a request must arrive whole within T (default 10: what a\n"
        "                              slowloris can hold a connection for; gateways send at "
        "once)\n"
        "  --http-access-log on|off    one info line per HTTP request (default on; never a\n"
        "                              token or header value)\n"
        "  --deleted-activity-retention D  days a deleted token's history stays readable by\n"
        "                              its owner (default 90: a quarter to ask why a token went,\n"
        "                              as long as GitHub keeps its security log; 1..3650)\n"
        "  --max-unread-mb N           answers not yet read by their clients, whole server\n"
        "                              (default 64: 400 pages of 500 tokens; 1024 connections\n"
        "                              at the 16 MiB each may hold would be 16 GiB; 1..65536)\n"
        "  --drain-grace-ms N          on SIGTERM, keep serving but report not ready for N ms\n"
        "                              before refusing (default 2000: two 1 s health checks\n"
        "                              of a load balancer; 0..60000)\n"
        "  --scim-prefix P             SCIM path prefix; repeat for more\n"
        "                              (default /scim/v2 and /api/scim/v2)\n"
        "  --cache-mb N                RocksDB block cache (default 256)\n"
        "  --cache-entries N           verification cache: tokens kept in memory\n"
        "                              (default 100000, 150-180 bytes each as make bench\n"
        "                              measures; 0 = off)\n"
        "  --port-file PATH            write the bound port here once listening\n"
        "  --log-level L               debug, info, warn, error (default info)\n"
        "  --check                     check that the store's indexes agree, then exit\n"
        "                              (exit 0 clean, 1 problems found, 2 cannot check)\n"
        "  --version, --help\n");
}

static int main_parse_uint(const char *flag, const char *s, unsigned long min, unsigned long max,
                           unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "patd: %s must be a whole number from %lu to %lu, got '%s'\n", flag, min,
                max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* HOST:PORT (or [V6]:PORT) into host (cap bytes) and *port. */
static int main_parse_hostport(const char *flag, const char *s, const char *example, char *host,
                               size_t cap, int *port)
{
    const char *colon = strrchr(s, ':');
    size_t hl = colon ? (size_t)(colon - s) : 0;
    unsigned long v;
    if (!colon || hl == 0 || hl >= cap || main_parse_uint(flag, colon + 1, 0, 65535, &v)) {
        fprintf(stderr, "patd: %s takes HOST:PORT, e.g. %s\n", flag, example);
        return -1;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') { /* [::1]:7700 */
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    *port = (int)v;
    return 0;
}

static int main_parse_duration(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-') return -1;
    if (strcmp(end, "ms") == 0)
        *ms = v;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        *ms = v * 1000;
    else
        return -1;
    return *ms > 0 ? 0 : -1;
}

/* Descriptors: one per connection, one per open table (the store keeps
 * every table open), and a few for the loop. The soft limit is often 1024,
 * below --max-connections alone, so raise it to the hard limit, as Redis
 * and nginx do, and say so if even that is short. */
static void main_raise_nofile(unsigned max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was;
    }
    rlim_t want = (rlim_t)max_connections + 1024;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        log_warn("the descriptor limit (%llu) is below --max-connections plus 1024 for the store; "
                 "raise it (ulimit -n) or lower --max-connections",
                 (unsigned long long)rl.rlim_cur);
}

static int main_mkdir_private(const char *dir)
{
    if (mkdir(dir, 0700) == 0) return 0;
    if (errno != EEXIST) {
        log_error("cannot create data directory %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        log_error("data directory %s is not a directory", dir);
        return -1;
    }
    if (sb.st_mode & 077)
        log_warn("data directory %s is mode %03o; 0700 is advised (chmod 700 %s)", dir,
                 sb.st_mode & 0777, dir);
    return 0;
}

/* One patd per data directory: an flock on <data-dir>/patd.lock, which
 * holds the pid of the patd that has it, so that a second one can say
 * which process to look at (RocksDB's own LOCK only says "Resource
 * temporarily unavailable"). Returns the descriptor (kept open for the
 * process's life), -1 when there is no lock file to take (--check on a
 * directory patd never served), or -2 when another process holds it
 * (logged). */
static int main_lock_data_dir(const char *dir, int create)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/patd.lock", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
        if (!create && errno == ENOENT) return -1;
        log_error("cannot open %s: %s", path, strerror(errno));
        return -2;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
        if (pid > 0)
            log_error("another patd (pid %ld) holds the data directory %s: stop it, or give this "
                      "one another --data-dir",
                      pid, dir);
        else
            log_error("another process holds the data directory %s (%s is locked)", dir, path);
        close(fd);
        return -2;
    }
    if (create) {
        char buf[32];
        int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
            log_warn("cannot write the pid to %s: %s", path, strerror(errno));
    }
    return fd;
}

/* Reads the platform key, creating it (0600, fresh random) if missing. The
 * key itself is never logged. Returns a malloc'd string or NULL. */
static char *main_platform_key(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        uint8_t raw[MAIN_KEY_BYTES];
        char hex[2 * MAIN_KEY_BYTES + 2];
        if (token_random(raw, sizeof(raw)) != 0) {
            log_error("random generator failed while making the platform key");
            return NULL;
        }
        for (int i = 0; i < MAIN_KEY_BYTES; i++)
            sprintf(hex + 2 * i, "%02x", raw[i]);
        explicit_bzero(raw, sizeof(raw));
        hex[2 * MAIN_KEY_BYTES] = '\n';
        int wfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (wfd < 0 || write(wfd, hex, 2 * MAIN_KEY_BYTES + 1) != 2 * MAIN_KEY_BYTES + 1 ||
            fsync(wfd) != 0) {
            log_error("cannot write platform key file %s: %s", path, strerror(errno));
            if (wfd >= 0) close(wfd);
            return NULL;
        }
        close(wfd);
        explicit_bzero(hex, sizeof(hex));
        log_info("event=platform_key_created path=%s mode=0600", path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0) {
        log_error("cannot open platform key file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || (sb.st_mode & 077)) {
        log_error("platform key file %s is readable or writable by others (mode %03o); "
                  "run: chmod 600 %s",
                  path, sb.st_mode & 0777, path);
        close(fd);
        return NULL;
    }
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        log_error("cannot read platform key file %s: %s", path, strerror(errno));
        return NULL;
    }
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = 0;
    /* One key a line: the current one, and during a rotation the next. */
    int lines = 0;
    for (char *line = buf, *end; line && *line; line = end ? end + 1 : NULL) {
        end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len && line[len - 1] == '\r') len--;
        if (len < MAIN_KEY_MIN_CHARS || ++lines > SVC_PLATFORM_KEYS) {
            log_error(len < MAIN_KEY_MIN_CHARS
                          ? "a platform key in %s is shorter than %d characters"
                          : "%s holds more than %d platform keys (one a line: current, next)",
                      path, len < MAIN_KEY_MIN_CHARS ? MAIN_KEY_MIN_CHARS : SVC_PLATFORM_KEYS);
            explicit_bzero(buf, sizeof(buf));
            return NULL;
        }
    }
    char *key = strdup(buf);
    explicit_bzero(buf, sizeof(buf));
    return key;
}

/* SIGHUP: reads the key file again. A file that cannot be used keeps the
 * keys in force (main_platform_key logged why). */
typedef struct {
    const char *key_file;
    svc_t *svc;
} main_reload_t;

static void main_reload(void *arg)
{
    main_reload_t *r = arg;
    char *keys = main_platform_key(r->key_file);
    if (keys == NULL) {
        log_warn("event=platform_keys_reload_failed path=%s: the keys in force stay", r->key_file);
        return;
    }
    int n = svc_set_platform_keys(r->svc, keys);
    log_info("event=platform_keys_reloaded path=%s keys=%d", r->key_file, n);
}

int main(int argc, char **argv)
{
    srv_config_t scfg = {
        .limits =
            {
                .max_connections = 1024,
                .max_inflight = 128,
                .max_queue = 4096,
                .idle_timeout_ms = 60000,
                .max_output = 16u << 20,
                .max_output_total = 64u << 20,
            },
        .drain_grace_ms = 2000,
        .drain_timeout_ms = 5000,
        .handle_signals = 1,
    };
    framed_cfg_t fcfg = {.max_frame = 64 * 1024};
    srv_listener_t lsn = {
        .host = "127.0.0.1",
        .port = 7700,
        .transport = &tcp_transport,
        .protocol = &framed_protocol,
        .protocol_cfg = &fcfg,
    };
    const char *data_dir = "./data";
    const char *key_file = NULL;
    unsigned long workers = 16, cache_mb = 256, cache_entries = 100000, v;
    int check = 0;
    static const char *scim_defaults[] = {"/scim/v2", "/api/scim/v2"};
    const char *scim[SVC_SCIM_PREFIXES];
    int n_scim = 0;
    char host_buf[256], http_host_buf[256];
    srv_listener_t hlsn = {
        .host = "127.0.0.1",
        .port = 7780,
        .transport = &tcp_transport,
        .protocol = &http_protocol,
    };
    int http_on = 1;
    const char *trusted = NULL;
    unsigned long http_max_header_bytes = 16 * 1024, http_max_body = 64 * 1024;
    unsigned http_max_headers = 100;
    uint64_t http_header_timeout_ms = 10000;
    int http_access_log = 1;
    unsigned long retention_days = 90;

    enum {
        O_LISTEN = 256,
        O_DATA,
        O_KEY,
        O_WORKERS,
        O_FRAME,
        O_CONNS,
        O_INFLIGHT,
        O_QUEUE,
        O_IDLE,
        O_GRACE,
        O_UNREAD,
        O_RETENTION,
        O_HTTP_LISTEN,
        O_HTTP_PORTFILE,
        O_TRUSTED,
        O_HTTP_HDR_BYTES,
        O_HTTP_HDRS,
        O_HTTP_BODY,
        O_HTTP_TIMEOUT,
        O_HTTP_LOG,
        O_SCIM,
        O_CENTRIES,
        O_CACHE,
        O_PORTFILE,
        O_LOG,
        O_CHECK,
        O_VERSION,
        O_HELP
    };
    static const struct option opts[] = {
        {"listen", required_argument, 0, O_LISTEN},
        {"data-dir", required_argument, 0, O_DATA},
        {"platform-key-file", required_argument, 0, O_KEY},
        {"workers", required_argument, 0, O_WORKERS},
        {"max-frame-bytes", required_argument, 0, O_FRAME},
        {"max-connections", required_argument, 0, O_CONNS},
        {"max-inflight", required_argument, 0, O_INFLIGHT},
        {"max-queue", required_argument, 0, O_QUEUE},
        {"idle-timeout", required_argument, 0, O_IDLE},
        {"drain-grace-ms", required_argument, 0, O_GRACE},
        {"max-unread-mb", required_argument, 0, O_UNREAD},
        {"deleted-activity-retention", required_argument, 0, O_RETENTION},
        {"http-listen", required_argument, 0, O_HTTP_LISTEN},
        {"http-port-file", required_argument, 0, O_HTTP_PORTFILE},
        {"trusted-proxies", required_argument, 0, O_TRUSTED},
        {"http-max-header-bytes", required_argument, 0, O_HTTP_HDR_BYTES},
        {"http-max-headers", required_argument, 0, O_HTTP_HDRS},
        {"http-max-body-bytes", required_argument, 0, O_HTTP_BODY},
        {"http-header-timeout", required_argument, 0, O_HTTP_TIMEOUT},
        {"http-access-log", required_argument, 0, O_HTTP_LOG},
        {"scim-prefix", required_argument, 0, O_SCIM},
        {"cache-mb", required_argument, 0, O_CACHE},
        {"cache-entries", required_argument, 0, O_CENTRIES},
        {"port-file", required_argument, 0, O_PORTFILE},
        {"log-level", required_argument, 0, O_LOG},
        {"check", no_argument, 0, O_CHECK},
        {"version", no_argument, 0, O_VERSION},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_LISTEN:
            if (main_parse_hostport("--listen", optarg, "127.0.0.1:7700", host_buf,
                                    sizeof(host_buf), &lsn.port))
                return 2;
            lsn.host = host_buf;
            break;
        case O_HTTP_LISTEN:
            if (optarg[0] == '\0') {
                http_on = 0; /* --http-listen '': no HTTP listener */
                break;
            }
            if (main_parse_hostport("--http-listen", optarg, "127.0.0.1:7780", http_host_buf,
                                    sizeof(http_host_buf), &hlsn.port))
                return 2;
            hlsn.host = http_host_buf;
            http_on = 1;
            break;
        case O_HTTP_PORTFILE:
            hlsn.port_file = optarg;
            break;
        case O_TRUSTED:
            trusted = optarg;
            break;
        case O_HTTP_HDR_BYTES:
            if (main_parse_uint("--http-max-header-bytes", optarg, 1024, 1u << 20, &v)) return 2;
            http_max_header_bytes = v;
            break;
        case O_HTTP_HDRS:
            if (main_parse_uint("--http-max-headers", optarg, 8, 256, &v)) return 2;
            http_max_headers = (unsigned)v;
            break;
        case O_HTTP_BODY:
            if (main_parse_uint("--http-max-body-bytes", optarg, 0, 16u << 20, &v)) return 2;
            http_max_body = v;
            break;
        case O_HTTP_TIMEOUT:
            if (main_parse_duration(optarg, &http_header_timeout_ms)) {
                fprintf(stderr,
                        "patd: --http-header-timeout takes seconds or e.g. 500ms, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case O_HTTP_LOG:
            if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
                fprintf(stderr, "patd: --http-access-log is on or off\n");
                return 2;
            }
            http_access_log = strcmp(optarg, "on") == 0;
            break;
        case O_DATA:
            data_dir = optarg;
            break;
        case O_KEY:
            key_file = optarg;
            break;
        case O_WORKERS:
            if (main_parse_uint("--workers", optarg, 1, 256, &workers)) return 2;
            break;
        case O_FRAME:
            if (main_parse_uint("--max-frame-bytes", optarg, 1024, 16u << 20, &v)) return 2;
            fcfg.max_frame = (uint32_t)v;
            break;
        case O_CONNS:
            if (main_parse_uint("--max-connections", optarg, 1, 1000000, &v)) return 2;
            scfg.limits.max_connections = (unsigned)v;
            break;
        case O_INFLIGHT:
            if (main_parse_uint("--max-inflight", optarg, 1, 65536, &v)) return 2;
            scfg.limits.max_inflight = (unsigned)v;
            break;
        case O_QUEUE:
            if (main_parse_uint("--max-queue", optarg, 1, 1000000, &v)) return 2;
            scfg.limits.max_queue = (unsigned)v;
            break;
        case O_IDLE:
            if (main_parse_duration(optarg, &scfg.limits.idle_timeout_ms)) {
                fprintf(stderr, "patd: --idle-timeout takes seconds or e.g. 500ms, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case O_RETENTION:
            if (main_parse_uint("--deleted-activity-retention", optarg, 1, 3650, &retention_days))
                return 2;
            break;
        case O_UNREAD:
            if (main_parse_uint("--max-unread-mb", optarg, 1, 65536, &v)) return 2;
            scfg.limits.max_output_total = (size_t)v << 20;
            break;
        case O_GRACE:
            if (main_parse_uint("--drain-grace-ms", optarg, 0, 60000, &v)) return 2;
            scfg.drain_grace_ms = v;
            break;
        case O_SCIM:
            if (optarg[0] != '/' || n_scim == SVC_SCIM_PREFIXES) {
                fprintf(stderr, "patd: --scim-prefix must start with / (at most %d)\n",
                        SVC_SCIM_PREFIXES);
                return 2;
            }
            scim[n_scim++] = optarg;
            break;
        case O_CACHE:
            if (main_parse_uint("--cache-mb", optarg, 1, 65536, &cache_mb)) return 2;
            break;
        case O_CENTRIES:
            if (main_parse_uint("--cache-entries", optarg, 0, 100000000, &cache_entries)) return 2;
            break;
        case O_PORTFILE:
            lsn.port_file = optarg;
            break;
        case O_LOG: {
            log_level_t lv;
            if (log_parse_level(optarg, &lv)) {
                fprintf(stderr, "patd: --log-level is debug, info, warn or error\n");
                return 2;
            }
            log_set_level(lv);
            break;
        }
        case O_CHECK:
            check = 1;
            break;
        case O_VERSION:
            printf("patd %s\n", PATD_VERSION);
            return 0;
        case O_HELP:
        case 'h':
            main_usage(stdout);
            return 0;
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "patd: unexpected argument '%s'\n", argv[optind]);
        main_usage(stderr);
        return 2;
    }

    /* Buffers of 128 KiB and more (pages of tokens, output held for slow
     * readers) are mmapped and go back to the system when freed. glibc
     * would otherwise raise this threshold after each such free and serve
     * them from the heap, where memory that unread answers once held stays
     * resident: with 100 clients that never read, RSS grew 300-500 MiB
     * with the budget for unread answers at 32 MiB, and 58-85 MiB with the
     * threshold fixed (test_amplification). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);

    /* libuv sizes its pool from the environment at first use. */
    char wbuf[16];
    snprintf(wbuf, sizeof(wbuf), "%lu", workers);
    setenv("UV_THREADPOOL_SIZE", wbuf, 1);

    main_raise_nofile(scfg.limits.max_connections);
    umask(077);
    char db_dir[PATH_MAX], key_path[PATH_MAX], probe[PATH_MAX + 16];
    snprintf(db_dir, sizeof(db_dir), "%s/db", data_dir);
    if (check) {
        /* --check reads a store; it never makes one where a typo points. */
        struct stat sb;
        snprintf(probe, sizeof(probe), "%s/CURRENT", db_dir);
        if (stat(probe, &sb) != 0) {
            fprintf(stderr, "patd --check: no store in %s (nothing was created)\n", db_dir);
            return 2;
        }
    } else if (main_mkdir_private(data_dir) != 0) {
        return 1;
    }
    int lock_fd = main_lock_data_dir(data_dir, !check);
    if (lock_fd == -2) return check ? 2 : 1;
    if (key_file == NULL) {
        snprintf(key_path, sizeof(key_path), "%s/platform.key", data_dir);
        key_file = key_path;
    }

    char *err = NULL;
    store_options_t sopt = {.block_cache_bytes = cache_mb << 20};
    store_t *st = store_open(db_dir, &sopt, &err);
    if (st == NULL) {
        log_error("%s", err ? err : "cannot open store");
        free(err);
        return check ? 2 : 1;
    }
    if (check) {
        long problems = store_check(st, stdout);
        store_close(st);
        if (lock_fd >= 0) close(lock_fd);
        if (problems < 0) return 2;
        printf("patd --check: %ld problem(s)\n", problems);
        return problems ? 1 : 0;
    }

    char *key = main_platform_key(key_file);
    if (key == NULL) {
        store_close(st);
        return 1;
    }
    stats_t stats = {0};
    usage_t *usage = usage_new(st);
    usage_set_retention(usage, (int64_t)retention_days * 86400000);
    cache_t *cache = cache_new(cache_entries);
    svc_t svc;
    svc_init(&svc, st, usage, cache, &stats, key);
    if (n_scim == 0) {
        scim[n_scim++] = scim_defaults[0];
        scim[n_scim++] = scim_defaults[1];
    }
    for (int i = 0; i < n_scim; i++)
        svc_add_scim_prefix(&svc, scim[i]);
#ifdef PATD_TEST_CLOCK
    log_warn("this is patd-testclock: its clock can be moved; never run it in production");
#endif
    log_info("event=starting version=%s data_dir=%s workers=%lu", PATD_VERSION, data_dir, workers);

    fcfg.svc = &svc;
    main_reload_t reload = {.key_file = key_file, .svc = &svc};
    scfg.on_reload = main_reload;
    scfg.reload_arg = &reload;
    http_cfg_t hcfg;
    if (http_cfg_init(&hcfg, &svc, &stats) != 0) abort(); /* Verify is in the descriptor */
    hcfg.max_header_bytes = http_max_header_bytes;
    hcfg.max_headers = http_max_headers;
    hcfg.max_body_bytes = http_max_body;
    hcfg.header_timeout_ms = http_header_timeout_ms;
    hcfg.access_log = http_access_log;
    char terr[128];
    if (trusted && http_set_trusted(&hcfg, trusted, terr, sizeof(terr)) != 0) {
        fprintf(stderr, "patd: --trusted-proxies: %s\n", terr);
        svc_destroy(&svc);
        cache_free(cache);
        usage_free(usage);
        store_close(st);
        return 2;
    }
    hlsn.protocol_cfg = &hcfg;
    srv_t *srv = srv_new(&scfg, &stats);
    int rc = -1;
    if (srv_listen(srv, &lsn) != 0 || (http_on && srv_listen(srv, &hlsn) != 0)) {
        /* logged */
    } else if (usage_start(usage) != 0) {
        log_error("cannot start the last-used flusher thread");
    } else {
        rc = srv_run(srv);
        usage_stop(usage);
    }
    srv_free(srv);
    /* After the loop: nothing else runs; write what is pending and close. */
    if (usage_flush(usage) != 0) log_warn("last-used data could not be written at shutdown");
    svc_destroy(&svc);
    cache_free(cache);
    usage_free(usage);
    store_close(st);
    log_info("event=stopped");
    if (lock_fd >= 0) close(lock_fd); /* the lock goes with the process, and here first */
    return rc == 0 ? 0 : 1;
}
