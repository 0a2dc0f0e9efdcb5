/* patctl: the command-line client for patd, for people and for scripts.
 *
 * Secrets never come from argv (visible in ps and shell history): the
 * caller's token comes from PATD_TOKEN or --token-file, the platform key
 * from --platform-key-file, a token to verify from stdin or
 * PATD_VERIFY_TOKEN. A secret-looking argument is refused, never echoed.
 *
 * Exit codes: 0 success, 1 the server said no, 2 usage error, 3 cannot
 * connect (or the connection failed). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "patclient.h"
#include "pbjson.h"

#define EXIT_NO      1
#define EXIT_USAGE   2
#define EXIT_CONNECT 3
#define MAX_ARGS     32

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *server;
    const char *addr_file;
    const char *ui_url;
    int tls;
    const char *cacert, *cert, *key; /* TLS: --cacert (PATD_CACERT), --cert, --key */
    const char *token_file;
    const char *key_file;
    const char *as;
    int json;
    int yes;
    int color;
    /* command options */
    const char *expires;
    int scim;
    const char *service_user;
    int out_set;
    const char *out;
    const char *kind;
    const char *limit;
    const char *path;
    const char *required_role;
    const char *role;
    const char *name;
    const char *email;
    const char *user_name;
    const char *pos[MAX_ARGS]; /* positional arguments after the command */
    int npos;
} opts_t;

static opts_t o;
static pat_client_t *cli;

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (cli) pat_close(cli);
    exit(code);
}

static const char *const usage_main =
    "usage: patctl [global options] COMMAND ...\n"
    "\n"
    "Manage patd personal access tokens from a terminal or a script.\n"
    "\n"
    "commands:\n"
    "  health                                   is the server up?\n"
    "  tokens create NAME [--expires 30d|60d|90d|1y|never|<N>d] [--scim]\n"
    "                [--service-user ID] [--out[=FILE]]\n"
    "  tokens list [--kind personal|service] [--service-user ID]\n"
    "  tokens revoke|restore ID|NAME\n"
    "  tokens delete ID|NAME [--yes]\n"
    "  tokens activity ID|NAME [--limit N]\n"
    "  verify [--path P] [--required-role member|manager|admin]   token on stdin\n"
    "  users upsert|get|list|deactivate|activate ...                platform key\n"
    "  service-users create|list|delete ...                          admin\n"
    "  ui-link --as USER_ID      a one-time login link to the Access Tokens page (platform key)\n"
    "\n"
    "global options:\n"
    "  --server HOST:PORT       default $PATD_SERVER, else 127.0.0.1:7700\n"
    "  --addr-file FILE         the server patd's address file names (<data-dir>/patd.addr):\n"
    "                           the port it really listens on (a container's healthcheck)\n"
    "  --token-file FILE        your token, read from a file (or set PATD_TOKEN)\n"
    "  --platform-key-file FILE the platform key (the platform's backend)\n"
    "  --as USER_ID             with the platform key: act as this user\n"
    "  --tls                    TLS to patd's --listen tls://... (also: --server tls://HOST:PORT)\n"
    "  --cacert FILE            the CA that signs patd's certificate (or set PATD_CACERT);\n"
    "                           default: the system's CAs. Implies --tls\n"
    "  --cert FILE, --key FILE  a client certificate for mutual TLS\n"
    "  --json                   machine-readable output: the proto's field names, enums\n"
    "                           as short lowercase words (\"active\", \"admin\")\n"
    "  --version, --help        (also: patctl COMMAND --help)\n"
    "\n"
    "Secrets are never taken from the command line, where ps and your shell\n"
    "history would show them. Colours follow the terminal and NO_COLOR.\n"
    "\n"
    "exit codes: 0 success, 1 the server said no, 2 usage error, 3 cannot connect\n"
    "\n"
    "examples:\n"
    "  export PATD_TOKEN=\"$(cat ~/.patd-token)\"\n"
    "  patctl tokens create ci --expires 90d --out\n"
    "  patctl tokens list --json | jq '.tokens[] | select(.status == \"expired\") | .id'\n"
    "  patctl tokens revoke ci && patctl tokens delete ci --yes\n"
    "  patctl verify --path /api/v1/projects < ci-token.txt\n";

static const char *const usage_health =
    "usage: patctl health [--json]\n"
    "\n"
    "Asks patd whether it serves: its version, uptime, connections and cache.\n"
    "Needs no credential. Exit 0 when patd answered, 3 when it cannot be reached.\n"
    "\n"
    "example:\n"
    "  patctl --server 10.0.0.5:7700 health --json\n";

static const char *const usage_tokens =
    "usage: patctl tokens create NAME [--expires 30d|60d|90d|1y|never|<N>d] [--scim]\n"
    "                            [--service-user ID] [--out[=FILE]]\n"
    "       patctl tokens list [--kind personal|service] [--service-user ID] [--json]\n"
    "       patctl tokens revoke ID|NAME      stop a token now (it can be restored)\n"
    "       patctl tokens restore ID|NAME     make a revoked token work again\n"
    "       patctl tokens delete ID|NAME [--yes]  remove a revoked or expired token for good\n"
    "       patctl tokens activity ID|NAME [--limit N] [--json]\n"
    "\n"
    "create prints the token once: it can never be shown again. --out writes it\n"
    "to FILE instead (default NAME-token.txt), mode 0600, and never overwrites.\n"
    "--expires defaults to 30d. --scim and --service-user need the admin role.\n"
    "\n"
    "examples:\n"
    "  patctl tokens create laptop --expires 1y\n"
    "  patctl tokens create deploy --service-user svc_0123abcd --out=deploy.token\n"
    "  patctl tokens revoke laptop\n";

static const char *const usage_verify =
    "usage: patctl verify [--path P] [--required-role member|manager|admin] [--json]\n"
    "\n"
    "Checks the token read from stdin (or PATD_VERIFY_TOKEN) as the API gateway\n"
    "would, and says whose it is or why it is refused. Exit 0 valid, 1 refused.\n"
    "\n"
    "example:\n"
    "  patctl verify --path /scim/v2/Users < okta-token.txt\n";

static const char *const usage_users =
    "usage: patctl users upsert USER_ID [--user-name U] [--name N] [--email E]\n"
    "                                   [--role member|manager|admin]\n"
    "       patctl users get USER_ID\n"
    "       patctl users list\n"
    "       patctl users deactivate USER_ID   every token of the user stops at once\n"
    "       patctl users activate USER_ID\n"
    "\n"
    "Needs --platform-key-file (the platform principal).\n"
    "\n"
    "example:\n"
    "  patctl --platform-key-file data/platform.key users upsert 'auth0|alice' --role admin\n";

