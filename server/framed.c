/* framed: the length-prefixed protobuf protocol over a connection. */
#include "framed.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn.h"
#include "dispatch.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "pat/v1/pat.pb-c.h"
#include "wire.h"

#define FRAMED_SPARE_ARENAS 2    /* kept per connection: one for the hot path, one spare */
#define FRAMED_SMALL_ANSWER 4096 /* always sent, budget or not: refusals, most answers */
#define FRAMED_FAST_ANSWER  4096 /* a VerifyResponse packed by hand: any fits */

typedef struct {
    conn_t *conn;
    const framed_cfg_t *cfg;
    frame_decoder_t dec;
    disp_arena_t *spare[FRAMED_SPARE_ARENAS];
    int n_spare;
    disp_method_t verify;           /* read by hand (wire_read_verify) */
    char peer_ip[INET6_ADDRSTRLEN]; /* lives as long as any request of the connection */
} framed_conn_t;

/* One decoded request; on a worker it travels whole. */
typedef struct {
    conn_work_t work; /* first: the work's address is the request's */
    svc_t *svc;
    disp_arena_t *arena;
    uint64_t id;
    const char *method;
    disp_method_t m;
    disp_meta_t meta;
    const ProtobufCMessage *in;
    uint8_t *out; /* the packed Response, malloc'd */
    size_t out_len;
    uint64_t conn_id; /* for the debug log line */
    uint64_t t0_ns;   /* when the frame was read, if debug logging is on */
} framed_req_t;

/* ---------------------------------------------------------------- encoding */

static uint8_t *framed_pack(const Pat__V1__Response *r, size_t *out_len)
{
    size_t n = pat__v1__response__get_packed_size(r);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) abort();
    pat__v1__response__pack(r, buf);
    *out_len = n;
    return buf;
}

uint8_t *framed_error(uint64_t id, pat_err_t err, const char *message, size_t *out_len)
{
    Pat__V1__Status st = PAT__V1__STATUS__INIT;
    st.code = (Pat__V1__Code)pat_err_code(err);
    st.http_status = pat_err_http(err);
    st.message = (char *)(message ? message : "");
    st.reason = (char *)pat_err_reason(err);
    Pat__V1__Response r = PAT__V1__RESPONSE__INIT;
    r.id = id;
    r.status = &st;
    return framed_pack(&r, out_len);
}

/* The emit function of a call: packs the answer into a Response. A
 * Verify's answer (no secret in it) is packed by hand (wire.h); others by
 * protobuf-c, in the arena, wiped after: they may hold a token shown once. */
static void framed_emit(void *arg, const ProtobufCMessage *answer)
{
    framed_req_t *r = arg;
    uint8_t fast[FRAMED_FAST_ANSWER];
    size_t last_used_at;
    size_t n = wire_pack_answer(answer, fast, sizeof(fast), &last_used_at);
    if (n != 0) {
        /* Kept for the token's next Verifies if this one may be (service.h). */
        svc_prepare(SVC_FORM_FRAMED, fast, n, last_used_at);
        r->out = malloc(WIRE_OK_OVERHEAD + n);
        if (r->out == NULL) abort();
        r->out_len = wire_pack_ok(r->id, fast, n, r->out);
        return;
    }
    n = protobuf_c_message_get_packed_size(answer);
    uint8_t *payload = disp_arena_alloc(r->arena, n ? n : 1);
    protobuf_c_message_pack(answer, payload);
    r->out = malloc(WIRE_OK_OVERHEAD + n);
    if (r->out == NULL) abort();
    r->out_len = wire_pack_ok(r->id, payload, n, r->out);
    explicit_bzero(payload, n);
}

/* After a call: the error Response if it did not answer; at debug level,
 * one line per request (method, outcome, latency, connection). */
static void framed_finish(framed_req_t *r, const disp_outcome_t *o)
{
    if (log_enabled(LOG_DEBUG))
        log_debug("request conn=%llu id=%llu method=%s outcome=%s latency_us=%llu",
                  (unsigned long long)r->conn_id, (unsigned long long)r->id, r->method,
                  o->err == PAT_E_OK ? "ok" : pat_err_reason(o->err),
                  (unsigned long long)((metrics_now_ns() - r->t0_ns) / 1000));
    if (o->err == PAT_E_OK && r->out) return;
    free(r->out);
    r->out =
        framed_error(r->id, o->err == PAT_E_OK ? PAT_E_INTERNAL : o->err, o->message, &r->out_len);
}

/* ---------------------------------------------------------------- decoding */

