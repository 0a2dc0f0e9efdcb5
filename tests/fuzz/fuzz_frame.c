/* libFuzzer target: the frame decoder on arbitrary byte streams split at
 * arbitrary points. The frames found must be the same, in the same order,
 * as when the stream arrives in one piece, and nothing may leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

typedef struct {
    size_t n;
    uint64_t sum; /* order-sensitive digest of the frames seen */
    int pause_every;
} sink_t;

static int sink(void *arg, const uint8_t *data, size_t len)
{
    sink_t *s = arg;
    s->n++;
    for (size_t i = 0; i < len; i++)
        s->sum = s->sum * 131 + data[i];
    s->sum = s->sum * 31 + len;
    return s->pause_every && s->n % (size_t)s->pause_every == 0;
}

/* Feeds the whole input, resuming after pauses; returns the final status. */
static frame_status_t feed_all(frame_decoder_t *d, const uint8_t *p, size_t len, sink_t *s)
{
    size_t pos = 0;
    while (pos < len) {
        size_t used = 0;
        frame_status_t st = frame_feed(d, p + pos, len - pos, sink, s, &used);
        if (st != FRAME_OK) return st;
        pos += used;
    }
    return FRAME_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    uint32_t max = 1 + (uint32_t)data[0] * 64;
    unsigned step = data[1] % 17 + 1;
    int pause = data[2] % 4;
    data += 3;
    size -= 3;

    frame_decoder_t whole;
    sink_t a = {0};
    frame_init(&whole, max);
    frame_status_t st_whole = feed_all(&whole, data, size, &a);
    frame_free(&whole);

    frame_decoder_t split;
    sink_t b = {.pause_every = pause};
    frame_init(&split, max);
    frame_status_t st_split = FRAME_OK;
    for (size_t pos = 0; pos < size && st_split == FRAME_OK;) {
        size_t n = step < size - pos ? step : size - pos;
        st_split = feed_all(&split, data + pos, n, &b);
        pos += n;
        step = step * 7 % 23 + 1;
    }
    frame_free(&split);
    if (st_whole != st_split || a.n != b.n || a.sum != b.sum) abort();
    return 0;
}