static const char *const usage_service_users =
    "usage: patctl service-users create USER_NAME [--role member|manager|admin]\n"
    "                                             [--name N] [--email E]\n"
    "       patctl service-users list\n"
    "       patctl service-users delete USER_ID [--yes]\n"
    "\n"
    "Needs the admin role. A service user with active tokens cannot be deleted.\n"
    "\n"
    "example:\n"
    "  patctl service-users create deploy-bot --role manager\n";

static const char usage_ui_link[] =
    "usage: patctl ui-link --platform-key-file FILE --as USER_ID [--ui-url URL] [--json]\n"
    "\n"
    "Prints a link that signs USER_ID in to the Access Tokens page (docs/ui.md). It works\n"
    "once, for --ui-link-ttl (default 10 minutes); send it to the user, who opens it.\n"
    "The page's address is --ui-url, else $PATD_UI_URL, else the http line of\n"
    "--addr-file, else http://127.0.0.1:7780.\n"
    "\n"
    "example:\n"
    "  patctl --platform-key-file data/platform.key ui-link --as alice\n";

static void usage_exit(const char *text, int code)
{
    fputs(text, code ? stderr : stdout);
    exit(code);
}

static const char *const commands[] = {"health",        "tokens",  "verify", "users",
                                       "service-users", "ui-link", "help",   NULL};
static const char *const tokens_subs[] = {"create", "list",     "revoke", "restore",
                                          "delete", "activity", NULL};
static const char *const users_subs[] = {"upsert", "get", "list", "deactivate", "activate", NULL};
static const char *const service_users_subs[] = {"create", "list", "delete", NULL};

/* Where a usage error points: the help of the command being run. */
static const char *help_cmd = "patctl --help";

/* A usage error: one line, then exit 2. The full help is one --help away;
 * printing 20-30 lines of it under every typo buried the error. */
static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see %s)\n", help_cmd);
    exit(EXIT_USAGE);
}

/* Edit distance of two short words, for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 31 || lb > 31) return 99;
    size_t d[32][32];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* The closest of words (NULL-terminated) to w, if it is close: a prefix,
 * or at most two edits away. */
static const char *near_match(const char *w, const char *const *words)
{
    const char *best = NULL;
    size_t bd = 3;
    for (int i = 0; words[i]; i++) {
        size_t d = strncmp(words[i], w, strlen(w)) == 0 && w[0] ? 1 : edit_distance(w, words[i]);
        if (d < bd) {
            bd = d;
            best = words[i];
        }
    }
    return best;
}

/* The command takes exactly n positional arguments, described by what. */
static void want_args(int n, const char *what);

/* An unknown word among words: one line, with a near match if there is one. */
static void unknown_word(const char *what, const char *w, const char *const *words)
    __attribute__((noreturn));
static void unknown_word(const char *what, const char *w, const char *const *words)
{
    const char *m = near_match(w, words);
    if (m) usage_error("unknown %s '%s'; did you mean '%s'?", what, w, m);
    usage_error("unknown %s '%s'", what, w);
}

/* Refuses anything on argv that looks like a token: it would be visible in
 * ps and history, and must not be echoed back either. */
static void refuse_secret_arg(const char *a)
{
    if (strncmp(a, "patp_", 5) == 0 || strncmp(a, "pats_", 5) == 0 ||
        strncmp(a, "patscim_", 8) == 0)
        die(EXIT_USAGE, "an argument looks like a token; secrets on the command line show up in "
                        "ps and shell history. Pass it on stdin, in PATD_TOKEN or with "
                        "--token-file");
}

static int parse_args(int argc, char **argv, int start, const char *usage_text)
{
    for (int i = start; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        char flag[64];
        const char *val = NULL;
        if (strncmp(a, "--", 2) == 0 && eq && (size_t)(eq - a) < sizeof(flag)) {
            memcpy(flag, a, (size_t)(eq - a));
            flag[eq - a] = '\0';
            val = eq + 1;
            a = flag;
        }
#define TAKE()                                                                                     \
    (val ? val                                                                                     \
         : (i + 1 < argc ? argv[++i] : (die(EXIT_USAGE, "%s needs a value", a), (char *)NULL)))
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            usage_exit(usage_text, 0);
        else if (strcmp(a, "--json") == 0)
            o.json = 1;
        else if (strcmp(a, "--yes") == 0 || strcmp(a, "-y") == 0)
            o.yes = 1;
        else if (strcmp(a, "--scim") == 0)
            o.scim = 1;
        else if (strcmp(a, "--server") == 0)
            o.server = TAKE();
        else if (strcmp(a, "--token-file") == 0)
            o.token_file = TAKE();
        else if (strcmp(a, "--platform-key-file") == 0)
            o.key_file = TAKE();
        else if (strcmp(a, "--as") == 0)
            o.as = TAKE();
        else if (strcmp(a, "--ui-url") == 0)
            o.ui_url = TAKE();
        else if (strcmp(a, "--tls") == 0)
            o.tls = 1;
        else if (strcmp(a, "--cacert") == 0)
            o.cacert = TAKE();
        else if (strcmp(a, "--cert") == 0)
            o.cert = TAKE();
        else if (strcmp(a, "--key") == 0)
            o.key = TAKE();
        else if (strcmp(a, "--expires") == 0)
            o.expires = TAKE();
        else if (strcmp(a, "--service-user") == 0)
            o.service_user = TAKE();
        else if (strcmp(a, "--kind") == 0)
            o.kind = TAKE();
        else if (strcmp(a, "--limit") == 0)
            o.limit = TAKE();
        else if (strcmp(a, "--path") == 0)
            o.path = TAKE();
        else if (strcmp(a, "--required-role") == 0)
            o.required_role = TAKE();
        else if (strcmp(a, "--role") == 0)
            o.role = TAKE();
        else if (strcmp(a, "--name") == 0)
            o.name = TAKE();
        else if (strcmp(a, "--email") == 0)
            o.email = TAKE();
        else if (strcmp(a, "--user-name") == 0)
            o.user_name = TAKE();
        else if (strcmp(a, "--out") == 0) {
            o.out_set = 1;
            if (val)
                o.out = val;
            else if (i + 1 < argc && argv[i + 1][0] != '-' && o.npos > 0)
                o.out = argv[++i];
        } else if (strcmp(a, "--token") == 0 || strncmp(a, "--token=", 8) == 0) {
            die(EXIT_USAGE, "--token would put the secret in ps and shell history; set "
                            "PATD_TOKEN or use --token-file FILE");
        } else if (a[0] == '-' && a[1] != '\0') {
            usage_error("unknown option %s", a);
        } else {
            refuse_secret_arg(a);
            if (o.npos == MAX_ARGS) usage_error("too many arguments");
            o.pos[o.npos++] = a;
        }
#undef TAKE
    }
    return 0;
}

