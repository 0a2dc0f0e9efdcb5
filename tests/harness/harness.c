/* harness: spawn, stop and talk to a real patd for integration tests. */
#define _GNU_SOURCE
#include "harness.h"

#include "pat/v1/testing.pb-c.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void h_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int h_spawn(patd_t *p)
{
    const char *bin = getenv(p->testclock ? "PATD_TESTCLOCK_BIN" : "PATD_BIN");
    if (bin == NULL) {
        fprintf(stderr, "harness: PATD_BIN / PATD_TESTCLOCK_BIN not set\n");
        return -1;
    }
    char port_file[300], http_port_file[300];
    snprintf(port_file, sizeof(port_file), "%s/port", p->dir);
    snprintf(http_port_file, sizeof(http_port_file), "%s/http-port", p->dir);
    unlink(port_file);
    unlink(http_port_file);
    const char *argv[40];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--data-dir";
    argv[n++] = p->dir;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--workers";
    argv[n++] = "4";
    argv[n++] = "--http-listen"; /* tests run side by side: never the default port */
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--http-port-file";
    argv[n++] = http_port_file;
    /* Tests stop patd often: no grace before the drain unless extra (which
     * comes later, and so wins) asks for one. */
    argv[n++] = "--drain-grace-ms";
    argv[n++] = "0";
    if (p->store[0]) {
        argv[n++] = "--store";
        argv[n++] = p->store;
    }
    for (int i = 0; p->extra[i] && n < 38; i++)
        argv[n++] = p->extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* If the test dies (a failed assertion, a timeout), patd goes too. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) dup2(fd, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int port = 0;
            int ok = fscanf(f, "%d", &port) == 1;
            fclose(f);
            FILE *hf = ok && port > 0 ? fopen(http_port_file, "r") : NULL;
            int http_port = 0;
            if (hf) {
                if (fscanf(hf, "%d", &http_port) != 1) http_port = 0;
                fclose(hf);
            }
            if (ok && port > 0 && http_port > 0) {
                p->port = port;
                p->http_port = http_port;
                snprintf(p->server, sizeof(p->server), "127.0.0.1:%d", port);
                return 0;
            }
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            p->pid = 0;
            fprintf(stderr, "harness: patd exited at start (see %s)\n", p->log_path);
            return -1;
        }
        h_sleep_ms(10);
    }
    fprintf(stderr, "harness: patd did not start within 10 s\n");
    return -1;
}

const char *h_backend(void)
{
    return getenv("PATD_TEST_PG_DIR") ? "postgresql" : "rocksdb";
}

/* A fresh database for this patd, named after its data directory. */
static int h_make_db(patd_t *p)
{
    const char *pg = getenv("PATD_TEST_PG_DIR");
    if (pg == NULL) return 0;
    const char *base = strrchr(p->dir, '/') + 1;
    snprintf(p->db, sizeof(p->db), "%s", base);
    for (char *c = p->db; *c; c++)
        *c = *c == '-' ? '_' : (char)tolower((unsigned char)*c);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "createdb -h '%s' -U postgres '%s'", pg, p->db);
    if (system(cmd) != 0) {
        fprintf(stderr, "harness: %s failed\n", cmd);
        return -1;
    }
    snprintf(p->store, sizeof(p->store), "postgresql:///%s?host=%s&user=postgres", p->db, pg);
    return 0;
}