/* Reads field 1 (id, varint) of a Request without decoding the rest. */
uint64_t framed_peek_id(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint64_t key = 0;
        int shift = 0;
        while (i < len && shift < 64) {
            key |= (uint64_t)(p[i] & 0x7f) << shift;
            shift += 7;
            if (!(p[i++] & 0x80)) break;
        }
        unsigned wt = key & 7;
        uint64_t v = 0;
        shift = 0;
        if (wt == 0) {
            while (i < len && shift < 64) {
                v |= (uint64_t)(p[i] & 0x7f) << shift;
                shift += 7;
                if (!(p[i++] & 0x80)) break;
            }
            if ((key >> 3) == 1) return v;
        } else if (wt == 2) {
            while (i < len && shift < 64) {
                v |= (uint64_t)(p[i] & 0x7f) << shift;
                shift += 7;
                if (!(p[i++] & 0x80)) break;
            }
            if (v > len - i) return 0;
            i += (size_t)v;
        } else if (wt == 1) {
            i += 8;
        } else if (wt == 5) {
            i += 4;
        } else {
            return 0;
        }
    }
    return 0;
}

/* The value of metadata key (matched without regard to case), and how many
 * entries match it in *count. */
static const char *framed_metadata(const Pat__V1__Request *req, const char *key, int *count)
{
    const char *found = NULL;
    *count = 0;
    for (size_t i = 0; i < req->n_metadata; i++) {
        if (strcasecmp(req->metadata[i]->key, key) != 0) continue;
        if ((*count)++ == 0) found = req->metadata[i]->value;
    }
    return found;
}

/* Decodes a frame into r (in r->arena): envelope, method, input. Returns
 * NULL, or the packed error Response to answer instead. */
static uint8_t *framed_decode(framed_req_t *r, const uint8_t *frame, size_t len, size_t *out_len)
{
    ProtobufCAllocator *al = disp_arena_allocator(r->arena);
    char why[SVC_MESSAGE_MAX];
    if (wire_check(&pat__v1__request__descriptor, frame, len, why, sizeof(why)) != 0)
        return framed_error(framed_peek_id(frame, len), PAT_E_INVALID_FIELD, why, out_len);
    Pat__V1__Request *req = pat__v1__request__unpack(al, len, frame);
    if (req == NULL)
        return framed_error(framed_peek_id(frame, len), PAT_E_BAD_REQUEST,
                            "frame is not a pat.v1.Request", out_len);
    r->id = req->id;
    r->method = req->method;
    if (disp_find(r->svc, req->method, &r->m) != 0) {
        char msg[SVC_MESSAGE_MAX];
        snprintf(msg, sizeof(msg), "unknown method '%.*s'", (int)wire_utf8_cut(req->method, 128),
                 req->method);
        return framed_error(req->id, PAT_E_UNKNOWN_METHOD, msg, out_len);
    }
    if (wire_check(r->m.desc->input, req->payload.data, req->payload.len, why, sizeof(why)) != 0)
        return framed_error(req->id, PAT_E_INVALID_FIELD, why, out_len);
    r->in = protobuf_c_message_unpack(r->m.desc->input, al, req->payload.len, req->payload.data);
    if (r->in == NULL) {
        char msg[SVC_MESSAGE_MAX];
        snprintf(msg, sizeof(msg), "payload is not a %s", r->m.desc->input->name);
        return framed_error(req->id, PAT_E_BAD_REQUEST, msg, out_len);
    }
    /* Two entries for one credential are refused: which one a gateway meant
     * would depend on the order it serialized them in. */
    int n_auth, n_act;
    r->meta.authorization = framed_metadata(req, "authorization", &n_auth);
    r->meta.act_as = framed_metadata(req, "x-act-as-user", &n_act);
    if (n_auth > 1 || n_act > 1)
        return framed_error(req->id, PAT_E_INVALID_FIELD,
                            n_auth > 1 ? "metadata has more than one authorization entry"
                                       : "metadata has more than one x-act-as-user entry",
                            out_len);
    return NULL;
}

/* Answers on this thread if the method allows it: 1 with r->out set. */
static int framed_try_inline(framed_req_t *r)
{
    disp_outcome_t o;
    if (!disp_call_inline(r->svc, &r->m, &r->meta, r->in, framed_emit, r, &o)) return 0;
    framed_finish(r, &o);
    return 1;
}

static void framed_run(framed_req_t *r)
{
    disp_outcome_t o;
    disp_call(r->svc, &r->m, &r->meta, r->in, framed_emit, r, &o);
    framed_finish(r, &o);
}

/* A hot Verify read by hand (wire.h) and answered with the bytes prepared
 * for it (service.h) or else from memory: 1 with r->out set. 0 for anything else; -1 for a Verify
 * that must read the store, which is decoded again the generic way to travel to a worker (without a
 * second try from memory). */
