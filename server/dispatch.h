/* dispatch: one call on messages: (method, metadata, decoded input) in,
 * (outcome, output message) out, for every protocol.
 *
 * Methods are found by full name ("pat.v1.TokenService/CreateToken") in
 * protobuf-c's generated service descriptors (TokenService, and in the test
 * build TestingService) and invoked through the generated service, so a
 * protocol never names a handler. The framed protocol decodes its envelope
 * and encodes the reply around this call; HTTP/JSON and later gRPC call the
 * same function with the same handlers.
 *
 * Handlers answer with messages on their own stacks, so the answer is
 * handed to the caller's emit function during the call, which encodes it
 * (protobuf, JSON) before the handler returns: that is how a call "gives
 * back" its output message.
 *
 * Threads: disp_call() runs on worker threads, any number at once;
 * disp_call_inline() is the loop thread's fast path and never blocks. Both
 * hold no state of their own beyond the services.
 *
 * The arena: protobuf-c's allocator for decoding one request. A request is
 * decoded, handled and dropped as one unit, so its messages live in one
 * buffer that is reset, not freed message by message; the arena's reset is
 * what pairs with unpack. Ownership: the creator of an arena frees it; a
 * decoded message is valid until its arena is reset or freed. */
#ifndef PAT_DISPATCH_H
#define PAT_DISPATCH_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "service.h"

typedef struct {
    const ProtobufCMethodDescriptor *desc; /* desc->input, desc->output */
    ProtobufCService *impl;
    unsigned index;
} disp_method_t;

/* What the transport's framing carries besides the input message. */
typedef struct {
    const char *authorization; /* NULL if absent */
    const char *act_as;        /* NULL if absent */
    const char *client_ip;     /* the caller's address (the peer, or a trusted proxy's word) */
    const char *trusted_user;  /* HTTP only: a page session's or auth proxy's user (service.h) */
    int peer_verified;         /* the connection's TLS client certificate was verified */
} disp_meta_t;

/* Receives the answer while it is alive; it must encode or copy it. */
typedef void (*disp_emit_fn)(void *arg, const ProtobufCMessage *answer);

typedef struct {
    pat_err_t err; /* PAT_E_OK: the answer was emitted */
    char message[SVC_MESSAGE_MAX];
} disp_outcome_t;

/* Finds a method by full name; 0, or -1 if no service has it. */
int disp_find(svc_t *svc, const char *method, disp_method_t *out);
/* 1 for the method that disp_call_inline can answer (Verify). */
int disp_is_inline(const disp_method_t *m);

/* Runs the method: calls emit once with the answer, or sets out->err. */
void disp_call(svc_t *svc, const disp_method_t *m, const disp_meta_t *meta,
               const ProtobufCMessage *in, disp_emit_fn emit, void *arg, disp_outcome_t *out);
/* The loop thread's fast path: answers a Verify from memory (the
 * verification cache, or the store's non-blocking read) and returns 1, as
 * disp_call would; returns 0 without answering when it would need to wait,
 * and the caller runs disp_call on a worker with the same input. */
int disp_call_inline(svc_t *svc, const disp_method_t *m, const disp_meta_t *meta,
                     const ProtobufCMessage *in, disp_emit_fn emit, void *arg, disp_outcome_t *out);

/* A Verify (m) answered with the bytes prepared for it in form
 * (svc_verify_prepared), counted as disp_call_inline counts one: 1 with
 * out set, or 0 to call disp_call_inline. */
int disp_verify_prepared(svc_t *svc, const disp_method_t *m, const Pat__V1__VerifyRequest *in,
                         svc_form_t form, svc_prepared_t *out);

typedef struct disp_arena disp_arena_t;
disp_arena_t *disp_arena_new(void);
ProtobufCAllocator *disp_arena_allocator(disp_arena_t *a);
/* Allocates from the arena (for encoding scratch space too). */
void *disp_arena_alloc(disp_arena_t *a, size_t size);
/* Drops everything allocated from a; it can be used again. */
void disp_arena_reset(disp_arena_t *a);
void disp_arena_free(disp_arena_t *a);

#endif