int h_sql(const patd_t *p, const char *sql, char *out, size_t cap)
{
    const char *pg = getenv("PATD_TEST_PG_DIR");
    if (pg == NULL || !p->db[0]) return -1;
    char path[320];
    snprintf(path, sizeof(path), "%s/sql.txt", p->dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) return -1;
    fputs(sql, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "psql -X -q -v ON_ERROR_STOP=1 -A -t -h '%s' -U postgres -d '%s' -f '%s' 2>&1", pg,
             p->db, path);
    FILE *pp = popen(cmd, "r");
    if (pp == NULL) return -1;
    size_t got = out && cap ? fread(out, 1, cap - 1, pp) : 0;
    if (out && cap) out[got] = '\0';
    char sink[256];
    while (fread(sink, 1, sizeof(sink), pp) > 0) {
    }
    int st = pclose(pp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---------------------------------------------------------------- cluster mode */

static int h_cluster_size(void)
{
    const char *n = getenv("PATD_TEST_NODES");
    if (n == NULL || getenv("PATD_TEST_PG_DIR") == NULL) return 1;
    int v = atoi(n);
    return v < 1 ? 1 : v > 8 ? 8 : v;
}

/* Waits until q's Health says SERVING: a node that just joined catches up
 * first (CATCHING_UP). */
static int h_wait_serving(const patd_t *q)
{
    for (int i = 0; i < 1000; i++) {
        char err[256];
        pat_client_t *c = pat_connect(q->server, 10000, err, sizeof(err));
        Pat__V1__HealthRequest req = PAT__V1__HEALTH_REQUEST__INIT;
        Pat__V1__HealthResponse *r = NULL;
        pat_status_t st;
        int serving = c &&
                      pat_call(c, "Health", &req.base, &pat__v1__health_response__descriptor,
                               (ProtobufCMessage **)&r, &st) == 0 &&
                      r && r->status == PAT__V1__SERVING_STATUS__SERVING_STATUS_SERVING;
        if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
        if (c) pat_close(c);
        if (serving) return 0;
        h_sleep_ms(10);
    }
    fprintf(stderr, "harness: %s did not serve within 10 s (see %s)\n", q->server, q->log_path);
    return -1;
}

static int h_start_peers(patd_t *p, int n)
{
    p->peers = calloc((size_t)n, sizeof(*p->peers));
    if (p->peers == NULL) return -1;
    for (int i = 0; i < n; i++) {
        patd_t *q = &p->peers[i];
        q->testclock = p->testclock;
        snprintf(q->dir, sizeof(q->dir), "/tmp/patd-test-XXXXXX");
        if (mkdtemp(q->dir) == NULL) return -1;
        p->n_peers = i + 1;
        snprintf(q->store, sizeof(q->store), "%s", p->store);
        snprintf(q->log_path, sizeof(q->log_path), "%s/patd.log", q->dir);
        int k = 0;
        for (; p->extra[k] && k < 13; k++)
            q->extra[k] = p->extra[k];
        q->extra[k++] = "--platform-key-file"; /* one key file, given to each node */
        q->extra[k++] = p->key_file;
        if (h_spawn(q) != 0) return -1;
        q->key = strdup(p->key);
    }
    for (int i = -1; i < n; i++)
        if (h_wait_serving(i < 0 ? p : &p->peers[i]) != 0) return -1;
    return 0;
}

int h_nodes(const patd_t *p)
{
    return 1 + p->n_peers;
}

patd_t *h_node(const patd_t *p, int i)
{
    return i == 0 ? (patd_t *)p : &p->peers[i - 1];
}

patd_t *h_reader(const patd_t *p)
{
    if (p->n_peers == 0) return (patd_t *)p;
    unsigned k = atomic_fetch_add(&((patd_t *)p)->next_reader, 1);
    return &p->peers[k % (unsigned)p->n_peers];
}

/* Each client of a clustered node 0 has a twin on a reading node, with the
 * same credentials, that h_call sends the read calls to. */
enum { H_TWINS = 512 };
static struct {
    pat_client_t *c, *twin;
} h_twins[H_TWINS];
static pthread_mutex_t h_twins_mu = PTHREAD_MUTEX_INITIALIZER;

static pat_client_t *h_twin(const pat_client_t *c)
{
    pat_client_t *t = NULL;
    pthread_mutex_lock(&h_twins_mu);
    for (int i = 0; i < H_TWINS && t == NULL; i++)
        if (h_twins[i].c == c) t = h_twins[i].twin;
    pthread_mutex_unlock(&h_twins_mu);
    return t;
}

static int h_is_read(const char *method)
{
    static const char *const reads[] = {"Verify",          "ListTokens",        "GetToken",
                                        "GetCurrentToken", "ListTokenActivity", "GetUser",
                                        "ListUsers",       "ListServiceUsers"};
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
        if (strcmp(method, reads[i]) == 0) return 1;
    return 0;
}

int h_start(patd_t *p, int testclock, const char *const *extra)
{
    memset(p, 0, sizeof(*p));
    p->testclock = testclock;
    snprintf(p->dir, sizeof(p->dir), "/tmp/patd-test-XXXXXX");
    if (mkdtemp(p->dir) == NULL) return -1;
    if (h_make_db(p) != 0) return -1;
    snprintf(p->log_path, sizeof(p->log_path), "%s/patd.log", p->dir);
    for (int i = 0; extra && extra[i] && i < 15; i++)
        p->extra[i] = extra[i];
    if (h_spawn(p) != 0) return -1;
    char err[256];
    snprintf(p->key_file, sizeof(p->key_file), "%s/platform.key", p->dir);
    p->key = pat_read_secret_file(p->key_file, err, sizeof(err));
    if (p->key == NULL) return -1;
    int n = h_cluster_size();
    return n > 1 ? h_start_peers(p, n - 1) : 0;
}

int h_restart(patd_t *p)
{
    return h_spawn(p);
}

static int h_wait(patd_t *p, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 5) {
        int status;
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        h_sleep_ms(5);
    }
    return -2;
}

int h_stop(patd_t *p)
{
    if (p->pid <= 0) return -1;
    kill(p->pid, SIGTERM);
    int rc = h_wait(p, 10000);
    if (rc == -2) {
        h_kill(p);
        return -1;
    }
    return rc;
}

void h_kill(patd_t *p)
{
    if (p->pid <= 0) return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

void h_cleanup(patd_t *p)
{
    /* The peers first: the database goes with node 0. */
    for (int i = 0; i < p->n_peers; i++)
        h_cleanup(&p->peers[i]);
    free(p->peers);
    p->peers = NULL;
    p->n_peers = 0;
    if (p->pid > 0) h_stop(p);
    if (p->key) {
        explicit_bzero(p->key, strlen(p->key));
        free(p->key);
        p->key = NULL;
    }
    const char *pg = getenv("PATD_TEST_PG_DIR");
    if (pg && p->db[0] && getenv("PATD_KEEP_TEST_DIRS") == NULL) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "dropdb --force -h '%s' -U postgres '%s'", pg, p->db);
        if (system(cmd) != 0) fprintf(stderr, "harness: could not drop %s\n", p->db);
        p->db[0] = '\0';
    }
    if (getenv("PATD_KEEP_TEST_DIRS") == NULL && p->dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
        if (system(cmd) != 0) fprintf(stderr, "harness: could not remove %s\n", p->dir);
    }
}

