/* One aggregate request in flight: starts a transfer per backend (or, for a backend that
 * coalesces, joins one already running: flight.h), feeds outcomes into the
 * aggregation state machine, enforces the endpoint deadline, and hands back the rendered join.
 * Everything runs on the worker's loop; the completion callback always arrives from the loop,
 * never from inside fanout_start(), so callers need not guard against re-entry. */
#ifndef GATHERD_FANOUT_H
#define GATHERD_FANOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agg;
struct config_endpoint;
struct event_base;
struct flights;

struct fanout_env {
    struct event_base *base;
    struct flights *flights; /* every leg starts through it, shared or not */
    unsigned worker;         /* metrics block to record into */
};

struct fanout;

/* The join is ready: status is 200 or 502 (500 with body NULL if rendering ran out of memory);
 * body (malloc'd) passes to the callee. Called once; the fanout stays alive for inspection
 * until fanout_destroy(). */
typedef void (*fanout_done_fn)(void *arg, int status, char *body, size_t len);

/* Starts every backend of `ep` (borrowed; must outlive the fanout). `request_id` is copied.
 * NULL when out of memory. */
struct fanout *fanout_start(const struct fanout_env *env, const struct config_endpoint *ep,
                            const char *request_id, fanout_done_fn done, void *arg);

/* The client is gone: cancels every running transfer at once; no callback follows. */
void fanout_cancel(struct fanout *f);

/* Cuts off backends still running as `timeout` errors with `why`, then completes as usual
 * (asynchronously). For the drain limit. */
void fanout_expire(struct fanout *f, const char *why);

/* Cancels what still runs and frees; accepts NULL. */
void fanout_destroy(struct fanout *f);

const struct agg *fanout_agg(const struct fanout *f);
/* Microseconds backend i took (so far, if it has not finished). */
uint64_t fanout_backend_usec(const struct fanout *f, size_t i);
/* Whether backend i joined a transfer another request had started (flight.h). */
bool fanout_backend_joined(const struct fanout *f, size_t i);

#endif
