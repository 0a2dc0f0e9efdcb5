/* Unit tests of clock.c: clock_utc() is gmtime_r's calendar. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "clock.h"

static void expect_gmtime(int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    assert_non_null(gmtime_r(&t, &tm));
    clock_utc_t u;
    clock_utc(ms, &u);
    assert_int_equal(u.year, tm.tm_year + 1900);
    assert_int_equal(u.month, tm.tm_mon + 1);
    assert_int_equal(u.day, tm.tm_mday);
    assert_int_equal(u.hour, tm.tm_hour);
    assert_int_equal(u.min, tm.tm_min);
    assert_int_equal(u.sec, tm.tm_sec);
    assert_int_equal(u.ms, ms % 1000);
}

/* The epoch, leap days (2000 is a leap year, 2100 is not), the ends of
 * years and months, and a million random times up to the year 9999. */
static void test_utc_is_gmtime(void **state)
{
    (void)state;
    static const int64_t edges[] = {0,
                                    999,
                                    86399999,
                                    86400000,
                                    951782400000,  /* 2000-02-29 */
                                    951868799999,  /* 2000-02-29 23:59:59.999 */
                                    951868800000,  /* 2000-03-01 */
                                    4107456000000, /* 2100-02-28 */
                                    4107542400000, /* 2100-03-01 */
                                    1767225599999, /* 2025-12-31 23:59:59.999 */
                                    1767225600000,
                                    253402300799999};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        expect_gmtime(edges[i]);
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (int k = 0; k < 1000000; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        expect_gmtime((int64_t)(x % 253402300800000ull));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc_is_gmtime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
