/* config: the table of patd's settings, the command line parsed from it,
 * and the help printed from it (see config.h). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

typedef enum {
    CONFIG_UINT,     /* a whole number in [min, max] */
    CONFIG_DURATION, /* seconds, or with an "ms" suffix; stored in ms */
    CONFIG_ONOFF,    /* "on" or "off": 1 or 0 */
    CONFIG_STRING,   /* any text ("" allowed where the default is "") */
    CONFIG_ADDR,     /* HOST:PORT or [V6]:PORT; '' = off where off_ok */
    CONFIG_LIST,     /* repeatable; the first use replaces the default */
    CONFIG_LEVEL,    /* a log level */
} config_type_t;

typedef struct {
    const char *name; /* the flag without "--" */
    config_type_t type;
    size_t off; /* into config_t */
    const char *def;
    uint64_t min, max;
    const char *arg;  /* the argument's name in --help */
    const char *help; /* what it is */
    const char *why;  /* why the default is what it is */
    int off_ok;       /* CONFIG_ADDR: '' turns the listener off */
} config_def_t;

#define CFG(f) offsetof(config_t, f)

/* The one table. Defaults just work on one machine: loopback only, the
 * embedded store under ./data. */
static const config_def_t config_table[] = {
    {"listen", CONFIG_ADDR, CFG(listen), "127.0.0.1:7700", 0, 0, "[tls://]HOST:PORT",
     "framed protobuf API (port 0: any free port; tls://: over TLS)",
     "loopback: bearer tokens travel in clear", 0},
    {"http-listen", CONFIG_ADDR, CFG(http_listen), "127.0.0.1:7780", 0, 0, "[https://]HOST:PORT",
     "HTTP/1.1 for gateways (/v1/verify), the REST API, the page, /metrics ('': off; "
     "https://: over TLS)",
     "loopback, next to the gateway that calls it", 1},
    {"tls-cert", CONFIG_STRING, CFG(tls_cert), "", 0, 0, "FILE",
     "the TLS certificate chain (PEM) of every TLS listener", "no TLS unless a listener asks", 0},
    {"tls-key", CONFIG_STRING, CFG(tls_key), "", 0, 0, "FILE",
     "its private key (PEM), refused if group or others may read it", "as the platform key", 0},
    {"tls-client-ca", CONFIG_STRING, CFG(tls_client_ca), "", 0, 0, "FILE",
     "ask TLS clients for a certificate and verify it against these CAs (PEM)",
     "'': no client certificates", 0},
    {"tls-require-client-cert", CONFIG_ONOFF, CFG(tls_require_client_cert), "off", 0, 1, "on|off",
     "refuse TLS clients without a certificate from --tls-client-ca",
     "off: a gateway may verify with a bearer token alone", 0},
    {"platform-client-cert-required", CONFIG_ONOFF, CFG(platform_client_cert_required), "off", 0, 1,
     "on|off",
     "accept the platform key only over TLS with a client certificate from --tls-client-ca",
     "off: the key alone, as on loopback", 0},
    {"tls-handshake-timeout", CONFIG_DURATION, CFG(tls_handshake_timeout_ms), "10", 1, 600000, "T",
     "a TLS handshake must finish within T", "a stalled handshake holds a slot, not the loop", 0},
    {"tls-max-handshakes", CONFIG_UINT, CFG(tls_max_handshakes), "256", 1, 100000, "N",
     "TLS handshakes in progress per listener; beyond, a new connection is closed",
     "a few ms of CPU each: a flood of half-open ones cannot fill the loop", 0},
    {"data-dir", CONFIG_STRING, CFG(data_dir), "./data", 0, 0, "DIR",
     "platform key, lock file and the embedded store (made 0700)", "make run needs nothing else",
     0},
    {"store", CONFIG_STRING, CFG(store), "", 0, 0, "URL",
     "where tokens are kept: rocksdb:DIR, or postgresql://HOST[:PORT]/DB?... (libpq's URI; "
     "the password from PGPASSFILE or ~/.pgpass, never in the URL)",
     "rocksdb:<data-dir>/db, the embedded store", 0},
    {"store-connections", CONFIG_UINT, CFG(store_connections), "8", 1, 1000, "N",
     "PostgreSQL: connections the workers share",
     "a cold Verify holds one for a round trip; 8 keep 2 cores busy and leave the database's "
     "100 default connections to the platform",
     0},
    {"cluster-lease-ms", CONFIG_UINT, CFG(cluster_lease_ms), "2000", 200, 600000, "N",
     "PostgreSQL: each node's lease, renewed every third of it (docs/cluster.md)",
     "the longest a revoke waits for a node that died, and the longest a node cut off "
     "from the database answers from its cache: 2 s, against 30-60 s that peers accept",
     0},
    {"cluster-drift-ppm", CONFIG_UINT, CFG(cluster_drift_ppm), "1000", 1, 100000, "N",
     "PostgreSQL: the bound on clock rate drift between nodes, parts per million; a lease "
     "ends 2 x drift x lease early",
     "0.1%: NTP keeps clocks within 500 ppm of true (RFC 5905), so two within 1000 of each "
     "other",
     0},
    {"cluster-allowance-ms", CONFIG_UINT, CFG(cluster_allowance_ms), "25", 1, 10000, "N",
     "PostgreSQL: a lease also ends this much early (timer slack, scheduling)",
     "a loop iteration and a timer's slack on a busy 2-core machine, several times over", 0},
    {"from", CONFIG_STRING, CFG(copy_from), "", 0, 0, "URL", "patd copy-store: the store to copy",
     "no default: say which", 0},
    {"to", CONFIG_STRING, CFG(copy_to), "", 0, 0, "URL",
     "patd copy-store: the empty store to copy into", "no default: say which", 0},
    {"platform-key-file", CONFIG_STRING, CFG(platform_key_file), "", 0, 0, "PATH",
     "platform key(s), one a line (SIGHUP reloads)",
     "<data-dir>/platform.key, made 0600 with a fresh random key if missing", 0},
    {"workers", CONFIG_UINT, CFG(workers), "16", 1, 256, "N", "worker threads",
     "storage reads and synced writes wait on the disk; 16 keep 2 cores busy", 0},
    {"max-frame-bytes", CONFIG_UINT, CFG(max_frame_bytes), "65536", 1024, 16u << 20, "N",
     "largest request frame", "the largest valid request is a few KiB", 0},
    {"max-connections", CONFIG_UINT, CFG(max_connections), "1024", 1, 1000000, "N",
     "open connections", "the usual descriptor soft limit", 0},
    {"max-inflight", CONFIG_UINT, CFG(max_inflight), "128", 1, 65536, "N",
     "requests in flight per connection", "8 times patbench's deepest pipeline", 0},
    {"max-queue", CONFIG_UINT, CFG(max_queue), "4096", 1, 1000000, "N",
     "requests queued for workers, whole server", "a second of cold reads at full speed", 0},
    {"idle-timeout", CONFIG_DURATION, CFG(idle_timeout_ms), "60", 1, UINT32_MAX, "T",
     "close silent or stalled connections after T", "above a gateway's keepalive (nginx: 60 s)", 0},
    {"http-port-file", CONFIG_STRING, CFG(http_port_file), "", 0, 0, "PATH",
     "write the HTTP port here once listening", "tests and scripts that use port 0", 0},
    {"trusted-proxies", CONFIG_STRING, CFG(trusted_proxies), "127.0.0.0/8,::1/128", 0, 0,
     "CIDR,...", "peers whose X-Forwarded-For / X-Real-IP are believed", "a gateway on this host",
     0},
    {"http-max-header-bytes", CONFIG_UINT, CFG(http_max_header_bytes), "16384", 1024, 1u << 20, "N",
     "request line and headers",
     "a bearer token and a gateway's headers take 1-2 KiB; nginx allows 32k", 0},
    {"http-max-headers", CONFIG_UINT, CFG(http_max_headers), "100", 8, 256, "N", "header fields",
     "Node.js's bound", 0},
    {"http-max-body-bytes", CONFIG_UINT, CFG(http_max_body_bytes), "65536", 0, 16u << 20, "N",
     "request body", "no route reads a larger one", 0},
    {"revoke-reports-per-minute", CONFIG_UINT, CFG(revoke_per_minute), "10", 1, 100000, "N",
     "POST /api/credentials/revoke: leak reports per client address and minute",
     "a secret scanner reports in batches of up to 1000; a flood of lookups is not a report", 0},
    {"ui-auth-header", CONFIG_STRING, CFG(ui_auth_header), "", 0, 0, "NAME",
     "the Access Tokens page: a request from a trusted proxy with this header acts as the "
     "user it names (ignored from other peers; '': off)",
     "off: only a platform's login in front may vouch for a user", 0},
    {"ui-link-ttl", CONFIG_DURATION, CFG(ui_link_ttl_ms), "600", 10000, 86400000, "T",
     "how long a login link (patctl ui-link) can be opened, once",
     "ten minutes: time to open a link sent in a chat, short for one left in a log", 0},
    {"ui-session-ttl", CONFIG_DURATION, CFG(ui_session_ttl_ms), "43200", 60000, 2592000000u, "T",
     "a page session's lifetime", "a working day; deactivation ends it at once", 0},
    {"ui-frame-ancestors", CONFIG_STRING, CFG(ui_frame_ancestors), "'none'", 0, 0, "SOURCES",
     "the page's CSP frame-ancestors (who may embed it)", "nobody: no clickjacking", 0},
    {"http-header-timeout", CONFIG_DURATION, CFG(http_header_timeout_ms), "10", 1, UINT32_MAX, "T",
     "a request must arrive whole within T",
     "what a slowloris can hold a connection for; gateways send at once", 0},
    {"http-access-log", CONFIG_ONOFF, CFG(http_access_log), "on", 0, 1, "on|off",
     "one info line per HTTP request (never a token or header value)",
     "who called what is the first question after an incident", 0},
    {"deleted-activity-retention", CONFIG_UINT, CFG(retention_days), "90", 1, 3650, "D",
     "days a deleted token's history stays readable by its owner",
     "a quarter to ask why a token went, as long as GitHub keeps its security log", 0},
    {"max-unread-mb", CONFIG_UINT, CFG(max_unread_mb), "64", 1, 65536, "N",
     "answers not yet read by their clients, whole server",
     "400 pages of 500 tokens; 1024 connections at the 16 MiB each may hold would be 16 GiB", 0},
    {"drain-grace-ms", CONFIG_UINT, CFG(drain_grace_ms), "2000", 0, 60000, "N",
     "on SIGTERM, keep serving but report not ready for N ms before refusing",
     "two 1 s health checks of a load balancer", 0},
    {"scim-prefix", CONFIG_LIST, CFG(scim_prefixes), "/scim/v2,/api/scim/v2", 0, 0, "P",
     "SCIM path prefix; repeat for more", "where the platform serves SCIM", 0},
    {"cache-mb", CONFIG_UINT, CFG(cache_mb), "256", 1, 65536, "N",
     "the store's own read cache (RocksDB: its block cache)",
     "holds the index of a million tokens with room to spare", 0},
    {"cache-entries", CONFIG_UINT, CFG(cache_entries), "100000", 0, 100000000, "N",
     "verification cache: tokens kept in memory (0: off)",
     "150-180 bytes each as make bench measures: 16 MiB", 0},
    {"port-file", CONFIG_STRING, CFG(port_file), "", 0, 0, "PATH",
     "write the framed port here once listening", "tests and scripts that use port 0", 0},
    {"log-level", CONFIG_LEVEL, CFG(log_level), "info", 0, 0, "L", "debug, info, warn, error",
     "every change and refusal, no per-request noise", 0},
};

