/* dispatch: method lookup through service descriptors, the call on
 * messages, and the per-request decoding arena. */
#include "dispatch.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "pat/v1/pat.pb-c.h"
#ifdef PATD_TEST_CLOCK
#include "testhooks.h"
#endif

/* ---------------------------------------------------------------- arena */

/* Big enough for any request but a large CreateToken or UpsertUser
 * (a Verify decodes into about 300 bytes); more spills to malloc. */
#define DISP_ARENA_BYTES (4 * 1024)

typedef struct disp_spill {
    struct disp_spill *next;
    alignas(16) unsigned char data[];
} disp_spill_t;

struct disp_arena {
    ProtobufCAllocator al;
    size_t used;
    disp_spill_t *spill;
    alignas(16) unsigned char buf[DISP_ARENA_BYTES];
};

void *disp_arena_alloc(disp_arena_t *a, size_t size)
{
    size_t need = (size + 15) & ~(size_t)15;
    if (need <= DISP_ARENA_BYTES - a->used) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    disp_spill_t *s = malloc(sizeof(*s) + size);
    if (s == NULL) abort();
    s->next = a->spill;
    a->spill = s;
    return s->data;
}

static void *disp_arena_pb_alloc(void *data, size_t size)
{
    return disp_arena_alloc(data, size);
}

static void disp_arena_pb_free(void *data, void *p)
{
    (void)data;
    (void)p; /* everything goes at reset */
}

disp_arena_t *disp_arena_new(void)
{
    disp_arena_t *a = malloc(sizeof(*a));
    if (a == NULL) abort();
    a->al.alloc = disp_arena_pb_alloc;
    a->al.free = disp_arena_pb_free;
    a->al.allocator_data = a;
    a->used = 0;
    a->spill = NULL;
    return a;
}

ProtobufCAllocator *disp_arena_allocator(disp_arena_t *a)
{
    return &a->al;
}

void disp_arena_reset(disp_arena_t *a)
{
    while (a->spill) {
        disp_spill_t *next = a->spill->next;
        free(a->spill);
        a->spill = next;
    }
    a->used = 0;
}

void disp_arena_free(disp_arena_t *a)
{
    if (a == NULL) return;
    disp_arena_reset(a);
    free(a);
}

/* ---------------------------------------------------------------- lookup */

int disp_find(svc_t *svc, const char *method, disp_method_t *out)
{
    struct {
        const ProtobufCServiceDescriptor *desc;
        ProtobufCService *impl;
    } services[2];
    int n = 0;
    services[n].desc = &pat__v1__token_service__descriptor;
    services[n++].impl = (ProtobufCService *)&svc->base;
#ifdef PATD_TEST_CLOCK
    services[n].desc = &pat__v1__testing_service__descriptor;
    services[n++].impl = testhooks_service();
#endif
    /* "pat.v1.TokenService/CreateToken": service full name, '/', method. */
    const char *slash = strrchr(method, '/');
    if (slash == NULL) return -1;
    size_t sl = (size_t)(slash - method);
    for (int i = 0; i < n; i++) {
        if (strlen(services[i].desc->name) != sl ||
            strncmp(services[i].desc->name, method, sl) != 0)
            continue;
        const ProtobufCMethodDescriptor *m =
            protobuf_c_service_descriptor_get_method_by_name(services[i].desc, slash + 1);
        if (m == NULL) return -1;
        out->desc = m;
        out->impl = services[i].impl;
        out->index = (unsigned)(m - services[i].desc->methods);
        return 0;
    }
    return -1;
}

int disp_is_inline(const disp_method_t *m)
{
    return m->desc->input == &pat__v1__verify_request__descriptor;
}

/* ---------------------------------------------------------------- calls */

/* The handlers' closure: hands the answer over while it is alive. */
static void disp_closure(const ProtobufCMessage *msg, void *closure_data)
{
    svc_call_t *call = closure_data;
    call->answered = 1;
    if (msg == NULL) {
        if (call->err == PAT_E_OK) svc_fail(call, PAT_E_INTERNAL, "handler gave no answer");
        return;
    }
    call->emit(call->emit_arg, msg);
}

static void disp_call_begin(svc_call_t *call, svc_t *svc, const disp_meta_t *meta,
                            disp_emit_fn emit, void *arg)
{
    call->svc = svc;
    call->err = PAT_E_OK;
    call->message[0] = '\0';
    call->authorization = meta->authorization;
    call->act_as = meta->act_as;
    call->client_ip = meta->client_ip;
    call->trusted_user = meta->trusted_user;
    call->peer_verified = meta->peer_verified;
    call->emit = emit;
    call->emit_arg = arg;
    call->answered = 0;
}

static void disp_call_end(svc_call_t *call, disp_outcome_t *out)
{
    if (!call->answered) svc_fail(call, PAT_E_INTERNAL, "handler gave no answer");
    out->err = call->err;
    if (call->err != PAT_E_OK)
        memcpy(out->message, call->message, sizeof(out->message));
    else
        out->message[0] = '\0';
}

/* Counts a finished call of the TokenService (the test build's
 * TestingService is not counted). */
static void disp_count(svc_t *svc, const disp_method_t *m, pat_err_t e, uint64_t t0)
{
    if (m->impl != (ProtobufCService *)&svc->base) return;
    metrics_count_call(m->index, e);
    if (disp_is_inline(m)) metrics_observe_verify(metrics_now_ns() - t0);
}

void disp_call(svc_t *svc, const disp_method_t *m, const disp_meta_t *meta,
               const ProtobufCMessage *in, disp_emit_fn emit, void *arg, disp_outcome_t *out)
{
    uint64_t t0 = metrics_now_ns();
    svc_call_t call;
    disp_call_begin(&call, svc, meta, emit, arg);
    m->impl->invoke(m->impl, m->index, in, disp_closure, &call);
    disp_call_end(&call, out);
    disp_count(svc, m, out->err, t0);
}

int disp_call_inline(svc_t *svc, const disp_method_t *m, const disp_meta_t *meta,
                     const ProtobufCMessage *in, disp_emit_fn emit, void *arg, disp_outcome_t *out)
{
    if (!disp_is_inline(m)) return 0;
    uint64_t t0 = metrics_now_ns();
    svc_call_t call;
    disp_call_begin(&call, svc, meta, emit, arg);
    if (!svc_verify_cached(svc, (const Pat__V1__VerifyRequest *)in, &call,
                           (Pat__V1__VerifyResponse_Closure)disp_closure))
        return 0; /* counted by the worker's disp_call */
    disp_call_end(&call, out);
    disp_count(svc, m, out->err, t0);
    return 1;
}

int disp_verify_prepared(svc_t *svc, const disp_method_t *m, const Pat__V1__VerifyRequest *in,
                         svc_form_t form, svc_prepared_t *out)
{
    uint64_t t0 = metrics_now_ns();
    if (!svc_verify_prepared(svc, in, form, out)) return 0;
    disp_count(svc, m, PAT_E_OK, t0);
    return 1;
}