pat_client_t *h_connect(const patd_t *p)
{
    char err[256];
    pat_client_t *c = pat_connect(p->server, 10000, err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "harness: %s\n", err);
        return NULL;
    }
    if (p->n_peers == 0) return c;
    pat_client_t *twin = pat_connect(h_reader(p)->server, 10000, err, sizeof(err));
    if (twin == NULL) fprintf(stderr, "harness: %s\n", err);
    pthread_mutex_lock(&h_twins_mu);
    int i = 0;
    while (i < H_TWINS && h_twins[i].c != NULL)
        i++;
    if (i < H_TWINS && twin) {
        h_twins[i].c = c;
        h_twins[i].twin = twin;
    } else if (twin) {
        pat_close(twin);
    }
    pthread_mutex_unlock(&h_twins_mu);
    return c;
}

void h_close(pat_client_t *c)
{
    if (c == NULL) return;
    pat_client_t *twin = NULL;
    pthread_mutex_lock(&h_twins_mu);
    for (int i = 0; i < H_TWINS; i++)
        if (h_twins[i].c == c) {
            twin = h_twins[i].twin;
            h_twins[i].c = h_twins[i].twin = NULL;
        }
    pthread_mutex_unlock(&h_twins_mu);
    if (twin) pat_close(twin);
    pat_close(c);
}

void h_set_authorization(pat_client_t *c, const char *value)
{
    pat_set_authorization(c, value);
    pat_client_t *twin = h_twin(c);
    if (twin) pat_set_authorization(twin, value);
}

pat_client_t *h_platform(const patd_t *p, const char *user_id)
{
    pat_client_t *c = h_connect(p);
    if (c == NULL) return NULL;
    pat_set_platform(c, p->key, user_id);
    pat_client_t *twin = h_twin(c);
    if (twin) pat_set_platform(twin, p->key, user_id);
    return c;
}

pat_client_t *h_bearer(const patd_t *p, const char *token)
{
    pat_client_t *c = h_connect(p);
    if (c == NULL) return NULL;
    pat_set_bearer(c, token);
    pat_client_t *twin = h_twin(c);
    if (twin) pat_set_bearer(twin, token);
    return c;
}

int h_call(pat_client_t *c, const char *method, const ProtobufCMessage *req,
           const ProtobufCMessageDescriptor *desc, void *out, pat_status_t *st)
{
    pat_status_t local;
    if (st == NULL) st = &local;
    pat_client_t *twin = h_is_read(method) ? h_twin(c) : NULL;
    if (pat_call(twin ? twin : c, method, req, desc, (ProtobufCMessage **)out, st) != 0) return -1;
    return st->code;
}

int h_user(const patd_t *p, const char *user_id, int role)
{
    pat_client_t *c = h_platform(p, NULL);
    if (c == NULL) return -1;
    Pat__V1__User u = PAT__V1__USER__INIT;
    u.user_id = (char *)user_id;
    u.user_name = (char *)user_id;
    u.role = role;
    Pat__V1__UpsertUserRequest req = PAT__V1__UPSERT_USER_REQUEST__INIT;
    req.user = &u;
    pat_status_t st;
    int rc = h_call(c, "UpsertUser", &req.base, NULL, NULL, &st);
    if (rc != 0) fprintf(stderr, "harness: UpsertUser: %s\n", st.message);
    h_close(c);
    return rc;
}