static void want_args(int n, const char *what)
{
    if (o.npos < n) usage_error("missing %s", what);
    if (o.npos > n) usage_error("unexpected argument '%s'", o.pos[n]);
}

/* --server must be HOST:PORT before anything connects: a bad one is a
 * usage error (2), not "is patd running?" (3). */
static void check_server(void)
{
    if (strncmp(o.server, "tls://", 6) == 0) {
        o.tls = 1;
        o.server += 6;
    }
    const char *colon = strrchr(o.server, ':');
    if (colon == NULL || colon == o.server)
        usage_error("--server is HOST:PORT, e.g. 127.0.0.1:7700, not '%s'", o.server);
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 1 || port > 65535)
        usage_error("--server port must be a number from 1 to 65535, not '%s'", colon + 1);
}

/* ---------------------------------------------------------------- output */

static const char *role_name(int r)
{
    static const char *const names[] = {"none", "member", "manager", "admin"};
    return r >= 0 && r <= 3 ? names[r] : "unknown";
}

static int parse_role(const char *s, const char *flag)
{
    if (s == NULL) return 0;
    if (strcmp(s, "member") == 0) return 1;
    if (strcmp(s, "manager") == 0) return 2;
    if (strcmp(s, "admin") == 0) return 3;
    die(EXIT_USAGE, "%s is member, manager or admin, not '%s'", flag, s);
}

static const char *status_name(int s)
{
    return s == 1 ? "Active" : s == 2 ? "Revoked" : s == 3 ? "Expired" : "Unknown";
}

/* JSON spells enum values as their name without the enum's prefix, in
 * lower case (TOKEN_STATUS_ACTIVE -> "active"), the form of the REST API;
 * an unspecified value is left out (see CHANGELOG.md). */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "in 29 days", "3 minutes ago", "never". */
static const char *relative(int64_t ms, char *buf, size_t n, int64_t now)
{
    if (ms == 0) return "never";
    int64_t d = ms - now;
    int future = d > 0;
    int64_t s = (future ? d : -d) / 1000;
    const char *unit;
    int64_t per;
    if (s < 60) {
        snprintf(buf, n, future ? "in a moment" : "just now");
        return buf;
    } else if (s < 3600 - 30) {
        per = 60;
        unit = "minute";
    } else if (s < 86400 - 1800) {
        per = 3600;
        unit = "hour";
    } else if (s < 86400 * 365 - 43200) {
        per = 86400;
        unit = "day";
    } else {
        per = 86400 * 365;
        unit = "year";
    }
    /* Nearest whole unit: a 30-day token made a second ago is "in 30 days". */
    int64_t v = (s + per / 2) / per;
    snprintf(buf, n, future ? "in %lld %s%s" : "%lld %s%s ago", (long long)v, unit,
             v == 1 ? "" : "s");
    return buf;
}

/* A time as the JSON form writes it (RFC 3339, milliseconds, UTC). */
static void rfc3339(int64_t ms, char *buf, size_t n)
{
    char t[PBJSON_TIME_LEN + 1];
    pbjson_time_text(ms, t);
    snprintf(buf, n, "%s", t);
}

/* --json: the messages in the project's one JSON form (proto/pbjson.h),
 * the same as the HTTP API's bodies, one document a line. */
static void print_json(const ProtobufCMessage *m)
{
    char *text = pbjson_dumps(m, 0);
    printf("%s\n", text);
    explicit_bzero(text, strlen(text)); /* a CreateToken answer holds the secret */
    free(text);
}

/* A json_t built around a message, printed and released. */
static void print_json_value(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL) abort();
    printf("%s\n", text);
    explicit_bzero(text, strlen(text));
    free(text);
    json_decref(v);
}

static const char *color(int status)
{
    if (!o.color) return "";
    return status == 1 ? "\033[32m" : status == 2 ? "\033[33m" : status == 3 ? "\033[31m" : "";
}

static const char *reset(void)
{
    return o.color ? "\033[0m" : "";
}

static void table_tokens(Pat__V1__TokenInfo **t, size_t n)
{
    int64_t now = now_ms();
    int wname = 4;
    for (size_t i = 0; i < n; i++) {
        int l = (int)strlen(t[i]->name);
        if (l > wname) wname = l > 40 ? 40 : l;
    }
    printf("%-6s  %-*s  %-8s  %-16s  %-16s  %-8s  %s\n", "ID", wname, "NAME", "STATUS", "EXPIRES",
           "LAST USED", "KIND", "SCIM");
    for (size_t i = 0; i < n; i++) {
        char e[40], u[40];
        printf("%-6llu  %-*.*s  %s%-8s%s  %-16s  %-16s  %-8s  %s\n", (unsigned long long)t[i]->id,
               wname, wname, t[i]->name, color(t[i]->status), status_name(t[i]->status), reset(),
               relative(t[i]->expiration, e, sizeof(e), now),
               relative(t[i]->last_used, u, sizeof(u), now),
               t[i]->kind == 2 ? "service" : "personal", t[i]->scim_endpoints_only ? "yes" : "-");
    }
    if (n == 0) printf("(no tokens)\n");
}

/* ---------------------------------------------------------------- calls */

static const char *hint(const char *reason)
{
    static const struct {
        const char *reason, *hint;
    } hints[] = {
        {"duplicate_name", "pick another name, or delete the old token once it is revoked"},
        {"token_active", "patctl tokens revoke ID, then delete it"},
        {"expired", "make a new one with patctl tokens create (an expiry is never extended)"},
        {"revoked", "patctl tokens restore ID, or make a new one"},
        {"user_deactivated", "ask an administrator to run: patctl users activate USER_ID"},
        {"missing_credential", "set PATD_TOKEN, or pass --token-file FILE"},
        {"bad_platform_key", "check the file given to --platform-key-file"},
        {"malformed_token", "copy the whole token again, prefix included"},
        {"unknown_token", "make a new one with patctl tokens create"},
        {"token_not_found", "list the ids with: patctl tokens list"},
        {"user_not_found", "list the users with: patctl users list"},
        {"admin_only", "run it with an admin's token"},
        {"platform_only", "run it with --platform-key-file"},
        {"scim_only", "use a personal token off the SCIM endpoints"},
        {"insufficient_role", "ask an administrator for the role"},
        {"has_active_tokens", "revoke its tokens first: patctl tokens list --service-user ID"},
        {"overloaded", "retry in a moment"},
        {"too_many_connections", "retry in a moment"},
        {"shutting_down", "retry in a moment"},
        {"storage_unavailable", "retry in a moment; nothing was changed"},
    };
    for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
        if (strcmp(hints[i].reason, reason) == 0) return hints[i].hint;
    return NULL;
}

