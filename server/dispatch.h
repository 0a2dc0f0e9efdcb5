/* dispatch: one request frame in, one response frame body out.
 *
 * Decodes the pat.v1.Request envelope, finds the method by its full name in
 * protobuf-c's generated service descriptors (TokenService, and in the test
 * build TestingService), decodes the payload with the method's input
 * descriptor, invokes the handler and packs a pat.v1.Response. Runs on
 * worker threads; holds no state of its own beyond the services.
 *
 * Ownership: disp_handle() and disp_error() return a malloc'd buffer that
 * the caller frees; the input frame is only read. */
#ifndef PAT_DISPATCH_H
#define PAT_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "service.h"

/* Handles one request frame body; returns the packed Response (without the
 * length prefix) and its length in *out_len. Never fails: every problem is
 * an error Response. If the request id could be read, it is echoed. */
uint8_t *disp_handle(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len);

/* The loop thread's fast path: if the frame is a Verify that the cache can
 * answer (or a malformed token), returns the packed Response; otherwise
 * NULL, and the frame goes to a worker through disp_handle(). Never blocks. */
uint8_t *disp_handle_inline(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len);

/* A packed error Response with the given id, outcome and message. */
uint8_t *disp_error(uint64_t id, pat_err_t err, const char *message, size_t *out_len);

/* Reads just the id of a request frame (0 if it does not decode); used when
 * the server answers before dispatching, e.g. when overloaded. */
uint64_t disp_peek_id(const uint8_t *frame, size_t len);

#endif