int h_set_active(const patd_t *p, const char *user_id, int active, pat_status_t *st)
{
    pat_client_t *c = h_platform(p, NULL);
    Pat__V1__DeactivateUserRequest req = PAT__V1__DEACTIVATE_USER_REQUEST__INIT;
    req.user_id = (char *)user_id;
    int rc = h_call(c, active ? "ActivateUser" : "DeactivateUser", &req.base, NULL, NULL, st);
    h_close(c);
    return rc;
}

char *h_create_with(pat_client_t *c, const char *name, int days, int scim, int kind,
                    const char *service_user_id, uint64_t *id, pat_status_t *st)
{
    Pat__V1__CreateTokenRequest req = PAT__V1__CREATE_TOKEN_REQUEST__INIT;
    req.name = (char *)name;
    if (days >= 0) {
        req.expiry_case = PAT__V1__CREATE_TOKEN_REQUEST__EXPIRY_EXPIRES_IN_DAYS;
        req.expires_in_days = days;
    }
    req.scim_endpoints_only = scim;
    req.kind = kind;
    if (service_user_id) req.service_user_id = (char *)service_user_id;
    Pat__V1__CreateTokenResponse *out = NULL;
    pat_status_t local;
    if (st == NULL) st = &local;
    if (h_call(c, "CreateToken", &req.base, &pat__v1__create_token_response__descriptor, &out,
               st) != 0)
        return NULL;
    char *secret = strdup(out->bearer_token);
    if (id) *id = out->token->id;
    protobuf_c_message_free_unpacked(&out->base, NULL);
    return secret;
}

char *h_create(const patd_t *p, const char *user_id, const char *name, int days, uint64_t *id,
               pat_status_t *st)
{
    pat_client_t *c = h_platform(p, user_id);
    char *s = h_create_with(c, name, days, 0, 0, NULL, id, st);
    h_close(c);
    return s;
}

int h_verify(const patd_t *p, const char *token, const char *path, int required_role,
             Pat__V1__VerifyResponse **out, pat_status_t *st)
{
    pat_client_t *c = h_connect(h_reader(p));
    Pat__V1__VerifyRequest req = PAT__V1__VERIFY_REQUEST__INIT;
    req.bearer_token = (char *)token;
    req.path = (char *)(path ? path : "");
    req.required_role = required_role;
    req.client_ip = "192.0.2.7";
    Pat__V1__VerifyResponse *local_out = NULL;
    int rc = h_call(c, "Verify", &req.base, &pat__v1__verify_response__descriptor, &local_out, st);
    if (out)
        *out = local_out;
    else if (local_out)
        protobuf_c_message_free_unpacked(&local_out->base, NULL);
    h_close(c);
    return rc;
}

int h_update(pat_client_t *c, uint64_t id, int revoke, Pat__V1__TokenInfo **out, pat_status_t *st)
{
    Pat__V1__UpdateTokenRequest req = PAT__V1__UPDATE_TOKEN_REQUEST__INIT;
    req.id = id;
    req.revoke = revoke;
    Pat__V1__TokenInfo *local_out = NULL;
    int rc = h_call(c, "UpdateToken", &req.base, &pat__v1__token_info__descriptor, &local_out, st);
    if (out)
        *out = local_out;
    else if (local_out)
        protobuf_c_message_free_unpacked(&local_out->base, NULL);
    return rc;
}

int h_delete(pat_client_t *c, uint64_t id, pat_status_t *st)
{
    Pat__V1__DeleteTokenRequest req = PAT__V1__DELETE_TOKEN_REQUEST__INIT;
    req.id = id;
    return h_call(c, "DeleteToken", &req.base, NULL, NULL, st);
}

