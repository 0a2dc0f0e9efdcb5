/* main: wires patd's modules together from the configuration (config.c):
 * data directory, platform key, store, service, listeners; then orderly
 * shutdown, freeing what it made on every path. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "framed.h"
#include "http.h"
#include "node.h"
#include "service.h"
#include "srv.h"
#include "stats.h"
#include "copy_store.h"
#include "store.h"
#include "tcp.h"
#include "tls.h"
#include "token.h"
#include "usage.h"

#define MAIN_KEY_BYTES     32
#define MAIN_KEY_MIN_CHARS 32

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

/* SIGHUP: reads the key file again, and the TLS certificate and key. A
 * file that cannot be used keeps what is in force (logged why). */
typedef struct {
    const char *key_file;
    svc_t *svc;
    tls_ctx_t *tls[2]; /* the framed and HTTP listeners' contexts, or NULL */
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
    for (int i = 0; i < 2; i++) {
        char err[256];
        if (r->tls[i] == NULL) continue;
        if (tls_reload(r->tls[i], err, sizeof(err)) != 0)
            log_warn("event=tls_reload_failed listener=%s: %s; the certificate in force stays",
                     i ? "http" : "framed", err);
        else
            log_info("event=tls_reloaded listener=%s", i ? "http" : "framed");
    }
}

/* The TLS context of a listener that asked for one (tls://, https://). */
static tls_ctx_t *main_tls(const config_t *cfg, const config_addr_t *a, const char *alpn,
                           const char *name, stats_t *stats, int *failed)
{
    if (a->off || !a->tls) return NULL;
    tls_config_t tc = {
        .cert = cfg->tls_cert,
        .key = cfg->tls_key,
        .client_ca = cfg->tls_client_ca[0] ? cfg->tls_client_ca : NULL,
        .require_client_cert = (int)cfg->tls_require_client_cert,
        .alpn = alpn,
        .max_handshakes = (unsigned)cfg->tls_max_handshakes,
        .handshake_timeout_ms = cfg->tls_handshake_timeout_ms,
        .stats = stats,
    };
    char err[256];
    tls_ctx_t *t = tls_new(&tc, err, sizeof(err));
    if (t == NULL) {
        log_error("--%s: %s", name, err);
        *failed = 1;
    }
    return t;
}

/* <data-dir>/patd.addr: where this patd answers, one listener a line
 * ("framed 127.0.0.1:7700", "http 127.0.0.1:7780"; over TLS "framed
 * tls://...", "http https://..."), an address a client
 * on this host can connect to (a wildcard becomes loopback). A container's
 * healthcheck reads it (patctl --addr-file), so it asks this patd on the
 * port it really has, never a default one where another may answer.
 * Written whole (rename) once every listener is up; removed at exit. */
static void main_write_addr_file(const char *path, const srv_t *srv, const config_t *cfg)
{
    const config_addr_t *a[2] = {&cfg->listen, &cfg->http_listen};
    const char *names[2] = {"framed", "http"};
    char tmp[PATH_MAX + 32], text[2 * (CONFIG_HOST_MAX + 32)] = "";
    size_t len = 0;
    for (int i = 0, li = 0; i < 2; i++) {
        if (a[i]->off) continue;
        const char *h = strcmp(a[i]->host, "0.0.0.0") == 0 ? "127.0.0.1"
                        : strcmp(a[i]->host, "::") == 0    ? "::1"
                                                           : a[i]->host;
        int v6 = strchr(h, ':') != NULL;
        const char *scheme = !a[i]->tls ? "" : i ? "https://" : "tls://";
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s %s%s%s%s:%d\n", names[i],
                                scheme, v6 ? "[" : "", h, v6 ? "]" : "", srv_port(srv, li++));
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || close(fd) != 0 || rename(tmp, path) != 0)
        log_warn("cannot write %s: %s", path, strerror(errno));
}

/* The store's URL: --store, or the embedded store in the data directory. */
static const char *main_store_url(const config_t *cfg, char *buf, size_t cap)
{
    if (cfg->store[0]) return cfg->store;
    snprintf(buf, cap, "rocksdb:%s/db", cfg->data_dir);
    return buf;
}

