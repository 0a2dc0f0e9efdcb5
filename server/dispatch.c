/* dispatch: envelope decoding and method lookup through service descriptors. */
#include "dispatch.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "pat/v1/pat.pb-c.h"
#ifdef PATD_TEST_CLOCK
#include "testhooks.h"
#endif

/* A per-thread bump arena as protobuf-c's allocator for decoding requests:
 * a request is decoded, handled and freed on one thread, so its messages
 * can live in a reusable buffer instead of a dozen malloc/free pairs.
 * Anything larger than what is left falls back to malloc. */
#define DISP_ARENA_BYTES (64 * 1024)

typedef struct {
    uint8_t *buf;
    size_t used;
} disp_arena_t;

static _Thread_local uint8_t disp_arena_buf[DISP_ARENA_BYTES] __attribute__((aligned(16)));
static _Thread_local disp_arena_t disp_arena;

static void *disp_arena_alloc(void *data, size_t size)
{
    disp_arena_t *a = data;
    size_t need = (size + 15) & ~(size_t)15;
    if (need <= DISP_ARENA_BYTES - a->used) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    void *p = malloc(size ? size : 1);
    if (p == NULL) abort();
    return p;
}

static void disp_arena_free(void *data, void *p)
{
    disp_arena_t *a = data;
    if ((uint8_t *)p < a->buf || (uint8_t *)p >= a->buf + DISP_ARENA_BYTES) free(p);
}

/* The allocator for one request's decoding; resets the thread's arena. */
static ProtobufCAllocator *disp_arena_begin(ProtobufCAllocator *al)
{
    disp_arena.buf = disp_arena_buf;
    disp_arena.used = 0;
    al->alloc = disp_arena_alloc;
    al->free = disp_arena_free;
    al->allocator_data = &disp_arena;
    return al;
}

static uint8_t *disp_pack_response(const Pat__V1__Response *r, size_t *out_len)
{
    size_t n = pat__v1__response__get_packed_size(r);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) abort();
    pat__v1__response__pack(r, buf);
    *out_len = n;
    return buf;
}

uint8_t *disp_error(uint64_t id, pat_err_t err, const char *message, size_t *out_len)
{
    Pat__V1__Status st = PAT__V1__STATUS__INIT;
    st.code = (Pat__V1__Code)pat_err_code(err);
    st.http_status = pat_err_http(err);
    st.message = (char *)(message ? message : "");
    st.reason = (char *)pat_err_reason(err);
    Pat__V1__Response r = PAT__V1__RESPONSE__INIT;
    r.id = id;
    r.status = &st;
    return disp_pack_response(&r, out_len);
}

/* Reads field 1 (id, varint) of a Request without decoding the rest. */
uint64_t disp_peek_id(const uint8_t *p, size_t len)
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

/* The services a method name can address. */
typedef struct {
    const ProtobufCServiceDescriptor *desc;
    ProtobufCService *impl;
} disp_service_t;

/* Closure: packs the handler's answer while its message is still alive. */
static void disp_closure(const ProtobufCMessage *msg, void *closure_data)
{
    svc_call_t *call = closure_data;
    call->answered = 1;
    if (msg == NULL) {
        if (call->err == PAT_E_OK) svc_fail(call, PAT_E_INTERNAL, "handler gave no answer");
        return;
    }
    call->out_len = protobuf_c_message_get_packed_size(msg);
    call->out = malloc(call->out_len ? call->out_len : 1);
    if (call->out == NULL) abort();
    protobuf_c_message_pack(msg, call->out);
}

static const char *disp_metadata(const Pat__V1__Request *req, const char *key)
{
    for (size_t i = 0; i < req->n_metadata; i++) {
        if (strcasecmp(req->metadata[i]->key, key) == 0) return req->metadata[i]->value;
    }
    return NULL;
}

/* Finds the method a Request names, through the services' descriptors. */
static const ProtobufCMethodDescriptor *disp_find(svc_t *svc, const char *method,
                                                  disp_service_t *target)
{
    disp_service_t services[2];
    int n_services = 0;
    services[n_services++] =
        (disp_service_t){&pat__v1__token_service__descriptor, (ProtobufCService *)&svc->base};
#ifdef PATD_TEST_CLOCK
    services[n_services++] =
        (disp_service_t){&pat__v1__testing_service__descriptor, testhooks_service()};
#endif
    /* "pat.v1.TokenService/CreateToken": service full name, '/', method. */
    const char *slash = strrchr(method, '/');
    for (int i = 0; slash && i < n_services; i++) {
        size_t sl = (size_t)(slash - method);
        if (strlen(services[i].desc->name) == sl &&
            strncmp(services[i].desc->name, method, sl) == 0) {
            *target = services[i];
            return protobuf_c_service_descriptor_get_method_by_name(services[i].desc, slash + 1);
        }
    }
    return NULL;
}