Pat__V1__TokenInfo **h_list(pat_client_t *c, int kind, const char *service_user_id, size_t *n,
                            pat_status_t *st)
{
    Pat__V1__TokenInfo **all = NULL;
    size_t count = 0;
    char page[2048] = "";
    *n = 0;
    for (;;) {
        Pat__V1__ListTokensRequest req = PAT__V1__LIST_TOKENS_REQUEST__INIT;
        req.kind = kind;
        if (service_user_id) req.service_user_id = (char *)service_user_id;
        req.page_token = page;
        Pat__V1__ListTokensResponse *out = NULL;
        if (h_call(c, "ListTokens", &req.base, &pat__v1__list_tokens_response__descriptor, &out,
                   st) != 0) {
            h_list_free(all, count);
            return NULL;
        }
        all = realloc(all, (count + out->n_tokens + 1) * sizeof(*all));
        for (size_t i = 0; i < out->n_tokens; i++) {
            /* Copy each TokenInfo out of the page by re-encoding it. */
            size_t len = pat__v1__token_info__get_packed_size(out->tokens[i]);
            uint8_t *buf = malloc(len + 1);
            pat__v1__token_info__pack(out->tokens[i], buf);
            all[count++] = pat__v1__token_info__unpack(NULL, len, buf);
            free(buf);
        }
        snprintf(page, sizeof(page), "%s", out->next_page_token);
        protobuf_c_message_free_unpacked(&out->base, NULL);
        if (page[0] == '\0') break;
    }
    *n = count;
    return all ? all : calloc(1, sizeof(*all));
}

void h_list_free(Pat__V1__TokenInfo **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        protobuf_c_message_free_unpacked(&list[i]->base, NULL);
    free(list);
}

int h_create_burst(pat_client_t *c, int n, const char *prefix, int *ok, int *overloaded)
{
    *ok = *overloaded = 0;
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s%d", prefix, i);
        Pat__V1__CreateTokenRequest req = PAT__V1__CREATE_TOKEN_REQUEST__INIT;
        req.name = name;
        if (pat_send(c, (uint64_t)i + 1, "CreateToken", &req.base) != 0) return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        Pat__V1__Response *r;
        if (pat_recv(c, &r) != 0) return -1;
        if (r->status->code == 0) {
            (*ok)++;
        } else if (r->status->code == PAT__V1__CODE__RESOURCE_EXHAUSTED &&
                   strcmp(r->status->reason, "overloaded") == 0 && r->status->http_status == 503) {
            (*overloaded)++;
        } else {
            rc = -1;
        }
        pat__v1__response__free_unpacked(r, NULL);
    }
    return rc;
}

/* Calls TestingService/method with req on every node; the first failure
 * ends it. */
static int h_testing_all(const patd_t *p, const char *method, const ProtobufCMessage *req)
{
    char full[64];
    snprintf(full, sizeof(full), "pat.v1.TestingService/%s", method);
    int rc = 0;
    for (int i = 0; i < h_nodes(p) && rc == 0; i++) {
        pat_client_t *c = h_platform(h_node(p, i), NULL);
        pat_status_t st;
        rc = h_call(c, full, req, NULL, NULL, &st);
        h_close(c);
    }
    return rc;
}

int h_advance(const patd_t *p, int64_t ms)
{
    Pat__V1__AdvanceClockRequest req = PAT__V1__ADVANCE_CLOCK_REQUEST__INIT;
    req.advance_ms = ms;
    return h_testing_all(p, "AdvanceClock", &req.base);
}

int h_flush_usage(const patd_t *p)
{
    if (p->n_peers == 0) return 0; /* one node: its reads see its memory */
    Pat__V1__FlushUsageRequest req = PAT__V1__FLUSH_USAGE_REQUEST__INIT;
    return h_testing_all(p, "FlushUsage", &req.base);
}

int h_check(const patd_t *p)
{
    const char *bin = getenv("PATD_BIN");
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "'%s' --data-dir '%s' %s%s%s --check >>'%s' 2>&1", bin, p->dir,
             p->store[0] ? "--store '" : "", p->store, p->store[0] ? "'" : "", p->log_path);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int h_set_fault(const patd_t *p, int fail_writes)
{
    return h_set_faults(p, fail_writes, 0);
}

int h_set_faults(const patd_t *p, int fail_writes, int cold_reads)
{
    Pat__V1__SetFaultRequest req = PAT__V1__SET_FAULT_REQUEST__INIT;
    req.fail_writes = fail_writes;
    req.cold_reads = cold_reads;
    return h_testing_all(p, "SetFault", &req.base);
}

static int h_log_contains1(const patd_t *p, const char *needle)
{
    FILE *f = fopen(p->log_path, "r");
    if (f == NULL) return 0;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    size_t got = fread(buf, 1, (size_t)len, f);
    buf[got] = '\0';
    fclose(f);
    int found = strstr(buf, needle) != NULL;
    free(buf);
    return found;
}

int h_log_contains(const patd_t *p, const char *needle)
{
    int found = 0;
    for (int i = 0; i < h_nodes(p) && !found; i++)
        found = h_log_contains1(h_node(p, i), needle);
    return found;
}

long h_rss_kib(const patd_t *p)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    }
    if (f) fclose(f);
    return kib;
}