/* patd check: reads a store; never makes one where a typo points. */
/* `patd routes`: the REST API's table, one route a line. */
static int main_routes(void)
{
    size_t n;
    const http_api_route_t *r = http_api_routes(&n);
    for (size_t i = 0; i < n; i++) {
        /* As documents show it: {user.user_id} is {user_id}. */
        char shown[128];
        size_t k = 0;
        for (const char *p = r[i].pattern; *p && k + 1 < sizeof(shown); p++) {
            if (*p == '{') {
                const char *e = strchr(p, '}'), *dot = memchr(p, '.', (size_t)(e - p));
                shown[k++] = '{';
                if (dot) p = dot;
                continue;
            }
            shown[k++] = *p;
        }
        shown[k] = '\0';
        printf("%-6s %-44s %s %u\n", r[i].verb, shown, r[i].rpc, r[i].status);
    }
    return 0;
}

/* The embedded store is one process's: its data directory is locked. A
 * database has its own locks (storage/postgresql/). */
static int main_store_embedded(const char *url)
{
    return strncmp(url, "rocksdb:", 8) == 0;
}

static int main_check(const config_t *cfg)
{
    char ubuf[PATH_MAX + 16];
    const char *url = main_store_url(cfg, ubuf, sizeof(ubuf));
    int lock_fd = main_store_embedded(url) ? main_lock_data_dir(cfg->data_dir, 0) : -1;
    if (lock_fd == -2) return 2;
    char *err = NULL;
    store_options_t sopt = {.cache_bytes = (size_t)cfg->cache_mb << 20, .must_exist = 1};
    store_t *st = store_open(url, &sopt, &err);
    int rc = 2;
    if (st == NULL) {
        fprintf(stderr, "patd check: %s (nothing was created)\n", err ? err : "cannot open store");
        free(err);
    } else {
        long problems = store_check(st, stdout);
        store_close(st);
        if (problems >= 0) {
            printf("patd check: %ld problem(s)\n", problems);
            rc = problems ? 1 : 0;
        }
    }
    if (lock_fd >= 0) close(lock_fd);
    return rc;
}

/* patd migrate: applies the store's migrations (as a start would), says
 * where its schema is, and exits. Beside a serving patd, too. */
static int main_migrate(const config_t *cfg)
{
    char ubuf[PATH_MAX + 16];
    const char *url = main_store_url(cfg, ubuf, sizeof(ubuf));
    int lock_fd = -1;
    if (main_store_embedded(url)) {
        if (main_mkdir_private(cfg->data_dir) != 0) return 2;
        if ((lock_fd = main_lock_data_dir(cfg->data_dir, 1)) < 0) return 2;
    }
    char *err = NULL;
    store_options_t sopt = {.shared = 1, .connections = 1};
    store_t *st = store_open(url, &sopt, &err);
    int rc = 2;
    if (st == NULL) {
        fprintf(stderr, "patd migrate: %s\n", err ? err : "cannot open store");
        free(err);
    } else {
        unsigned version, known;
        store_schema(st, &version, &known);
        printf("patd migrate: %s is at schema version %u (this patd knows %u)\n", store_url(st),
               version, known);
        store_close(st);
        rc = 0;
    }
    if (lock_fd >= 0) close(lock_fd);
    return rc;
}

/* patd copy-store: the embedded source's directory is locked as a server
 * would lock it (it must not be served meanwhile). */
static int main_copy_store(const config_t *cfg)
{
    int lock_fd = -1;
    if (main_store_embedded(cfg->copy_from) && strcmp(cfg->copy_from, "rocksdb:") != 0) {
        /* rocksdb:DIR/db is what patd serves from --data-dir DIR. */
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", cfg->copy_from + 8);
        char *slash = strrchr(dir, '/');
        if (slash && strcmp(slash, "/db") == 0) {
            *slash = '\0';
            if ((lock_fd = main_lock_data_dir(dir, 0)) == -2) return 2;
        }
    }
    int rc = copy_store(cfg->copy_from, cfg->copy_to, stdout);
    if (lock_fd >= 0) close(lock_fd);
    return rc;
}

/* The store's log lines, in patd's log (set before the store opens, so
 * that its migrations and connection troubles are logged as ours). */
static void main_store_log(int level, const char *line)
{
    log_msg(level <= 0   ? LOG_DEBUG
            : level == 1 ? LOG_INFO
            : level == 2 ? LOG_WARN
                         : LOG_ERROR,
            "storage: %s", line);
}

static void main_prefetch(void *arg, const char *const *tokens, size_t n)
{
    svc_prefetch(arg, tokens, n);
}

static void main_prefetch_done(void *arg)
{
    svc_prefetch_done(arg);
}

static void main_close_node(void *arg)
{
    node_close(*(node_t **)arg);
    *(node_t **)arg = NULL;
}

/* Serves until a signal stops it; every module is made here and freed
 * here, on every path. */
