/* clock: wall and monotonic time, with a test-only offset. */
#include "clock.h"

#include <stdatomic.h>
#include <time.h>

#ifdef PATD_TEST_CLOCK
static _Atomic int64_t clock_offset_ms;
#endif

int64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#ifdef PATD_TEST_CLOCK
    now += atomic_load_explicit(&clock_offset_ms, memory_order_relaxed);
#endif
    return now;
}

uint64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#ifdef PATD_TEST_CLOCK
int64_t clock_advance(int64_t delta_ms)
{
    atomic_fetch_add(&clock_offset_ms, delta_ms);
    return clock_now_ms();
}
#endif

void clock_utc(int64_t ms, clock_utc_t *out)
{
    int64_t secs = ms / 1000, days = secs / 86400;
    unsigned in_day = (unsigned)(secs % 86400);
    out->ms = (unsigned)(ms % 1000);
    out->hour = in_day / 3600;
    out->min = in_day / 60 % 60;
    out->sec = in_day % 60;
    /* Days to a civil date (Howard Hinnant's days_from_civil, inverted):
     * eras of 400 years, starting on 1 March so that leap days come last. */
    int64_t z = days + 719468, era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    out->day = doy - (153 * mp + 2) / 5 + 1;
    out->month = mp < 10 ? mp + 3 : mp - 9;
    out->year = (int)(yoe + era * 400 + (out->month <= 2));
}
