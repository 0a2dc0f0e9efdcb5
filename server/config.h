/* config: patd's one table of settings (Redis's config.c is the model).
 *
 * Each tunable is one row of config.c's table: its flag, its type, its
 * default, its bounds, its help and the reason for its default. The
 * command line is parsed from the table, `patd --help` is printed from it,
 * and the values land in a config_t, which main() hands to the modules.
 * Nothing else knows a default or a bound. */
#ifndef PAT_CONFIG_H
#define PAT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#define CONFIG_HOST_MAX 256
#define CONFIG_LIST_MAX 8

typedef struct {
    char host[CONFIG_HOST_MAX];
    int port;
    int off; /* '' was given: no listener */
    int tls; /* tls:// or https:// was given */
} config_addr_t;

typedef struct {
    const char *item[CONFIG_LIST_MAX]; /* point into argv or the table */
    int n;
} config_list_t;

/* patd [subcommand]: serve, or one offline tool. */
typedef enum {
    CONFIG_RUN,
    CONFIG_CHECK,
    CONFIG_ROUTES,
    CONFIG_MIGRATE,
    CONFIG_COPY_STORE
} config_mode_t;

typedef struct {
    config_addr_t listen, http_listen;
    const char *data_dir, *store, *platform_key_file, *port_file, *http_port_file;
    const char *copy_from, *copy_to;
    const char *trusted_proxies, *log_level, *ui_auth_header, *ui_frame_ancestors;
    const char *tls_cert, *tls_key, *tls_client_ca;
    uint64_t tls_require_client_cert, platform_client_cert_required, tls_handshake_timeout_ms,
        tls_max_handshakes;
    uint64_t workers, max_frame_bytes, max_connections, max_inflight, max_queue;
    uint64_t idle_timeout_ms, http_header_timeout_ms, drain_grace_ms, ui_link_ttl_ms,
        ui_session_ttl_ms;
    uint64_t http_max_header_bytes, http_max_headers, http_max_body_bytes, http_access_log;
    uint64_t retention_days, max_unread_mb, cache_mb, cache_entries, revoke_per_minute;
    uint64_t store_connections, cluster_lease_ms, cluster_drift_ppm, cluster_allowance_ms;
    config_list_t scim_prefixes;
    config_mode_t mode;
} config_t;

/* Parses argv (defaults first, then each flag; the subcommands are check
 * (also --check), routes, migrate and copy-store). Returns 0 to go on, 1 when it has answered
 * (--help, --version: exit 0), or -1 after a one-line error on stderr
 * (exit 2). */
int config_parse(config_t *cfg, int argc, char **argv);
/* The help text, from the table. */
void config_usage(FILE *out);

#endif