static int main_serve(const config_t *cfg)
{
    char ubuf[PATH_MAX + 16], key_path[PATH_MAX + 16], addr_path[PATH_MAX + 16];
    const char *url = main_store_url(cfg, ubuf, sizeof(ubuf));
    const char *key_file = cfg->platform_key_file;
    if (key_file[0] == '\0') {
        snprintf(key_path, sizeof(key_path), "%s/platform.key", cfg->data_dir);
        key_file = key_path;
    }
    store_t *st = NULL;
    usage_t *usage = NULL;
    http_cfg_t hcfg = {0}; /* destroyed at out: whatever init made */
    tls_ctx_t *tls[2] = {NULL, NULL};
    cache_t *cache = NULL;
    srv_t *srv = NULL;
    node_t *node = NULL;
    svc_t svc;
    int have_svc = 0, rc = 1, lock_fd = -1;
    char *key = NULL, *err = NULL;

    if (main_mkdir_private(cfg->data_dir) != 0) goto out;
    if ((lock_fd = main_lock_data_dir(cfg->data_dir, 1)) < 0) goto out;
    char node_addr[2 * CONFIG_HOST_MAX + 48];
    snprintf(node_addr, sizeof(node_addr), "%s:%d http %s:%d", cfg->listen.host, cfg->listen.port,
             cfg->http_listen.host, cfg->http_listen.port);
    store_options_t sopt = {.cache_bytes = (size_t)cfg->cache_mb << 20,
                            .connections = (unsigned)cfg->store_connections,
                            .cluster_lease_ms = cfg->cluster_lease_ms,
                            .cluster_drift_ppm = cfg->cluster_drift_ppm,
                            .cluster_allowance_ms = cfg->cluster_allowance_ms,
                            .node_addr = node_addr};
    if ((st = store_open(url, &sopt, &err)) == NULL) {
        log_error("%s", err ? err : "cannot open store");
        goto out;
    }
    if ((key = main_platform_key(key_file)) == NULL) goto out;
    stats_t stats = {0};
    usage = usage_new(st);
    usage_set_retention(usage, (int64_t)cfg->retention_days * 86400000);
    cache = cache_new(cfg->cache_entries);
    svc_init(&svc, st, usage, cache, &stats, key);
    have_svc = 1;
    for (int i = 0; i < cfg->scim_prefixes.n; i++)
        svc_add_scim_prefix(&svc, cfg->scim_prefixes.item[i]);
#ifdef PATD_TEST_CLOCK
    log_warn("this is patd-testclock: its clock can be moved; never run it in production");
#endif
    log_info("event=starting version=%s store=%s workers=%llu", PATD_VERSION, store_url(st),
             (unsigned long long)cfg->workers);

    framed_cfg_t fcfg = {.max_frame = (uint32_t)cfg->max_frame_bytes, .svc = &svc};
    if (http_cfg_init(&hcfg, &svc, &stats) != 0) abort(); /* the methods are in the descriptor */
    hcfg.max_header_bytes = cfg->http_max_header_bytes;
    hcfg.max_headers = (unsigned)cfg->http_max_headers;
    hcfg.max_body_bytes = cfg->http_max_body_bytes;
    hcfg.header_timeout_ms = cfg->http_header_timeout_ms;
    hcfg.access_log = (int)cfg->http_access_log;
    hcfg.revoke_per_minute = (unsigned)cfg->revoke_per_minute;
    hcfg.ui_auth_header = cfg->ui_auth_header;
    hcfg.ui_frame_ancestors = cfg->ui_frame_ancestors;
    svc_ui_set_ttl(&svc, cfg->ui_link_ttl_ms, cfg->ui_session_ttl_ms);
    char terr[128];
    if (http_set_trusted(&hcfg, cfg->trusted_proxies, terr, sizeof(terr)) != 0) {
        log_error("--trusted-proxies: %s", terr);
        rc = 2;
        goto out;
    }
    int tls_failed = 0;
    tls[0] = main_tls(cfg, &cfg->listen, NULL, "listen", &stats, &tls_failed);
    tls[1] = main_tls(cfg, &cfg->http_listen, "http/1.1", "http-listen", &stats, &tls_failed);
    if (cfg->platform_client_cert_required && (!cfg->tls_client_ca[0] || !cfg->listen.tls)) {
        log_error("--platform-client-cert-required needs --tls-client-ca and a tls:// --listen");
        tls_failed = 1;
    }
    if (tls_failed) {
        rc = 2;
        goto out;
    }
    svc.platform_needs_cert = (int)cfg->platform_client_cert_required;
    main_reload_t reload = {.key_file = key_file, .svc = &svc, .tls = {tls[0], tls[1]}};
    srv_config_t scfg = {
        .limits =
            {
                .max_connections = (unsigned)cfg->max_connections,
                .max_inflight = (unsigned)cfg->max_inflight,
                .max_queue = (unsigned)cfg->max_queue,
                .idle_timeout_ms = cfg->idle_timeout_ms,
                .max_output = 16u << 20,
                .max_output_total = (size_t)cfg->max_unread_mb << 20,
            },
        .drain_grace_ms = cfg->drain_grace_ms,
        .drain_timeout_ms = 5000,
        .handle_signals = 1,
        .on_reload = main_reload,
        .reload_arg = &reload,
        .on_close = main_close_node,
        .close_arg = &node,
    };
    /* A store that reads many tokens in one go gets cold Verifies in
     * batches (conn.h); the others keep them on the worker pool, which
     * waits on a disk in parallel. */
    conn_batch_t batch = {.prefetch = main_prefetch, .done = main_prefetch_done, .arg = &svc};
    if (store_reads_in_batches(st)) scfg.batch = &batch;
    srv_listener_t lsn = {
        .host = cfg->listen.host,
        .port = cfg->listen.port,
        .port_file = cfg->port_file[0] ? cfg->port_file : NULL,
        .transport = tls[0] ? &tls_transport : &tcp_transport,
        .transport_cfg = tls[0],
        .protocol = &framed_protocol,
        .protocol_cfg = &fcfg,
    };
    srv_listener_t hlsn = {
        .host = cfg->http_listen.host,
        .port = cfg->http_listen.port,
        .port_file = cfg->http_port_file[0] ? cfg->http_port_file : NULL,
        .transport = tls[1] ? &tls_transport : &tcp_transport,
        .transport_cfg = tls[1],
        .protocol = &http_protocol,
        .protocol_cfg = &hcfg,
    };
    srv = srv_new(&scfg, &stats);
    if (srv_listen(srv, &lsn) != 0 || (!cfg->http_listen.off && srv_listen(srv, &hlsn) != 0)) {
        /* logged */
    } else if (usage_start(usage) != 0) {
        log_error("cannot start the last-used flusher thread");
    } else {
        node = node_start(srv_loop(srv), st);
        snprintf(addr_path, sizeof(addr_path), "%s/patd.addr", cfg->data_dir);
        main_write_addr_file(addr_path, srv, cfg);
        rc = srv_run(srv) == 0 ? 0 : 1;
        usage_stop(usage);
        unlink(addr_path);
    }
out:
    srv_free(srv);
    http_cfg_destroy(&hcfg);
    tls_free(tls[0]);
    tls_free(tls[1]);
    /* After the loop: nothing else runs; write what is pending and close. */
    if (usage && usage_flush(usage) != 0)
        log_warn("last-used data could not be written at shutdown");
    if (have_svc)
        svc_destroy(&svc);
    else
        free(key);
    cache_free(cache);
    usage_free(usage);
    store_close(st);
    free(err);
    if (have_svc) log_info("event=stopped");
    if (lock_fd >= 0) close(lock_fd); /* the lock goes with the process, and here first */
    return rc;
}