#define CONFIG_N (sizeof(config_table) / sizeof(config_table[0]))

static int config_uint(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || s[0] == '+' || s[0] == ' ') return -1;
    *out = v;
    return 0;
}

static int config_duration(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-' || s[0] == '+') return -1;
    if (strcmp(end, "ms") == 0)
        *ms = v;
    else if ((*end == '\0' || strcmp(end, "s") == 0) && v <= UINT64_MAX / 1000)
        *ms = v * 1000;
    else
        return -1;
    return 0;
}

/* HOST:PORT or [V6]:PORT. */
static int config_addr(const char *s, config_addr_t *a)
{
    const char *colon = strrchr(s, ':');
    size_t hl = colon ? (size_t)(colon - s) : 0;
    uint64_t port;
    if (!colon || hl == 0 || hl >= CONFIG_HOST_MAX || config_uint(colon + 1, &port) || port > 65535)
        return -1;
    memcpy(a->host, s, hl);
    a->host[hl] = '\0';
    if (a->host[0] == '[' && hl > 2 && a->host[hl - 1] == ']') { /* [::1]:7700 */
        memmove(a->host, a->host + 1, hl - 2);
        a->host[hl - 2] = '\0';
    }
    a->port = (int)port;
    a->off = 0;
    return 0;
}

