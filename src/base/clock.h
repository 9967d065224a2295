/* Monotonic time in microseconds, for durations; never for wall-clock timestamps. Code that
 * measures takes a `const struct clock *` so that a test can drive time by hand; NULL means the
 * real monotonic clock. */
#ifndef GATHERD_CLOCK_H
#define GATHERD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct clock {
    uint64_t (*now_us)(void *ctx);
    void *ctx;
};

static inline uint64_t clock_now(const struct clock *c)
{
    return c != NULL ? c->now_us(c->ctx) : clock_us();
}

#endif
