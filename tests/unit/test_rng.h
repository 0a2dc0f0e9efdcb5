/* test_rng: the unit tests' fixed-seed generator (xorshift64), so that a
 * failure replays: the same sequence on every run. */
#ifndef PAT_TEST_RNG_H
#define PAT_TEST_RNG_H

#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

#endif
