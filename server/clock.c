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
