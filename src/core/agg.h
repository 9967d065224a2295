/* The aggregation core: one request's fan-out as an explicit state machine over the calls of
 * its plan (plan.h), and the join of their answers. It does no I/O and knows no sockets or
 * clocks; the caller (handler/fanout.c) starts the calls agg_next() names, feeds their
 * outcomes in, ends the request when agg_decided() says a failure settled it, and renders once
 * agg_done() says so. Slot i is the plan's call i.
 *
 *   PENDING --agg_start--> RUNNING --agg_complete--> DONE | FAILED
 *                             |   \--agg_fail------> FAILED
 *   PENDING|RUNNING --agg_cancel--> CANCELLED (counts as failed in the join)
 *
 * The plan's policies are transitions of the machine, not of its caller:
 * - concurrency: agg_next() names a PENDING call only while fewer than the plan's limit run,
 *   always the first one in plan order, so calls start in waves as slots free;
 * - fail_fast and required: the first FAILED call (any, under fail_fast; a required one,
 *   otherwise) decides the request: agg_decided() turns true, agg_next() names nothing more,
 *   and the join answers 502 whatever else finished.
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

/* agg_next() when no call may start now. */
#define AGG_NONE ((size_t)-1)

struct agg;

/* Creates the machine for the plan's calls, all PENDING. The plan is borrowed and must outlive
 * the agg. NULL when out of memory. */
struct agg *agg_create(const struct plan *plan);

/* Frees the agg and every body it still holds; accepts NULL. */
void agg_destroy(struct agg *a);

size_t agg_count(const struct agg *a);
const struct plan *agg_plan(const struct agg *a);
enum agg_state agg_state_of(const struct agg *a, size_t i);
enum errkind agg_error_of(const struct agg *a, size_t i);
long agg_status_of(const struct agg *a, size_t i);

/* The call to start next: the first PENDING one whose dependencies (plan.h) have all
 * succeeded, when a concurrency slot is free and nothing has decided the request; AGG_NONE
 * otherwise. A PENDING call whose dependency did not succeed never starts: it fails at once
 * with error kind "dependency", and so do its own dependents (unless the failure that caused it
 * decided the request, which then cancels them). */
size_t agg_next(const struct agg *a);

/* Calls RUNNING now. */
size_t agg_running(const struct agg *a);

/* PENDING -> RUNNING. */
int agg_start(struct agg *a, size_t i);

/* RUNNING -> DONE when status is 2xx and body holds one JSON value, else FAILED with
 * http_status or invalid_json. Takes ownership of body (malloc'd, may be NULL when len is 0)
 * in every case, including errors. */
int agg_complete(struct agg *a, size_t i, long status, char *body, size_t len);

/* RUNNING (or PENDING: a call that could not be started) -> FAILED with an error of `kind`.
 * `message` is copied (may be NULL: a default text for the kind is used). */
int agg_fail(struct agg *a, size_t i, enum errkind kind, const char *message);

/* PENDING or RUNNING -> CANCELLED, reported in the join as error `kind` with `message`. */
int agg_cancel(struct agg *a, size_t i, enum errkind kind, const char *message);

/* Whether a failure has decided the answer (fail_fast, or a required call): the caller ends the
 * request at once, cancelling what is left. */
bool agg_decided(const struct agg *a);

/* The call whose failure decided the request, or AGG_NONE. */
size_t agg_decider(const struct agg *a);

/* The validated body of a DONE call, its JSON value in [*s, *s + *n). -EINVAL otherwise. */
int agg_body_of(const struct agg *a, size_t i, const char **s, size_t *n);

/* Frees every body the agg holds, once the answer is rendered: the per-call bodies would
 * otherwise stay beside the rendered join until the request is done, doubling what a client
 * that reads slowly holds. States, errors and statuses stay; agg_body_of(), agg_render() and
 * agg_render_call() return -EINVAL afterwards. */
void agg_drop_bodies(struct agg *a);

/* Calls not yet in a terminal state. */
size_t agg_remaining(const struct agg *a);
static inline bool agg_done(const struct agg *a)
{
    return agg_remaining(a) == 0;
}

/* Appends call i, settled, as one JSON object: its label ("index" or "item"), "name", then
 * "result" (its answer) or "error", "message" and, for http_status, "status". For streamed
 * answers, one object a line. 0 or -ENOMEM; -EINVAL when the call has not settled. */
int agg_render_call(const struct agg *a, size_t i, struct buf *out);

/* Appends the join {"results":...,"errors":[...]} to out and returns the HTTP status it
 * deserves. "results" is an array in plan order, or for an "each" plan an object keyed by
 * item; each error carries the call's "index" (or "item") and its name. The status: 502 when a
 * failure decided the request, or under fail_fast when any call did not succeed, or when a
 * required call did not, or when none succeeded; else 200. Call once agg_done(). A negative
 * errno on allocation failure. */
int agg_render(const struct agg *a, struct buf *out);

#endif