/* Calls a method; on a refusal prints one line and exits 1. */
static void *call(const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *out = NULL;
    pat_status_t st;
    if (pat_call(cli, method, req, desc, &out, &st) != 0)
        die(EXIT_CONNECT, "%s; is patd running at %s?", st.message, o.server);
    if (st.code != 0) {
        const char *h = hint(st.reason);
        if (h) die(EXIT_NO, "%s (%u %s)\nhint: %s", st.message, st.http, st.reason, h);
        die(EXIT_NO, "%s (%u %s)", st.message, st.http, st.reason);
    }
    if (out == NULL && desc) die(EXIT_NO, "empty answer from the server");
    return out;
}

/* The framed listener's address from patd's address file ("framed
 * HOST:PORT", one listener a line). */
static void server_from_addr_file(void)
{
    static char addr[300];
    FILE *f = fopen(o.addr_file, "r");
    if (f == NULL)
        die(EXIT_CONNECT, "cannot read %s: %s; is patd running?", o.addr_file, strerror(errno));
    char line[320];
    addr[0] = '\0';
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "framed %299s", addr) == 1) break;
    fclose(f);
    if (addr[0] == '\0') die(EXIT_CONNECT, "%s names no framed listener", o.addr_file);
    o.server = addr;
}

static void connect_server(void)
{
    char err[256];
    if (o.addr_file) server_from_addr_file();
    if (strncmp(o.server, "tls://", 6) == 0) {
        o.tls = 1;
        o.server += 6;
    }
    if (o.cacert || o.cert) o.tls = 1;
    if (o.tls) {
        pat_tls_options_t t = {.ca_file = o.cacert, .cert_file = o.cert, .key_file = o.key};
        cli = pat_connect_tls(o.server, 10000, &t, err, sizeof(err));
    } else {
        cli = pat_connect(o.server, 10000, err, sizeof(err));
    }
    if (cli == NULL && strncmp(err, "TLS", 3) == 0)
        die(EXIT_CONNECT,
            "%s\nhint: --cacert FILE (or PATD_CACERT) names the CA that signs patd's "
            "certificate",
            err);
    if (cli == NULL) die(EXIT_CONNECT, "%s; is patd running? (--server or PATD_SERVER)", err);
}

/* Sets the caller's credential. need: 0 none, 1 a user, 2 the platform itself. */
static void credentials(int need)
{
    char err[256];
    if (need == 0) return;
    if (need == 2 || o.key_file) {
        if (o.key_file == NULL) die(EXIT_USAGE, "this needs --platform-key-file FILE");
        char *key = pat_read_secret_file(o.key_file, err, sizeof(err));
        if (key == NULL) die(EXIT_USAGE, "%s", err);
        pat_set_platform(cli, key, need == 2 ? NULL : o.as);
        explicit_bzero(key, strlen(key));
        free(key);
        if (need == 1 && o.as == NULL)
            die(EXIT_USAGE, "with --platform-key-file, say which user to act as: --as USER_ID");
        return;
    }
    const char *env = getenv("PATD_TOKEN");
    if (env && *env) {
        pat_set_bearer(cli, env);
        return;
    }
    if (o.token_file) {
        char *t = pat_read_secret_file(o.token_file, err, sizeof(err));
        if (t == NULL) die(EXIT_USAGE, "%s", err);
        pat_set_bearer(cli, t);
        explicit_bzero(t, strlen(t));
        free(t);
        return;
    }
    die(EXIT_USAGE, "no credential: set PATD_TOKEN, or use --token-file FILE "
                    "(or --platform-key-file with --as)");
}

static int parse_expires(const char *s)
{
    if (s == NULL) return 30;
    if (strcmp(s, "never") == 0) return -1;
    if (strcmp(s, "1y") == 0) return 365;
    char *end;
    long v = strtol(s, &end, 10);
    if (end != s && strcmp(end, "d") == 0 && v >= 1 && v <= 365) return (int)v;
    die(EXIT_USAGE,
        "--expires is 30d, 60d, 90d, 1y, never or <N>d with N from 1 to 365, "
        "not '%s'",
        s);
}

static int parse_kind(void)
{
    if (o.kind == NULL) return o.service_user ? 2 : 0;
    if (strcmp(o.kind, "personal") == 0) return 1;
    if (strcmp(o.kind, "service") == 0) return 2;
    die(EXIT_USAGE, "--kind is personal or service, not '%s'", o.kind);
}

/* Fetches every token of a kind (all pages); caller frees the responses. */
typedef struct {
    Pat__V1__ListTokensResponse *pages[1024];
    size_t npages;
    Pat__V1__TokenInfo **all;
    size_t n;
} token_list_t;

static void list_tokens(int kind, token_list_t *l)
{
    memset(l, 0, sizeof(*l));
    char page[2048] = "";
    do {
        Pat__V1__ListTokensRequest req = PAT__V1__LIST_TOKENS_REQUEST__INIT;
        req.kind = kind;
        req.service_user_id = (char *)(o.service_user ? o.service_user : "");
        req.page_size = 500;
        req.page_token = page;
        Pat__V1__ListTokensResponse *r =
            call("ListTokens", &req.base, &pat__v1__list_tokens_response__descriptor);
        if (l->npages == 1024) die(EXIT_NO, "too many tokens to list");
        l->pages[l->npages++] = r;
        l->all = realloc(l->all, (l->n + r->n_tokens + 1) * sizeof(*l->all));
        for (size_t i = 0; i < r->n_tokens; i++)
            l->all[l->n++] = r->tokens[i];
        snprintf(page, sizeof(page), "%s", r->next_page_token);
    } while (page[0]);
}

static void free_tokens(token_list_t *l)
{
    for (size_t i = 0; i < l->npages; i++)
        protobuf_c_message_free_unpacked(&l->pages[i]->base, NULL);
    free(l->all);
}

/* ID or NAME: a number is an id; anything else is looked up by name among
 * the caller's tokens (personal, then service for admins). */
static uint64_t resolve_token(const char *arg)
{
    char *end;
    errno = 0;
    unsigned long long id = strtoull(arg, &end, 10);
    if (*arg && *end == '\0' && errno == 0) return id;
    for (int kind = 1; kind <= 2; kind++) {
        if (kind == 2 && o.service_user == NULL) break;
        token_list_t l;
        list_tokens(kind, &l);
        for (size_t i = 0; i < l.n; i++) {
            if (strcmp(l.all[i]->name, arg) == 0) {
                uint64_t found = l.all[i]->id;
                free_tokens(&l);
                return found;
            }
        }
        free_tokens(&l);
    }
    die(EXIT_NO, "no token named '%s' (404 token_not_found); check with: patctl tokens list", arg);
}

