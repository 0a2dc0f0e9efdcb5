/* clock: the server's notion of "now", in Unix milliseconds UTC.
 *
 * Every expiry decision reads clock_now_ms(). In a build with
 * PATD_TEST_CLOCK defined (the patd-testclock binary, used only by tests)
 * an offset can be added at run time so that a test can move 31 days ahead
 * in a millisecond; a normal build compiles clock_advance() out entirely,
 * so nothing can move its time. Thread-safe. */
#ifndef PAT_CLOCK_H
#define PAT_CLOCK_H

#include <stdint.h>

int64_t clock_now_ms(void);
/* Monotonic milliseconds, for timeouts and uptime; never moved. */
uint64_t clock_mono_ms(void);

/* A Unix time in milliseconds as its UTC calendar parts: gmtime_r's
 * answer, without its locking and time-zone machinery (270 instructions of
 * every /v1/verify answer that names an expiry). Any ms >= 0. */
typedef struct {
    int year;
    unsigned month, day, hour, min, sec, ms; /* month 1-12, day 1-31 */
} clock_utc_t;
void clock_utc(int64_t ms, clock_utc_t *out);

#ifdef PATD_TEST_CLOCK
/* Adds delta_ms (>= 0) to the offset; returns the new now. */
int64_t clock_advance(int64_t delta_ms);
#endif

#endif
