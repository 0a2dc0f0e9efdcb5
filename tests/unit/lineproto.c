/* lineproto: the toy line protocol of the connection tests. */
#include "lineproto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "dispatch.h"
#include "pat/v1/pat.pb-c.h"

/* An answer waiting for its turn: answers leave in request order. */
typedef struct lp_answer {
    struct lp_answer *next;
    int ready;
    char text[64];
} lp_answer_t;

typedef struct {
    conn_t *conn;
    lineproto_cfg_t *cfg;
    char line[LINEPROTO_MAX];
    size_t have;
    lp_answer_t *head, *tail;
} lp_conn_t;

typedef struct {
    conn_work_t work;
    lp_answer_t *answer;
    lineproto_cfg_t *cfg;
    int health;
    char token[32]; /* URGENT's */
} lp_work_t;

/* Sends every finished answer at the head of the queue. */
static void lp_flush(lp_conn_t *lc)
{
    while (lc->head && lc->head->ready) {
        lp_answer_t *a = lc->head;
        lc->head = a->next;
        if (lc->head == NULL) lc->tail = NULL;
        size_t n = strlen(a->text);
        a->text[n] = '\n';
        conn_send(lc->conn, (const uint8_t *)a->text, n + 1, 1);
        free(a);
    }
}

static lp_answer_t *lp_enqueue(lp_conn_t *lc)
{
    lp_answer_t *a = calloc(1, sizeof(*a));
    if (a == NULL) abort();
    if (lc->tail)
        lc->tail->next = a;
    else
        lc->head = a;
    lc->tail = a;
    return a;
}

static void lp_emit_health(void *arg, const ProtobufCMessage *answer)
{
    const Pat__V1__HealthResponse *h = (const Pat__V1__HealthResponse *)answer;
    lp_answer_t *a = arg;
    snprintf(a->text, sizeof(a->text), "%s",
             h->status == PAT__V1__SERVING_STATUS__SERVING_STATUS_SERVING ? "SERVING"
                                                                          : "NOT SERVING");
}

static void lp_work_run(conn_work_t *w)
{
    lp_work_t *lw = (lp_work_t *)w;
    if (lw->token[0]) {
        snprintf(lw->answer->text, sizeof(lw->answer->text), "RAN %s", lw->token);
        return;
    }
    if (!lw->health) {
        lw->cfg->slow();
        snprintf(lw->answer->text, sizeof(lw->answer->text), "SLEPT");
        return;
    }
    disp_method_t m;
    disp_outcome_t o;
    Pat__V1__HealthRequest in = PAT__V1__HEALTH_REQUEST__INIT;
    disp_meta_t meta = {0};
    if (disp_find(lw->cfg->svc, "pat.v1.TokenService/Health", &m) != 0) abort();
    disp_call(lw->cfg->svc, &m, &meta, &in.base, lp_emit_health, lw->answer, &o);
    if (o.err != PAT_E_OK) snprintf(lw->answer->text, sizeof(lw->answer->text), "ERR health");
}

static void lp_work_done(conn_work_t *w, int alive)
{
    lp_work_t *lw = (lp_work_t *)w;
    lw->answer->ready = 1;
    if (!alive) atomic_fetch_add(&lw->cfg->dropped, 1);
    /* Sent even when the connection closed: conn_send then only counts
     * the request as answered. */
    lp_flush(conn_protocol_state(w->conn));
    free(lw);
}

/* One line; returns 1 when the connection is full. */
static int lp_line(lp_conn_t *lc, const char *line)
{
    int full = conn_begin_request(lc->conn);
    lp_answer_t *a = lp_enqueue(lc);
    if (strncmp(line, "ECHO ", 5) == 0) {
        snprintf(a->text, sizeof(a->text), "%s", line + 5);
        a->ready = 1;
    } else if (strcmp(line, "HEALTH") == 0 || strcmp(line, "SLOW") == 0 ||
               strncmp(line, "URGENT ", 7) == 0) {
        lp_work_t *w = calloc(1, sizeof(*w));
        if (w == NULL) abort();
        w->answer = a;
        w->cfg = lc->cfg;
        w->health = line[0] == 'H';
        if (line[0] == 'U') {
            snprintf(w->token, sizeof(w->token), "%s", line + 7);
            w->work.urgent = 1;
            w->work.token = w->token;
        }
        w->work.run = lp_work_run;
        w->work.done = lp_work_done;
        if (conn_submit(lc->conn, &w->work) != 0) {
            free(w);
            snprintf(a->text, sizeof(a->text), "ERR overloaded");
            a->ready = 1;
        }
    } else {
        snprintf(a->text, sizeof(a->text), "ERR unknown command");
        a->ready = 1;
    }
    lp_flush(lc);
    return full;
}

static size_t lp_feed(void *state, const uint8_t *data, size_t len)
{
    lp_conn_t *lc = state;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            if (lc->have == LINEPROTO_MAX - 1) {
                conn_begin_request(lc->conn);
                lp_answer_t *a = lp_enqueue(lc);
                snprintf(a->text, sizeof(a->text), "ERR line too long");
                a->ready = 1;
                lp_flush(lc);
                conn_fail(lc->conn);
                return len;
            }
            lc->line[lc->have++] = (char)data[i];
            continue;
        }
        lc->line[lc->have] = '\0';
        lc->have = 0;
        if (lp_line(lc, lc->line)) return i + 1;
    }
    return len;
}

static void *lp_open(conn_t *c, const void *cfg)
{
    lp_conn_t *lc = calloc(1, sizeof(*lc));
    if (lc == NULL) abort();
    lc->conn = c;
    lc->cfg = (lineproto_cfg_t *)cfg;
    return lc;
}

static void lp_refuse(void *state, pat_err_t why, const char *message)
{
    lp_conn_t *lc = state;
    conn_begin_request(lc->conn);
    lp_answer_t *a = lp_enqueue(lc);
    snprintf(a->text, sizeof(a->text), "ERR %s: %s", pat_err_reason(why), message);
    a->ready = 1;
    lp_flush(lc);
}

static void lp_close(void *state)
{
    lp_conn_t *lc = state;
    while (lc->head) {
        lp_answer_t *next = lc->head->next;
        free(lc->head);
        lc->head = next;
    }
    free(lc);
}

const protocol_ops_t lineproto_protocol = {
    .name = "line",
    .open = lp_open,
    .feed = lp_feed,
    .refuse = lp_refuse,
    .close = lp_close,
    .idle_note = NULL,
    .expired = NULL,
};