/* ---------------------------------------------------------------- commands */

static int cmd_health(void)
{
    Pat__V1__HealthRequest req = PAT__V1__HEALTH_REQUEST__INIT;
    Pat__V1__HealthResponse *r = call("Health", &req.base, &pat__v1__health_response__descriptor);
    const char *status = r->status == 1   ? "SERVING"
                         : r->status == 2 ? "DRAINING"
                         : r->status == 3 ? "CATCHING_UP"
                                          : "UNKNOWN";
    if (o.json) {
        print_json(&r->base);
    } else {
        printf("%s  patd %s at %s, up %llds, %llu connection%s\n", status, r->version, o.server,
               (long long)(r->uptime_ms / 1000), (unsigned long long)r->connections,
               r->connections == 1 ? "" : "s");
        if (r->cache) {
            uint64_t looked = r->cache->hits + r->cache->misses;
            printf("cache: %llu of %llu tokens, %.1f%% hits, %llu evictions\n",
                   (unsigned long long)r->cache->entries, (unsigned long long)r->cache->capacity,
                   looked ? 100.0 * (double)r->cache->hits / (double)looked : 0.0,
                   (unsigned long long)r->cache->evictions);
        }
        const Pat__V1__ClusterStatus *c = r->cluster;
        if (c) {
            printf("cluster: %s, applied change %lld of %lld, lease %lld ms left of %llu, "
                   "%llu fenced change%s (%llu waited out a lease)\n",
                   c->ready       ? "ready"
                   : c->connected ? "catching up"
                                  : "not connected",
                   (long long)c->applied, (long long)c->latest, (long long)c->lease_left_ms,
                   (unsigned long long)c->lease_ms, (unsigned long long)c->fences,
                   c->fences == 1 ? "" : "s", (unsigned long long)c->fence_timeouts);
            for (size_t i = 0; i < c->n_nodes; i++) {
                const Pat__V1__ClusterNode *n = c->nodes[i];
                printf("  %-4s %s  %s  applied %lld (lag %lld), lease %s\n", n->self ? "this" : "",
                       n->node_id, n->addr[0] ? n->addr : "-", (long long)n->applied,
                       (long long)n->lag,
                       n->expired             ? "expired"
                       : n->lease_left_ms > 0 ? "held"
                                              : "run out");
            }
        }
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static int write_secret_file(const char *path, const char *secret)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    size_t len = strlen(secret);
    int ok = write(fd, secret, len) == (ssize_t)len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    return close(fd) == 0 && ok ? 0 : -1;
}

static int cmd_tokens_create(void)
{
    want_args(1, "NAME: patctl tokens create NAME");
    int days = parse_expires(o.expires);
    char out_path[1024] = "";
    if (o.out_set) {
        if (o.out)
            snprintf(out_path, sizeof(out_path), "%s", o.out);
        else
            snprintf(out_path, sizeof(out_path), "%s-token.txt", o.pos[0]);
        /* Check before creating, so a token is never made that cannot be kept. */
        if (access(out_path, F_OK) == 0)
            die(EXIT_USAGE, "%s already exists; refusing to overwrite it", out_path);
    }
    credentials(1);
    Pat__V1__CreateTokenRequest req = PAT__V1__CREATE_TOKEN_REQUEST__INIT;
    req.name = (char *)o.pos[0];
    if (days > 0) {
        req.expiry_case = PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY_EXPIRES_IN_DAYS;
        req.expires_in_days = days;
    }
    req.scim_endpoints_only = o.scim;
    if (o.service_user) {
        req.kind = PAT__V1__TOKEN_KIND__TOKEN_KIND_SERVICE;
        req.service_user_id = (char *)o.service_user;
    }
    Pat__V1__CreateTokenResponse *r =
        call("CreateToken", &req.base, &pat__v1__create_token_response__descriptor);
    int saved = 0;
    if (out_path[0]) {
        if (write_secret_file(out_path, r->bearer_token) == 0)
            saved = 1;
        else
            fprintf(stderr, "error: cannot write %s (%s); the token follows, copy it now\n",
                    out_path, strerror(errno));
    }
    if (o.json) {
        /* The CreateTokenResponse; saved to a file, the secret is not
         * printed and "file" says where it is. */
        json_t *v = pbjson_encode(&r->base);
        if (saved) {
            json_object_del(v, "bearer_token");
            json_object_set_new(v, "file", json_string(out_path));
        }
        print_json_value(v);
    } else {
        char e[40];
        fprintf(stderr, "Created token %llu '%s' (%s, expires %s).\n",
                (unsigned long long)r->token->id, r->token->name,
                r->token->kind == 2 ? "service" : "personal",
                relative(r->token->expiration, e, sizeof(e), now_ms()));
        if (saved) {
            fprintf(stderr, "The token is in %s (mode 0600). It will never be shown again.\n",
                    out_path);
        } else {
            printf("%s\n", r->bearer_token);
            fprintf(stderr, "Copy it now: it will never be shown again.\n");
        }
    }
    explicit_bzero(r->bearer_token, strlen(r->bearer_token));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static int cmd_tokens_list(void)
{
    want_args(0, "");
    credentials(1);
    token_list_t l;
    list_tokens(parse_kind(), &l);
    if (o.json) {
        /* Every page in one ListTokensResponse. */
        Pat__V1__ListTokensResponse all = PAT__V1__LIST_TOKENS_RESPONSE__INIT;
        all.tokens = l.all;
        all.n_tokens = l.n;
        all.next_page_token = (char *)"";
        print_json(&all.base);
    } else {
        table_tokens(l.all, l.n);
    }
    free_tokens(&l);
    return 0;
}

static int cmd_tokens_update(int revoke)
{
    want_args(1, "the token's ID or NAME");
    credentials(1);
    Pat__V1__UpdateTokenRequest req = PAT__V1__UPDATE_TOKEN_REQUEST__INIT;
    req.id = resolve_token(o.pos[0]);
    req.revoke = revoke;
    Pat__V1__TokenInfo *t = call("UpdateToken", &req.base, &pat__v1__token_info__descriptor);
    if (o.json) {
        print_json(&t->base);
    } else {
        printf("Token %llu '%s' is now %s%s%s.\n", (unsigned long long)t->id, t->name,
               color(t->status), status_name(t->status), reset());
        if (!revoke && t->status == 3)
            printf("It has expired, so it still does not work: create a new token.\n");
    }
    protobuf_c_message_free_unpacked(&t->base, NULL);
    return 0;
}

static int confirm(const char *what)
{
    if (o.yes) return 1;
    if (!isatty(STDIN_FILENO))
        die(EXIT_USAGE, "refusing to %s without confirmation; pass --yes in scripts", what);
    fprintf(stderr, "%s? This cannot be undone. [y/N] ", what);
    fflush(stderr);
    char line[16];
    if (fgets(line, sizeof(line), stdin) == NULL) return 0;
    return line[0] == 'y' || line[0] == 'Y';
}

static int cmd_tokens_delete(void)
{
    want_args(1, "the token's ID or NAME");
    credentials(1);
    uint64_t id = resolve_token(o.pos[0]);
    char what[128];
    snprintf(what, sizeof(what), "delete token %llu", (unsigned long long)id);
    if (!confirm(what)) {
        fprintf(stderr, "Not deleted.\n");
        return EXIT_NO;
    }
    Pat__V1__DeleteTokenRequest req = PAT__V1__DELETE_TOKEN_REQUEST__INIT;
    req.id = id;
    Pat__V1__DeleteTokenResponse *r =
        call("DeleteToken", &req.base, &pat__v1__delete_token_response__descriptor);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (o.json)
        printf("{\"deleted\":%llu}\n", (unsigned long long)id);
    else
        printf("Token %llu deleted.\n", (unsigned long long)id);
    return 0;
}

static int cmd_tokens_activity(void)
{
    want_args(1, "the token's ID or NAME");
    credentials(1);
    Pat__V1__ListTokenActivityRequest req = PAT__V1__LIST_TOKEN_ACTIVITY_REQUEST__INIT;
    req.id = resolve_token(o.pos[0]);
    if (o.limit) {
        char *end;
        long v = strtol(o.limit, &end, 10);
        if (*end || v < 1 || v > 100) die(EXIT_USAGE, "--limit is 1 to 100, not '%s'", o.limit);
        req.limit = (uint32_t)v;
    }
    Pat__V1__ListTokenActivityResponse *r =
        call("ListTokenActivity", &req.base, &pat__v1__list_token_activity_response__descriptor);
    static const char *const kinds[] = {"unspecified", "used",     "created",
                                        "revoked",     "restored", "deleted"};
    int64_t now = now_ms();
    if (o.json) {
        print_json(&r->base);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        return 0;
    }
    printf("%-24s  %-16s  %-9s  %6s  %-24s  %-40s  %s\n", "TIME", "WHEN", "EVENT", "COUNT", "FIRST",
           "PATH", "FROM / BY");
    for (size_t i = 0; i < r->n_events; i++) {
        Pat__V1__ActivityEvent *e = r->events[i];
        const char *kind = e->kind >= 1 && e->kind <= 5 ? kinds[e->kind] : NULL;
        {
            char t[40], rel[40], first[40] = "-", count[16] = "-";
            rfc3339(e->time, t, sizeof(t));
            if (e->kind == 1) {
                snprintf(count, sizeof(count), "%u", e->count);
                if (e->first_time) rfc3339(e->first_time, first, sizeof(first));
            }
            printf("%-24s  %-16s  %-9s  %6s  %-24s  %-40.40s  %s\n", t,
                   relative(e->time, rel, sizeof(rel), now), kind ? kind : "-", count, first,
                   e->path[0] ? e->path : "-",
                   (e->kind == 1 ? e->client_ip : e->actor)[0]
                       ? (e->kind == 1 ? e->client_ip : e->actor)
                       : "-");
        }
    }
    if (r->n_events == 0) printf("(no activity)\n");
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static int cmd_verify(void)
{
    want_args(0, "");
    char tok[512];
    const char *env = getenv("PATD_VERIFY_TOKEN");
    if (env && *env) {
        snprintf(tok, sizeof(tok), "%s", env);
    } else {
        if (isatty(STDIN_FILENO)) fprintf(stderr, "Paste the token, then Enter: ");
        if (fgets(tok, sizeof(tok), stdin) == NULL) tok[0] = '\0';
        tok[strcspn(tok, "\r\n")] = '\0';
    }
    if (tok[0] == '\0') usage_error("no token on stdin (or in PATD_VERIFY_TOKEN)");
    Pat__V1__VerifyRequest req = PAT__V1__VERIFY_REQUEST__INIT;
    req.bearer_token = tok;
    req.path = (char *)(o.path ? o.path : "");
    req.required_role = parse_role(o.required_role, "--required-role");
    Pat__V1__VerifyResponse *r = NULL;
    pat_status_t st;
    int rc = pat_call(cli, "Verify", &req.base, &pat__v1__verify_response__descriptor,
                      (ProtobufCMessage **)&r, &st);
    explicit_bzero(tok, sizeof(tok));
    if (rc != 0) die(EXIT_CONNECT, "%s", st.message);
    if (st.code != 0) {
        const char *h = hint(st.reason);
        if (o.json) {
            /* The refusal in the HTTP API's error shape (AIP-193). */
            print_json_value(json_pack("{s:b,s:{s:i,s:s,s:s,s:s}}", "valid", 0, "error", "code",
                                       (int)st.http, "status", pat_code_name(st.code), "reason",
                                       st.reason, "message", st.message));
        } else {
            printf("invalid: %s (%u %s)\n", st.message, st.http, st.reason);
            if (h) printf("hint: %s\n", h);
        }
        return EXIT_NO;
    }
    if (o.json) {
        /* The VerifyResponse, with "valid" first. */
        json_t *v = json_pack("{s:b}", "valid", 1), *m = pbjson_encode(&r->base);
        json_object_update(v, m);
        json_decref(m);
        print_json_value(v);
    } else {
        char e[40];
        printf("valid: %s (%s, %s), token %llu '%s', %s%s%s, expires %s\n", r->user->user_id,
               r->user->user_type == 2 ? "service user" : "user", role_name(r->user->role),
               (unsigned long long)r->token->id, r->token->name, color(r->token->status),
               status_name(r->token->status), reset(),
               relative(r->token->expiration, e, sizeof(e), now_ms()));
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static const char *or_dash(const char *s)
{
    return s && s[0] ? s : "-";
}

static void print_user(const Pat__V1__User *u)
{
    printf("%-32s  %-16s  %-20s  %-8s  %-7s  %-8s  %s\n", u->user_id, or_dash(u->user_name),
           or_dash(u->name), role_name(u->role), u->user_type == 2 ? "service" : "human",
           u->active ? "active" : "INACTIVE", or_dash(u->email));
}

static void print_users(Pat__V1__User **users, size_t n, int header)
{
    if (header)
        printf("%-32s  %-16s  %-20s  %-8s  %-7s  %-8s  %s\n", "USER_ID", "USER_NAME", "NAME",
               "ROLE", "TYPE", "STATE", "EMAIL");
    for (size_t i = 0; i < n; i++)
        print_user(users[i]);
}

static int list_users_cmd(int service)
{
    char page[1024] = "";
    json_t *all = json_array(); /* --json: every page in one ListUsersResponse */
    int first = 1;
    do {
        Pat__V1__ListUsersResponse *r;
        if (service) {
            Pat__V1__ListServiceUsersRequest req = PAT__V1__LIST_SERVICE_USERS_REQUEST__INIT;
            req.page_size = 500;
            req.page_token = page;
            r = call("ListServiceUsers", &req.base, &pat__v1__list_users_response__descriptor);
        } else {
            Pat__V1__ListUsersRequest req = PAT__V1__LIST_USERS_REQUEST__INIT;
            req.page_size = 500;
            req.page_token = page;
            r = call("ListUsers", &req.base, &pat__v1__list_users_response__descriptor);
        }
        if (o.json) {
            for (size_t i = 0; i < r->n_users; i++)
                json_array_append_new(all, pbjson_encode(&r->users[i]->base));
        } else {
            print_users(r->users, r->n_users, first);
        }
        first = 0;
        snprintf(page, sizeof(page), "%s", r->next_page_token);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    } while (page[0]);
    if (o.json)
        print_json_value(json_pack("{s:o,s:s}", "users", all, "next_page_token", ""));
    else
        json_decref(all);
    return 0;
}

static void show_user(Pat__V1__User *u, const char *verb)
{
    if (o.json) {
        print_json(&u->base);
    } else {
        if (verb) printf("%s\n", verb);
        print_users(&u, 1, 1);
    }
    protobuf_c_message_free_unpacked(&u->base, NULL);
}

/* The page's address: --ui-url, $PATD_UI_URL, the address file's http
 * line, or the default listener. */
static void ui_base(char *out, size_t cap)
{
    const char *u = o.ui_url ? o.ui_url : getenv("PATD_UI_URL");
    if (u && *u) {
        snprintf(out, cap, "%s", u);
    } else {
        char http[300] = "";
        FILE *f = o.addr_file ? fopen(o.addr_file, "r") : NULL;
        char line[320];
        while (f && fgets(line, sizeof(line), f))
            if (sscanf(line, "http %299s", http) == 1) break;
        if (f) fclose(f);
        snprintf(out, cap, "%s%s", strstr(http, "://") ? "" : "http://",
                 http[0] ? http : "127.0.0.1:7780");
    }
    size_t n = strlen(out);
    if (n && out[n - 1] == '/') out[n - 1] = '\0';
}

static int cmd_ui_link(void)
{
    want_args(0, "");
    if (o.as == NULL) usage_error("ui-link needs --as USER_ID: the user the link signs in");
    Pat__V1__CreateUiLinkRequest req = PAT__V1__CREATE_UI_LINK_REQUEST__INIT;
    req.user_id = (char *)o.as;
    o.as = NULL; /* the platform itself asks, for that user */
    credentials(2);
    Pat__V1__CreateUiLinkResponse *r =
        call("CreateUiLink", &req.base, &pat__v1__create_ui_link_response__descriptor);
    char base[512], url[1024], e[40];
    ui_base(base, sizeof(base));
    snprintf(url, sizeof(url), "%s%s", base, r->path);
    if (o.json) {
        print_json_value(json_pack("{s:s,s:s}", "url", url, "expiration",
                                   (pbjson_time_text(r->expiration, e), e)));
    } else {
        printf("%s\n", url);
        fprintf(stderr, "It signs %s in to the Access Tokens page once, and expires %s.\n",
                req.user_id, relative(r->expiration, e, sizeof(e), now_ms()));
    }
    explicit_bzero(url, sizeof(url));
    explicit_bzero(r->path, strlen(r->path));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return 0;
}

static int cmd_users(const char *sub)
{
    if (strcmp(sub, "list") == 0) {
        credentials(2);
        return list_users_cmd(0);
    }
    if (strcmp(sub, "upsert") != 0 && strcmp(sub, "get") != 0 && strcmp(sub, "deactivate") != 0 &&
        strcmp(sub, "activate") != 0)
        unknown_word("users command", sub, users_subs);
    want_args(1, "USER_ID");
    if (strcmp(sub, "upsert") == 0) {
        credentials(2);
        Pat__V1__User u = PAT__V1__USER__INIT;
        u.user_id = (char *)o.pos[0];
        u.user_name = (char *)(o.user_name ? o.user_name : "");
        u.name = (char *)(o.name ? o.name : "");
        u.email = (char *)(o.email ? o.email : "");
        u.role = parse_role(o.role, "--role");
        Pat__V1__UpsertUserRequest req = PAT__V1__UPSERT_USER_REQUEST__INIT;
        req.user = &u;
        show_user(call("UpsertUser", &req.base, &pat__v1__user__descriptor), NULL);
        return 0;
    }
    if (strcmp(sub, "get") == 0) {
        credentials(o.key_file && !o.as ? 2 : 1);
        Pat__V1__GetUserRequest req = PAT__V1__GET_USER_REQUEST__INIT;
        req.user_id = (char *)o.pos[0];
        show_user(call("GetUser", &req.base, &pat__v1__user__descriptor), NULL);
        return 0;
    }
    if (strcmp(sub, "deactivate") == 0 || strcmp(sub, "activate") == 0) {
        int deactivate = sub[0] == 'd';
        credentials(o.key_file && !o.as ? 2 : 1);
        Pat__V1__DeactivateUserRequest req = PAT__V1__DEACTIVATE_USER_REQUEST__INIT;
        req.user_id = (char *)o.pos[0];
        show_user(call(deactivate ? "DeactivateUser" : "ActivateUser", &req.base,
                       &pat__v1__user__descriptor),
                  deactivate ? "Deactivated: every token of this user stops working now."
                             : "Activated: tokens that are active and unexpired work again.");
        return 0;
    }
    unknown_word("users command", sub, users_subs);
}

static int cmd_service_users(const char *sub)
{
    if (strcmp(sub, "list") != 0 && strcmp(sub, "create") != 0 && strcmp(sub, "delete") != 0)
        unknown_word("service-users command", sub, service_users_subs);
    credentials(1);
    if (strcmp(sub, "list") == 0) return list_users_cmd(1);
    want_args(1, strcmp(sub, "create") == 0 ? "USER_NAME" : "USER_ID");
    if (strcmp(sub, "create") == 0) {
        Pat__V1__CreateServiceUserRequest req = PAT__V1__CREATE_SERVICE_USER_REQUEST__INIT;
        req.user_name = (char *)o.pos[0];
        req.name = (char *)(o.name ? o.name : "");
        req.email = (char *)(o.email ? o.email : "");
        req.role = parse_role(o.role, "--role");
        show_user(call("CreateServiceUser", &req.base, &pat__v1__user__descriptor), NULL);
        return 0;
    }
    if (strcmp(sub, "delete") == 0) {
        char what[300];
        snprintf(what, sizeof(what), "delete service user %s and its revoked tokens", o.pos[0]);
        if (!confirm(what)) {
            fprintf(stderr, "Not deleted.\n");
            return EXIT_NO;
        }
        Pat__V1__DeleteServiceUserRequest req = PAT__V1__DELETE_SERVICE_USER_REQUEST__INIT;
        req.user_id = (char *)o.pos[0];
        Pat__V1__DeleteServiceUserResponse *r = call(
            "DeleteServiceUser", &req.base, &pat__v1__delete_service_user_response__descriptor);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (o.json) {
            print_json_value(json_pack("{s:s}", "deleted", o.pos[0]));
        } else {
            printf("Service user %s deleted.\n", o.pos[0]);
        }
        return 0;
    }
    unknown_word("service-users command", sub, service_users_subs);
}

int main(int argc, char **argv)
{
    o.server = getenv("PATD_SERVER") && *getenv("PATD_SERVER") ? getenv("PATD_SERVER")
                                                               : PAT_DEFAULT_SERVER;
    o.cacert = getenv("PATD_CACERT") && *getenv("PATD_CACERT") ? getenv("PATD_CACERT") : NULL;
    /* Global options come before the command. */
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (strcmp(argv[i], "--version") == 0) {
            printf("patctl %s\n", PATD_VERSION);
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) usage_exit(usage_main, 0);
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "--tls") == 0) {
            if (argv[i][2] == 'j')
                o.json = 1;
            else
                o.tls = 1;
            i++;
            continue;
        }
        if (strcmp(argv[i], "--token") == 0 || strncmp(argv[i], "--token=", 8) == 0)
            die(EXIT_USAGE, "--token would put the secret in ps and shell history; set "
                            "PATD_TOKEN or use --token-file FILE");
        const char **slot = strcmp(argv[i], "--server") == 0              ? &o.server
                            : strcmp(argv[i], "--addr-file") == 0         ? &o.addr_file
                            : strcmp(argv[i], "--token-file") == 0        ? &o.token_file
                            : strcmp(argv[i], "--platform-key-file") == 0 ? &o.key_file
                            : strcmp(argv[i], "--as") == 0                ? &o.as
                            : strcmp(argv[i], "--cacert") == 0            ? &o.cacert
                            : strcmp(argv[i], "--cert") == 0              ? &o.cert
                            : strcmp(argv[i], "--key") == 0               ? &o.key
                                                                          : NULL;
        if (slot == NULL) usage_error("unknown option %s", argv[i]);
        if (i + 1 >= argc) usage_error("%s needs a value", argv[i]);
        *slot = argv[i + 1];
        i += 2;
    }
    if (i >= argc) usage_error("no command given");
    const char *cmd = argv[i++];
    const char *sub = NULL;
    const char *text = usage_main;
    int group = strcmp(cmd, "tokens") == 0 || strcmp(cmd, "users") == 0 ||
                strcmp(cmd, "service-users") == 0;
    if (strcmp(cmd, "tokens") == 0)
        text = usage_tokens;
    else if (strcmp(cmd, "users") == 0)
        text = usage_users;
    else if (strcmp(cmd, "service-users") == 0)
        text = usage_service_users;
    else if (strcmp(cmd, "verify") == 0)
        text = usage_verify;
    else if (strcmp(cmd, "health") == 0)
        text = usage_health;
    else if (strcmp(cmd, "ui-link") == 0)
        text = usage_ui_link;
    else if (strcmp(cmd, "help") == 0)
        usage_exit(usage_main, 0);
    else
        unknown_word("command", cmd, commands);
    static char help_buf[64];
    snprintf(help_buf, sizeof(help_buf), "patctl %s --help", cmd);
    help_cmd = help_buf;
    if (group) {
        if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0))
            usage_exit(text, 0);
        const char *const *subs = strcmp(cmd, "tokens") == 0  ? tokens_subs
                                  : strcmp(cmd, "users") == 0 ? users_subs
                                                              : service_users_subs;
        if (i >= argc)
            usage_error("%s needs a command: %s", cmd,
                        strcmp(cmd, "tokens") == 0  ? "create, list, revoke, "
                                                      "restore, delete, activity"
                        : strcmp(cmd, "users") == 0 ? "upsert, get, list, "
                                                      "deactivate, activate"
                                                    : "create, list, delete");
        sub = argv[i++];
        int known = 0;
        for (int k = 0; subs[k]; k++)
            known |= strcmp(subs[k], sub) == 0;
        if (!known) {
            char what[64];
            snprintf(what, sizeof(what), "%s command", cmd);
            unknown_word(what, sub, subs);
        }
    }
    parse_args(argc, argv, i, text);
    /* Colour only for a terminal that has it: NO_COLOR set to anything but
     * the empty string turns it off (no-color.org), and so does TERM=dumb. */
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    o.color =
        !o.json && isatty(STDOUT_FILENO) && !(nc && nc[0]) && !(term && strcmp(term, "dumb") == 0);

    check_server();
    connect_server();
    int rc = EXIT_USAGE;
    if (strcmp(cmd, "health") == 0) {
        rc = cmd_health();
    } else if (strcmp(cmd, "verify") == 0) {
        rc = cmd_verify();
    } else if (strcmp(cmd, "tokens") == 0) {
        if (strcmp(sub, "create") == 0)
            rc = cmd_tokens_create();
        else if (strcmp(sub, "list") == 0)
            rc = cmd_tokens_list();
        else if (strcmp(sub, "revoke") == 0)
            rc = cmd_tokens_update(1);
        else if (strcmp(sub, "restore") == 0)
            rc = cmd_tokens_update(0);
        else if (strcmp(sub, "delete") == 0)
            rc = cmd_tokens_delete();
        else
            rc = cmd_tokens_activity();
    } else if (strcmp(cmd, "ui-link") == 0) {
        rc = cmd_ui_link();
    } else if (strcmp(cmd, "users") == 0) {
        rc = cmd_users(sub);
    } else {
        rc = cmd_service_users(sub);
    }
    pat_close(cli);
    return rc;
}
