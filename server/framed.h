/* framed: patd's length-prefixed protobuf protocol (docs/protocol.md) as a
 * protocol table (protocol.h): 4-byte big-endian length, then a
 * pat.v1.Request; answers are pat.v1.Response frames, sent as each is
 * ready and matched to requests by id.
 *
 * DESIGN. Each frame is decoded once, on the loop thread, into an arena of
 * its own (dispatch.h): the envelope, the method found through the
 * descriptors, the input message. Whether it is answered on the loop thread
 * is decided once: a Verify that disp_call_inline() can answer from memory
 * is answered at once (no hop to a worker and back: on a 2-core machine
 * those two context switches were most of a Verify's cost); anything else
 * goes, already decoded, to a worker, which calls disp_call() and packs the
 * Response. Frames that cannot be decoded are answered on the loop thread.
 * A connection keeps a couple of spent arenas for its next requests, so
 * the hot path allocates nothing for decoding.
 *
 * Ownership: framed_handle() and framed_error() return a malloc'd buffer
 * that the caller frees; the input frame is only read. */
#ifndef PAT_FRAMED_H
#define PAT_FRAMED_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "protocol.h"
#include "service.h"

typedef struct {
    svc_t *svc;
    uint32_t max_frame; /* bytes of one request frame, length prefix excluded */
} framed_cfg_t;

extern const protocol_ops_t framed_protocol;

/* Handles one request frame body on the calling thread, as a connection
 * would (inline when it can, else in full); returns the packed Response
 * (without the length prefix). Never fails: every problem is an error
 * Response, with the request's id when it could be read. For unit tests
 * and the fuzzer. */
uint8_t *framed_handle(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len);
/* The loop thread's part alone: the Response when the frame is a Verify
 * answered from memory, else NULL. */
uint8_t *framed_handle_inline(svc_t *svc, const uint8_t *frame, size_t len, size_t *out_len);

/* A packed error Response with the given id, outcome and message. */
uint8_t *framed_error(uint64_t id, pat_err_t err, const char *message, size_t *out_len);

/* Reads just the id of a request frame (0 if it does not decode); used when
 * the server answers before decoding, e.g. while shutting down. */
uint64_t framed_peek_id(const uint8_t *frame, size_t len);

#endif
