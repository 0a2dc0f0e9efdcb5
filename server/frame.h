/* frame: the length-prefixed frame decoder (4-byte big-endian length, then
 * that many bytes), fed arbitrary byte chunks.
 *
 * Pure and single-threaded: the loop thread owns one decoder per
 * connection. A frame that arrives whole inside one chunk is handed out in
 * place (no copy); only a frame split across chunks is copied into a body
 * buffer, allocated after its length has been checked against the limit.
 * The decoder owns that buffer; frame_free() frees it. */
#ifndef PAT_FRAME_H
#define PAT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_BYTES 4

typedef enum {
    FRAME_OK = 0,        /* all input consumed, or paused by the callback */
    FRAME_EMPTY = 1,     /* a frame declared length 0 */
    FRAME_TOO_LARGE = 2, /* a frame declared more than max_frame bytes */
} frame_status_t;

/* Called for each complete frame. data is valid only during the call.
 * Return 0 to continue, non-zero to pause: frame_feed() then returns at once
 * with *consumed telling how far it got. */
typedef int (*frame_cb)(void *arg, const uint8_t *data, size_t len);

typedef struct {
    uint32_t max_frame;
    uint8_t hdr[FRAME_HEADER_BYTES];
    size_t hdr_have;
    uint8_t *body; /* partial body, len bytes allocated */
    size_t len;
    size_t have;
} frame_decoder_t;

void frame_init(frame_decoder_t *d, uint32_t max_frame);
/* Feeds len bytes. On FRAME_EMPTY/FRAME_TOO_LARGE the stream is broken and
 * the caller must stop feeding this decoder. */
frame_status_t frame_feed(frame_decoder_t *d, const uint8_t *data, size_t len, frame_cb cb,
                          void *arg, size_t *consumed);
/* True if a partial frame is buffered (used by the idle/slow-client check). */
int frame_partial(const frame_decoder_t *d);
void frame_free(frame_decoder_t *d);

/* Writes the 4-byte header for a body of len bytes. */
void frame_put_header(uint8_t out[FRAME_HEADER_BYTES], uint32_t len);

#endif