int main(int argc, char **argv)
{
    config_t cfg;
    int parsed = config_parse(&cfg, argc, argv);
    if (parsed != 0) return parsed > 0 ? 0 : 2;
    log_level_t lv;
    log_parse_level(cfg.log_level, &lv); /* checked by config_parse */
    log_set_level(lv);

    /* Buffers of 128 KiB and more (pages of tokens, output held for slow
     * readers) are mmapped and go back to the system when freed. glibc
     * would otherwise raise this threshold after each such free and serve
     * them from the heap, where memory that unread answers once held stays
     * resident: with 100 clients that never read, RSS grew 300-500 MiB
     * with the budget for unread answers at 32 MiB, and 58-85 MiB with the
     * threshold fixed (test_amplification). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    /* libuv sizes its pool from the environment at first use. */
    char wbuf[24];
    snprintf(wbuf, sizeof(wbuf), "%llu", (unsigned long long)cfg.workers);
    setenv("UV_THREADPOOL_SIZE", wbuf, 1);
    main_raise_nofile((unsigned)cfg.max_connections);
    umask(077);
    if (cfg.mode == CONFIG_ROUTES) return main_routes();
    store_set_log(main_store_log);
    switch (cfg.mode) {
    case CONFIG_CHECK:
        return main_check(&cfg);
    case CONFIG_MIGRATE:
        return main_migrate(&cfg);
    case CONFIG_COPY_STORE:
        return main_copy_store(&cfg);
    default:
        return main_serve(&cfg);
    }
}
