/* frame: incremental length-prefixed frame decoding. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

void frame_init(frame_decoder_t *d, uint32_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->max_frame = max_frame;
}

void frame_free(frame_decoder_t *d)
{
    free(d->body);
    d->body = NULL;
    d->hdr_have = d->len = d->have = 0;
}

int frame_partial(const frame_decoder_t *d)
{
    return d->hdr_have > 0;
}

void frame_put_header(uint8_t out[FRAME_HEADER_BYTES], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

static uint32_t frame_get_header(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

frame_status_t frame_feed(frame_decoder_t *d, const uint8_t *data, size_t len, frame_cb cb,
                          void *arg, size_t *consumed)
{
    size_t pos = 0;
    frame_status_t st = FRAME_OK;

    while (pos < len) {
        if (d->hdr_have < FRAME_HEADER_BYTES) {
            /* Fast path: header and whole body inside this chunk, no copy. */
            if (d->hdr_have == 0 && len - pos >= FRAME_HEADER_BYTES) {
                uint32_t n = frame_get_header(data + pos);
                if (n == 0) {
                    st = FRAME_EMPTY;
                    break;
                }
                if (n > d->max_frame) {
                    st = FRAME_TOO_LARGE;
                    break;
                }
                if (len - pos - FRAME_HEADER_BYTES >= n) {
                    pos += FRAME_HEADER_BYTES + n;
                    if (cb(arg, data + pos - n, n)) break;
                    continue;
                }
            }
            size_t take = FRAME_HEADER_BYTES - d->hdr_have;
            if (take > len - pos) take = len - pos;
            memcpy(d->hdr + d->hdr_have, data + pos, take);
            d->hdr_have += take;
            pos += take;
            if (d->hdr_have < FRAME_HEADER_BYTES) break;
            uint32_t n = frame_get_header(d->hdr);
            if (n == 0) {
                st = FRAME_EMPTY;
                break;
            }
            if (n > d->max_frame) {
                st = FRAME_TOO_LARGE;
                break;
            }
            /* The length is now known to be within the limit. */
            d->body = malloc(n);
            if (d->body == NULL) abort();
            d->len = n;
            d->have = 0;
            continue;
        }
        size_t take = d->len - d->have;
        if (take > len - pos) take = len - pos;
        memcpy(d->body + d->have, data + pos, take);
        d->have += take;
        pos += take;
        if (d->have == d->len) {
            uint8_t *body = d->body;
            size_t n = d->len;
            d->body = NULL;
            d->hdr_have = d->len = d->have = 0;
            int pause = cb(arg, body, n);
            free(body);
            if (pause) break;
        }
    }
    if (consumed) *consumed = pos;
    return st;
}