static int framed_fast_verify(const disp_method_t *verify, framed_req_t *r, const uint8_t *data,
                              size_t len)
{
    wire_verify_t wv;
    if (!wire_read_verify(data, len, &wv)) return 0;
    Pat__V1__VerifyRequest in = PAT__V1__VERIFY_REQUEST__INIT;
    in.bearer_token = (char *)wv.bearer_token;
    in.path = (char *)wv.path;
    in.client_ip = (char *)wv.client_ip;
    in.required_role = (Pat__V1__Role)wv.required_role;
    r->id = wv.id;
    r->method = "pat.v1.TokenService/Verify";
    r->m = *verify;
    svc_prepared_t pa;
    if (disp_verify_prepared(r->svc, verify, &in, SVC_FORM_FRAMED, &pa)) {
        r->out = malloc(WIRE_OK_OVERHEAD + pa.len);
        if (r->out == NULL) abort();
        r->out_len = wire_pack_ok(r->id, pa.bytes, pa.len, r->out);
        disp_outcome_t o = {.err = PAT_E_OK};
        framed_finish(r, &o);
        return 1;
    }
    r->in = &in.base;
    if (framed_try_inline(r)) return 1;
    r->in = NULL;
    return -1;
}

/* ---------------------------------------------------------------- calls in place */

static uint8_t *framed_handle_mode(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len,
                                   int inline_only)
{
    framed_req_t r = {.svc = svc, .arena = disp_arena_new()};
    disp_method_t verify;
    if (disp_find(svc, "pat.v1.TokenService/Verify", &verify) != 0) abort();
    if (framed_fast_verify(&verify, &r, frame, len) == 1) {
        disp_arena_free(r.arena);
        *out_len = r.out_len;
        return r.out;
    }
    uint8_t *out = framed_decode(&r, frame, len, out_len);
    if (out != NULL && inline_only) {
        free(out); /* the inline part alone answers only Verifies from memory */
        out = NULL;
    } else if (out == NULL) {
        int answered = framed_try_inline(&r);
        if (!answered && !inline_only) {
            framed_run(&r);
            answered = 1;
        }
        if (answered) {
            out = r.out;
            *out_len = r.out_len;
        }
    }
    disp_arena_free(r.arena);
    return out;
}

uint8_t *framed_handle(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len)
{
    return framed_handle_mode(svc, frame, len, out_len, 0);
}

uint8_t *framed_handle_inline(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len)
{
    return framed_handle_mode(svc, frame, len, out_len, 1);
}

/* ---------------------------------------------------------------- on a connection */

static disp_arena_t *framed_arena_get(framed_conn_t *fc)
{
    return fc->n_spare ? fc->spare[--fc->n_spare] : disp_arena_new();
}

static void framed_arena_put(framed_conn_t *fc, disp_arena_t *a)
{
    disp_arena_reset(a);
    if (fc->n_spare < FRAMED_SPARE_ARENAS)
        fc->spare[fc->n_spare++] = a;
    else
        disp_arena_free(a);
}

/* Sends one Response frame and frees it (wiped: it may hold a secret). */
static void framed_send(framed_conn_t *fc, uint8_t *body, size_t len)
{
    uint8_t hdr[FRAME_HEADER_BYTES];
    frame_put_header(hdr, (uint32_t)len);
    conn_send2(fc->conn, hdr, sizeof(hdr), body, len, 1);
    explicit_bzero(body, len);
    free(body);
}

/* The same for a Verify's answer, which holds no secret: not wiped. */
static void framed_send_public(framed_conn_t *fc, uint8_t *body, size_t len)
{
    uint8_t hdr[FRAME_HEADER_BYTES];
    frame_put_header(hdr, (uint32_t)len);
    conn_send2_public(fc->conn, hdr, sizeof(hdr), body, len, 1);
    free(body);
}

static void framed_send_error(framed_conn_t *fc, uint64_t id, pat_err_t err, const char *msg)
{
    size_t len;
    uint8_t *body = framed_error(id, err, msg, &len);
    framed_send(fc, body, len);
}

static void framed_work_run(conn_work_t *w)
{
    framed_run((framed_req_t *)w);
}

static void framed_work_done(conn_work_t *w, int alive)
{
    framed_req_t *r = (framed_req_t *)w;
    framed_conn_t *fc = conn_protocol_state(w->conn);
    if (alive && r->out_len > FRAMED_SMALL_ANSWER && !conn_budget_ok(w->conn, r->out_len)) {
        /* A large answer (a page of tokens) that the budget cannot hold is
         * dropped for a refusal, as it would have been had it come later. */
        explicit_bzero(r->out, r->out_len);
        free(r->out);
        r->out = framed_error(r->id, PAT_E_OVERLOADED,
                              "server is overloaded (answers are not being read); retry with "
                              "backoff",
                              &r->out_len);
    }
    if (alive) {
        framed_send(fc, r->out, r->out_len);
    } else {
        explicit_bzero(r->out, r->out_len);
        free(r->out);
    }
    framed_arena_put(fc, r->arena);
    free(r);
}

