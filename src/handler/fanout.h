/* One aggregate request in flight: runs the calls of its plan (core/plan.h), each through the
 * worker's flight table (upstream/flight.h: a transfer of its own, or a share of one already
 * running), feeds their outcomes into the aggregation state machine, enforces the deadline,
 * and hands back the rendered join. Everything runs on the worker's loop; the completion
 * callback always arrives from the loop, never from inside fanout_start(), so callers need not
 * guard against re-entry. */
#ifndef GATHERD_FANOUT_H
#define GATHERD_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agg;
struct clock;
struct event_base;
struct flights;
struct metrics_table;
struct plan;

/* Call i has settled (succeeded, failed, or been cut off): for streamed answers. Called from
 * the loop, in the order calls settle, never after fanout_cancel(). */
typedef void (*fanout_settled_fn)(void *arg, size_t i);

struct fanout_env {
    struct event_base *base;
    struct flights *flights;            /* every call starts through it, shared or not */
    const struct metrics_table *series; /* where each call's outcome is counted */
    unsigned worker;                    /* the metrics block to record into */
    const struct clock *clock;          /* NULL: the monotonic clock */
    fanout_settled_fn settled;          /* NULL, or told of each call as it settles */
    bool no_join; /* the answer is streamed: done() gets the status and no body */
};

struct fanout;

/* The join is ready: status is 200 or 502 (500 with body NULL if rendering ran out of memory);
 * body (malloc'd) passes to the callee. Called once; the fanout stays alive for inspection
 * until fanout_destroy(). */
typedef void (*fanout_done_fn)(void *arg, int status, char *body, size_t len);

/* Starts every call of `plan`, which the fanout takes over (freed by fanout_destroy(), also when
 * this fails); the configuration it borrows from must outlive the fanout. `env` is copied and
 * `request_id` too. NULL when out of memory. */
struct fanout *fanout_start(const struct fanout_env *env, struct plan *plan, const char *request_id,
                            fanout_done_fn done, void *arg);

/* The client is gone: cancels every running call at once; no callback follows. */
void fanout_cancel(struct fanout *f);

/* Cuts off calls still running as `timeout` errors with `why`, then completes as usual
 * (asynchronously). For the drain limit. */
void fanout_expire(struct fanout *f, const char *why);

/* Cancels what still runs and frees; accepts NULL. */
void fanout_destroy(struct fanout *f);

const struct plan *fanout_plan(const struct fanout *f);
const struct agg *fanout_agg(const struct fanout *f);
/* Microseconds call i took (so far, if it has not finished). */
uint64_t fanout_call_usec(const struct fanout *f, size_t i);
/* Whether call i was started (a call waiting for a concurrency slot, or never started because
 * the request ended first, was not). */
bool fanout_call_started(const struct fanout *f, size_t i);
/* Microseconds from the fan-out's start to call i's (0 if it never started). */
uint64_t fanout_call_start_usec(const struct fanout *f, size_t i);
/* Whether call i joined a transfer another request had started (flight.h). */
bool fanout_call_joined(const struct fanout *f, size_t i);

#endif
