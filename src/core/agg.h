/* The aggregation core: one request's fan-out as an explicit state machine over the calls of
 * its plan (plan.h), and the join of their answers. It does no I/O and knows no sockets or
 * clocks; the caller (handler/fanout.c) starts transfers, feeds their outcomes in, and renders
 * once agg_done() says so. Slot i is the plan's call i.
 *
 *   PENDING --agg_start--> RUNNING --agg_complete--> DONE | FAILED
 *                             |   \--agg_fail------> FAILED
 *   PENDING|RUNNING --agg_cancel--> CANCELLED (counts as failed in the join)
 *
 * Every transition from a terminal state is refused (-EALREADY), so a late or duplicate
 * completion can never corrupt an answer. */
#ifndef GATHERD_AGG_H
#define GATHERD_AGG_H

#include <stdbool.h>
#include <stddef.h>

#include "errkind.h"

struct buf;
struct plan;

enum agg_state { AGG_PENDING, AGG_RUNNING, AGG_DONE, AGG_FAILED, AGG_CANCELLED };

struct agg;

/* Creates the machine for the plan's calls, all PENDING. The plan is borrowed and must outlive
 * the agg. NULL when out of memory. */
struct agg *agg_create(const struct plan *plan);

/* Frees the agg and every body it still holds; accepts NULL. */
void agg_destroy(struct agg *a);

size_t agg_count(const struct agg *a);
enum agg_state agg_state_of(const struct agg *a, size_t i);
enum errkind agg_error_of(const struct agg *a, size_t i);
long agg_status_of(const struct agg *a, size_t i);

/* PENDING -> RUNNING. */
int agg_start(struct agg *a, size_t i);

/* RUNNING -> DONE when status is 2xx and body holds one JSON value, else FAILED with
 * http_status or invalid_json. Takes ownership of body (malloc'd, may be NULL when len is 0)
 * in every case, including errors. */
int agg_complete(struct agg *a, size_t i, long status, char *body, size_t len);

/* RUNNING -> FAILED with a transport error. `message` is copied (may be NULL: a default text
 * for the kind is used). */
int agg_fail(struct agg *a, size_t i, enum errkind kind, const char *message);

/* PENDING or RUNNING -> CANCELLED, reported in the join as error `kind` with `message`. */
int agg_cancel(struct agg *a, size_t i, enum errkind kind, const char *message);

/* Calls not yet in a terminal state. */
size_t agg_remaining(const struct agg *a);
static inline bool agg_done(const struct agg *a)
{
    return agg_remaining(a) == 0;
}

/* Appends the join {"results":[...],"errors":[...]} to out and returns the HTTP status it
 * deserves: 200 when at least one call is DONE, 502 otherwise. Each call answers at its plan
 * index and its errors carry its name. Call once agg_done(). A
 * negative errno on allocation failure. */
int agg_render(const struct agg *a, struct buf *out);

#endif