/* One complete frame from the decoder; returns 1 to pause reading. */
static int framed_on_frame(void *arg, const uint8_t *data, size_t len)
{
    framed_conn_t *fc = arg;
    conn_t *c = fc->conn;
    int full = conn_begin_request(c);
    if (conn_draining(c)) {
        framed_send_error(fc, framed_peek_id(data, len), PAT_E_SHUTTING_DOWN,
                          "server is shutting down; retry on another instance");
        return full;
    }
    if (conn_budget_spent(c)) {
        /* Clients are not reading what they asked for: refuse at once
         * rather than compute another answer to hold. */
        framed_send_error(fc, framed_peek_id(data, len), PAT_E_OVERLOADED,
                          "server is overloaded (answers are not being read); retry with backoff");
        return full;
    }
    /* On the stack while it may be answered here; it holds no pointer to
     * itself, so a copy on the heap travels to a worker. */
    framed_req_t r = {.svc = fc->cfg->svc, .arena = framed_arena_get(fc), .conn_id = conn_id(c)};
    if (log_enabled(LOG_DEBUG)) r.t0_ns = metrics_now_ns();
    r.meta.client_ip = fc->peer_ip;
    r.meta.peer_verified = conn_peer_verified(c);
    int fast = framed_fast_verify(&fc->verify, &r, data, len);
    if (fast == 1) {
        framed_send_public(fc, r.out, r.out_len);
        framed_arena_put(fc, r.arena);
        return full;
    }
    size_t elen;
    uint8_t *err = framed_decode(&r, data, len, &elen);
    if (err != NULL) {
        framed_send(fc, err, elen);
    } else if (fast == 0 && framed_try_inline(&r)) {
        framed_send(fc, r.out, r.out_len);
    } else {
        framed_req_t *w = malloc(sizeof(*w));
        if (w == NULL) abort();
        *w = r;
        w->work.run = framed_work_run;
        w->work.done = framed_work_done;
        w->work.urgent = disp_is_inline(&w->m); /* a Verify that must read the store */
        if (w->work.urgent) w->work.token = ((const Pat__V1__VerifyRequest *)w->in)->bearer_token;
        if (conn_submit(c, &w->work) == 0) return full; /* w now travels */
        free(w);
        framed_send_error(fc, r.id, PAT_E_OVERLOADED, "server is overloaded; retry with backoff");
    }
    framed_arena_put(fc, r.arena);
    return full;
}

static size_t framed_feed(void *state, const uint8_t *data, size_t len)
{
    framed_conn_t *fc = state;
    size_t used = 0;
    frame_status_t st = frame_feed(&fc->dec, data, len, framed_on_frame, fc, &used);
    if (st != FRAME_OK) {
        /* A broken stream: one answer with id 0, then close after it. */
        conn_begin_request(fc->conn);
        if (st == FRAME_EMPTY)
            framed_send_error(fc, 0, PAT_E_BAD_FRAME, "frame of length 0");
        else
            framed_send_error(fc, 0, PAT_E_FRAME_TOO_LARGE, "frame longer than the maximum");
        conn_fail(fc->conn);
        return len;
    }
    return used;
}

static void *framed_open(conn_t *c, const void *cfg)
{
    framed_conn_t *fc = calloc(1, sizeof(*fc));
    if (fc == NULL) abort();
    fc->conn = c;
    fc->cfg = cfg;
    frame_init(&fc->dec, fc->cfg->max_frame);
    if (disp_find(fc->cfg->svc, "pat.v1.TokenService/Verify", &fc->verify) != 0) abort();
    struct sockaddr_storage peer;
    if (conn_peer(c, &peer) == 0)
        conn_addr_text(&peer, fc->peer_ip, sizeof(fc->peer_ip));
    else
        snprintf(fc->peer_ip, sizeof(fc->peer_ip), "unknown");
    return fc;
}

static void framed_refuse(void *state, pat_err_t why, const char *message)
{
    framed_conn_t *fc = state;
    conn_begin_request(fc->conn);
    framed_send_error(fc, 0, why, message);
}

static void framed_close(void *state)
{
    framed_conn_t *fc = state;
    frame_free(&fc->dec);
    while (fc->n_spare)
        disp_arena_free(fc->spare[--fc->n_spare]);
    free(fc);
}

static const char *framed_idle_note(void *state)
{
    framed_conn_t *fc = state;
    return frame_partial(&fc->dec) ? "half a frame sent" : NULL;
}

const protocol_ops_t framed_protocol = {
    .name = "framed",
    .open = framed_open,
    .feed = framed_feed,
    .refuse = framed_refuse,
    .close = framed_close,
    .idle_note = framed_idle_note,
    .expired = NULL,
};