/* Sets one setting from text; `first`: a list's first value from the
 * command line replaces its default. Says why on stderr and returns -1 if
 * the value is not one the setting takes. */
static int config_set(config_t *cfg, const config_def_t *d, const char *v, int first)
{
    void *at = (char *)cfg + d->off;
    uint64_t n;
    switch (d->type) {
    case CONFIG_UINT:
        if (config_uint(v, &n) || n < d->min || n > d->max) {
            fprintf(stderr, "patd: --%s must be a whole number from %llu to %llu, got '%s'\n",
                    d->name, (unsigned long long)d->min, (unsigned long long)d->max, v);
            return -1;
        }
        *(uint64_t *)at = n;
        return 0;
    case CONFIG_DURATION:
        if (config_duration(v, &n) || n < d->min || n > d->max) {
            fprintf(stderr, "patd: --%s takes seconds or e.g. 500ms (at least 1 ms), got '%s'\n",
                    d->name, v);
            return -1;
        }
        *(uint64_t *)at = n;
        return 0;
    case CONFIG_ONOFF:
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
            fprintf(stderr, "patd: --%s is on or off, got '%s'\n", d->name, v);
            return -1;
        }
        *(uint64_t *)at = strcmp(v, "on") == 0;
        return 0;
    case CONFIG_STRING:
        *(const char **)at = v;
        return 0;
    case CONFIG_ADDR: {
        config_addr_t *a = at;
        if (d->off_ok && v[0] == '\0') {
            a->off = 1;
            return 0;
        }
        /* The scheme that asks for TLS is the one the argument's name
         * shows, "[tls://]HOST:PORT"; "http://" is clear text, as bare. */
        a->tls = 0;
        const char *close = d->arg[0] == '[' ? strchr(d->arg, ']') : NULL;
        size_t sl = close ? (size_t)(close - d->arg - 1) : 0;
        if (sl && strncmp(v, d->arg + 1, sl) == 0) {
            a->tls = 1;
            v += sl;
        } else if (strncmp(v, "http://", 7) == 0 && strncmp(d->arg + 1, "https://", 8) == 0) {
            v += 7;
        }
        if (config_addr(v, a) != 0) {
            fprintf(stderr, "patd: --%s takes %s, e.g. %s, got '%s'\n", d->name, d->arg, d->def, v);
            return -1;
        }
        return 0;
    }
    case CONFIG_LIST: {
        config_list_t *l = at;
        if (first) l->n = 0;
        if (v[0] != '/' || l->n == CONFIG_LIST_MAX) {
            fprintf(stderr, "patd: --%s must start with / (at most %d of them)\n", d->name,
                    CONFIG_LIST_MAX);
            return -1;
        }
        l->item[l->n++] = v;
        return 0;
    }
    case CONFIG_LEVEL: {
        log_level_t lv;
        if (log_parse_level(v, &lv) != 0) {
            fprintf(stderr, "patd: --%s is debug, info, warn or error, got '%s'\n", d->name, v);
            return -1;
        }
        *(const char **)at = v;
        return 0;
    }
    }
    return -1;
}

