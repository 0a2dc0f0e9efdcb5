/* Unit tests of frame.c: split and coalesced frames, limits, pausing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

typedef struct {
    int n;
    size_t lens[64];
    uint8_t first[64];
    int pause_after; /* 0: never */
} sink_t;

static int sink_cb(void *arg, const uint8_t *data, size_t len)
{
    sink_t *s = arg;
    s->lens[s->n] = len;
    s->first[s->n] = data[0];
    s->n++;
    return s->pause_after && s->n % s->pause_after == 0;
}

/* Three frames of lengths 1, 300, 5 with bodies filled with 'a', 'b', 'c'. */
static size_t make_stream(uint8_t *out)
{
    size_t lens[3] = {1, 300, 5};
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        frame_put_header(out + o, (uint32_t)lens[i]);
        o += 4;
        memset(out + o, 'a' + i, lens[i]);
        o += lens[i];
    }
    return o;
}

static void test_coalesced_frames_in_one_chunk(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t len = make_stream(buf);
    frame_decoder_t d;
    frame_init(&d, 1024);
    sink_t s = {0};
    size_t used;
    assert_int_equal(frame_feed(&d, buf, len, sink_cb, &s, &used), FRAME_OK);
    assert_int_equal(used, len);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.lens[1], 300);
    assert_int_equal(s.first[2], 'c');
    frame_free(&d);
}

static void test_split_at_every_position(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t len = make_stream(buf);
    for (size_t cut = 0; cut <= len; cut++) {
        frame_decoder_t d;
        frame_init(&d, 1024);
        sink_t s = {0};
        assert_int_equal(frame_feed(&d, buf, cut, sink_cb, &s, NULL), FRAME_OK);
        assert_int_equal(frame_feed(&d, buf + cut, len - cut, sink_cb, &s, NULL), FRAME_OK);
        assert_int_equal(s.n, 3);
        assert_int_equal(s.lens[0], 1);
        assert_int_equal(s.lens[1], 300);
        assert_int_equal(s.lens[2], 5);
        assert_int_equal(s.first[1], 'b');
        assert_false(frame_partial(&d));
        frame_free(&d);
    }
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t len = make_stream(buf);
    frame_decoder_t d;
    frame_init(&d, 1024);
    sink_t s = {0};
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(frame_feed(&d, buf + i, 1, sink_cb, &s, NULL), FRAME_OK);
        if (i == 2) assert_true(frame_partial(&d));
    }
    assert_int_equal(s.n, 3);
    frame_free(&d);
}

static void test_zero_length_is_an_error(void **state)
{
    (void)state;
    uint8_t buf[8] = {0, 0, 0, 0, 1, 2, 3, 4};
    frame_decoder_t d;
    frame_init(&d, 1024);
    sink_t s = {0};
    assert_int_equal(frame_feed(&d, buf, 8, sink_cb, &s, NULL), FRAME_EMPTY);
    assert_int_equal(s.n, 0);
    /* Same when the header arrives in pieces. */
    frame_free(&d);
    frame_init(&d, 1024);
    assert_int_equal(frame_feed(&d, buf, 2, sink_cb, &s, NULL), FRAME_OK);
    assert_int_equal(frame_feed(&d, buf + 2, 2, sink_cb, &s, NULL), FRAME_EMPTY);
    frame_free(&d);
}

static void test_over_limit_is_refused_before_allocating(void **state)
{
    (void)state;
    uint8_t hdr[4];
    frame_decoder_t d;
    frame_init(&d, 1024);
    sink_t s = {0};
    frame_put_header(hdr, 1025);
    assert_int_equal(frame_feed(&d, hdr, 4, sink_cb, &s, NULL), FRAME_TOO_LARGE);
    assert_null(d.body);
    frame_free(&d);
    /* 0xffffffff: the largest a header can say. */
    memset(hdr, 0xff, 4);
    frame_init(&d, 1024);
    assert_int_equal(frame_feed(&d, hdr, 3, sink_cb, &s, NULL), FRAME_OK);
    assert_int_equal(frame_feed(&d, hdr + 3, 1, sink_cb, &s, NULL), FRAME_TOO_LARGE);
    assert_null(d.body);
    frame_free(&d);
    /* Exactly the limit is fine. */
    uint8_t *big = calloc(1, 4 + 1024);
    frame_put_header(big, 1024);
    big[4] = 'z';
    frame_init(&d, 1024);
    assert_int_equal(frame_feed(&d, big, 4 + 1024, sink_cb, &s, NULL), FRAME_OK);
    assert_int_equal(s.n, 1);
    free(big);
    frame_free(&d);
}

static void test_pause_reports_consumed_bytes(void **state)
{
    (void)state;
    uint8_t buf[512];
    size_t len = make_stream(buf);
    frame_decoder_t d;
    frame_init(&d, 1024);
    sink_t s = {.pause_after = 1};
    size_t used, total = 0;
    int rounds = 0;
    while (total < len) {
        assert_int_equal(frame_feed(&d, buf + total, len - total, sink_cb, &s, &used), FRAME_OK);
        total += used;
        rounds++;
    }
    assert_int_equal(s.n, 3);
    assert_int_equal(rounds, 3);
    assert_int_equal(total, len);
    frame_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coalesced_frames_in_one_chunk),
        cmocka_unit_test(test_split_at_every_position),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_zero_length_is_an_error),
        cmocka_unit_test(test_over_limit_is_refused_before_allocating),
        cmocka_unit_test(test_pause_reports_consumed_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