/* Packs the answer of a finished call into a Response. */
static uint8_t *disp_finish(const Pat__V1__Request *req, svc_call_t *call, size_t *out_len)
{
    uint8_t *out;
    if (!call->answered) svc_fail(call, PAT_E_INTERNAL, "handler gave no answer");
    if (call->out) {
        Pat__V1__Status st = PAT__V1__STATUS__INIT;
        st.http_status = 200;
        Pat__V1__Response r = PAT__V1__RESPONSE__INIT;
        r.id = req->id;
        r.status = &st;
        r.payload.data = call->out;
        r.payload.len = call->out_len;
        out = disp_pack_response(&r, out_len);
        /* The payload may hold a token shown once: wipe our copy. */
        explicit_bzero(call->out, call->out_len);
        free(call->out);
    } else {
        log_debug("request id=%llu method=%s failed: %s", (unsigned long long)req->id, req->method,
                  pat_err_name(call->err));
        out = disp_error(req->id, call->err, call->message, out_len);
    }
    return out;
}

uint8_t *disp_handle(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len)
{
    ProtobufCAllocator arena;
    ProtobufCAllocator *al = disp_arena_begin(&arena);
    Pat__V1__Request *req = pat__v1__request__unpack(al, len, frame);
    if (req == NULL) {
        return disp_error(disp_peek_id(frame, len), PAT_E_BAD_REQUEST,
                          "frame is not a pat.v1.Request", out_len);
    }
    disp_service_t target;
    const ProtobufCMethodDescriptor *m = disp_find(svc, req->method, &target);
    uint8_t *out;
    if (m == NULL) {
        char msg[SVC_MESSAGE_MAX];
        snprintf(msg, sizeof(msg), "unknown method '%.128s'", req->method);
        out = disp_error(req->id, PAT_E_UNKNOWN_METHOD, msg, out_len);
        pat__v1__request__free_unpacked(req, al);
        return out;
    }
    ProtobufCMessage *input =
        protobuf_c_message_unpack(m->input, al, req->payload.len, req->payload.data);
    if (input == NULL) {
        char msg[SVC_MESSAGE_MAX];
        snprintf(msg, sizeof(msg), "payload is not a %s", m->input->name);
        out = disp_error(req->id, PAT_E_BAD_REQUEST, msg, out_len);
        pat__v1__request__free_unpacked(req, al);
        return out;
    }
    svc_call_t call = {.svc = svc};
    call.authorization = disp_metadata(req, "authorization");
    call.act_as = disp_metadata(req, "x-act-as-user");
    unsigned index = (unsigned)(m - target.desc->methods);
    target.impl->invoke(target.impl, index, input, disp_closure, &call);
    protobuf_c_message_free_unpacked(input, al);
    out = disp_finish(req, &call, out_len);
    pat__v1__request__free_unpacked(req, al);
    return out;
}

uint8_t *disp_handle_inline(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len)
{
    ProtobufCAllocator arena;
    ProtobufCAllocator *al = disp_arena_begin(&arena);
    Pat__V1__Request *req = pat__v1__request__unpack(al, len, frame);
    if (req == NULL) return NULL;
    disp_service_t target;
    const ProtobufCMethodDescriptor *m = disp_find(svc, req->method, &target);
    uint8_t *out = NULL;
    if (m != NULL && m->input == &pat__v1__verify_request__descriptor) {
        Pat__V1__VerifyRequest *in =
            pat__v1__verify_request__unpack(al, req->payload.len, req->payload.data);
        if (in != NULL) {
            svc_call_t call = {.svc = svc};
            if (svc_verify_cached(svc, in, &call, (Pat__V1__VerifyResponse_Closure)disp_closure))
                out = disp_finish(req, &call, out_len);
            pat__v1__verify_request__free_unpacked(in, al);
        }
    }
    pat__v1__request__free_unpacked(req, al);
    return out;
}