/* The defaults, set from the table as if given on the command line. */
static void config_defaults(config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < CONFIG_N; i++) {
        const config_def_t *d = &config_table[i];
        if (d->type != CONFIG_LIST) {
            if (config_set(cfg, d, d->def, 1) != 0) abort(); /* a bad row is a bug */
            continue;
        }
        config_list_t *l = (config_list_t *)((char *)cfg + d->off);
        static char defs[CONFIG_N][128]; /* the defaults' items, split once */
        snprintf(defs[i], sizeof(defs[i]), "%s", d->def);
        l->n = 0;
        for (char *p = defs[i], *c; p && *p && l->n < CONFIG_LIST_MAX; p = c) {
            c = strchr(p, ',');
            if (c) *c++ = '\0';
            l->item[l->n++] = p;
        }
    }
}

/* Writes text from column 33, wrapped before column 100. */
static void config_wrap(FILE *out, const char *text)
{
    const int indent = 33, width = 100;
    int col = indent;
    fprintf(out, "%*s", indent, "");
    for (const char *p = text; *p;) {
        size_t w = strcspn(p, " ");
        if (col > indent && col + 1 + (int)w > width) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%.*s", (int)w, p);
        col += (int)w;
        p += w;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

void config_usage(FILE *out)
{
    fprintf(out,
            "usage: patd [check | migrate | copy-store | routes] [options]\n"
            "\n"
            "A personal-access-token service: length-prefixed protobuf over TCP, and HTTP\n"
            "for gateways and the REST API. Without a subcommand it serves --store.\n"
            "  patd check       checks that the store agrees with itself, then exits (0\n"
            "                   clean, 1 problems found, 2 cannot check; --check is the same)\n"
            "  patd migrate     brings the store's schema up to date, then exits\n"
            "  patd copy-store --from URL --to URL\n"
            "                   copies users, tokens, last-used times and activity into an\n"
            "                   empty store (patd stopped), then checks both\n"
            "  patd routes      prints the REST API's routes and their methods\n"
            "\n");
    for (size_t i = 0; i < CONFIG_N; i++) {
        const config_def_t *d = &config_table[i];
        char flag[64], text[512];
        snprintf(flag, sizeof(flag), "--%s %s", d->name, d->arg);
        fprintf(out, "  %-30s %s\n", flag, d->help);
        if (d->type == CONFIG_UINT)
            snprintf(text, sizeof(text), "(default %s; %llu..%llu): %s", d->def,
                     (unsigned long long)d->min, (unsigned long long)d->max, d->why);
        else
            snprintf(text, sizeof(text), "(default %s%s): %s", d->def[0] ? d->def : "''",
                     d->type == CONFIG_DURATION ? " s" : "", d->why);
        config_wrap(out, text);
    }
    fprintf(out, "  %-30s %s\n", "--check", "the same as `patd check`");
    fprintf(out, "  %-30s\n", "--version, -h, --help");
}

int config_parse(config_t *cfg, int argc, char **argv)
{
    enum { O_CHECK = 1000, O_VERSION, O_HELP };
    struct option opts[CONFIG_N + 4];
    for (size_t i = 0; i < CONFIG_N; i++)
        opts[i] = (struct option){config_table[i].name, required_argument, 0, (int)i};
    opts[CONFIG_N] = (struct option){"check", no_argument, 0, O_CHECK};
    opts[CONFIG_N + 1] = (struct option){"version", no_argument, 0, O_VERSION};
    opts[CONFIG_N + 2] = (struct option){"help", no_argument, 0, O_HELP};
    opts[CONFIG_N + 3] = (struct option){0, 0, 0, 0};
    config_defaults(cfg);
    int given[CONFIG_N] = {0};
    static const struct {
        const char *name;
        config_mode_t mode;
    } subcommands[] = {{"check", CONFIG_CHECK},
                       {"routes", CONFIG_ROUTES},
                       {"migrate", CONFIG_MIGRATE},
                       {"copy-store", CONFIG_COPY_STORE}};
    for (size_t i = 0; argc > 1 && i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        if (strcmp(argv[1], subcommands[i].name) != 0) continue;
        cfg->mode = subcommands[i].mode;
        argv[1] = argv[0];
        argv++;
        argc--;
        break;
    }
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o >= 0 && (size_t)o < CONFIG_N) {
            if (config_set(cfg, &config_table[o], optarg, !given[o]++) != 0) return -1;
        } else if (o == O_CHECK) {
            cfg->mode = CONFIG_CHECK;
        } else if (o == O_VERSION) {
            printf("patd %s\n", PATD_VERSION);
            return 1;
        } else if (o == O_HELP || o == 'h') {
            config_usage(stdout);
            return 1;
        } else {
            fprintf(stderr, "patd: see patd --help for the options\n");
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "patd: unexpected argument '%s' (see patd --help)\n", argv[optind]);
        return -1;
    }
    return 0;
}
