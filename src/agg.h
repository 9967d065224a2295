/* The aggregation core: one request's fan-out as an explicit state machine over its backends,
 * and the join of their answers. It does no I/O and knows no sockets or clocks; the caller
 * (fanout.c) starts transfers, feeds their outcomes in, and renders once agg_done() says so.
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

struct buf;
struct config_endpoint;

enum agg_state { AGG_PENDING, AGG_RUNNING, AGG_DONE, AGG_FAILED, AGG_CANCELLED };

enum agg_error {
    AGG_E_NONE,
    AGG_E_TIMEOUT,
    AGG_E_CONNECT,
    AGG_E_HTTP_STATUS,
    AGG_E_INVALID_JSON,
    AGG_E_TOO_LARGE,
    AGG_E_TRANSFER,
    AGG_E_COUNT
};

struct agg;

/* Creates the machine for `ep`'s backends, all PENDING. `ep` is borrowed and must outlive the
 * agg (the request holds a reference to its config). NULL when out of memory. */
struct agg *agg_create(const struct config_endpoint *ep);

/* Frees the agg and every body it still holds; accepts NULL. */
void agg_destroy(struct agg *a);

size_t agg_count(const struct agg *a);
enum agg_state agg_state_of(const struct agg *a, size_t i);
enum agg_error agg_error_of(const struct agg *a, size_t i);
long agg_status_of(const struct agg *a, size_t i);

/* PENDING -> RUNNING. */
int agg_start(struct agg *a, size_t i);

/* RUNNING -> DONE when status is 2xx and body holds one JSON value, else FAILED with
 * http_status or invalid_json. Takes ownership of body (malloc'd, may be NULL when len is 0)
 * in every case, including errors. */
int agg_complete(struct agg *a, size_t i, long status, char *body, size_t len);

/* RUNNING -> FAILED with a transport error. `message` is copied (may be NULL: a default text
 * for the kind is used). */
int agg_fail(struct agg *a, size_t i, enum agg_error kind, const char *message);

/* PENDING or RUNNING -> CANCELLED, reported in the join as error `kind` with `message`. */
int agg_cancel(struct agg *a, size_t i, enum agg_error kind, const char *message);

/* Backends not yet in a terminal state. */
size_t agg_remaining(const struct agg *a);
static inline bool agg_done(const struct agg *a)
{
    return agg_remaining(a) == 0;
}

/* Appends the join {"results":[...],"errors":[...]} to out and returns the HTTP status it
 * deserves: 200 when at least one backend is DONE, 502 otherwise. Call once agg_done(). A
 * negative errno on allocation failure. */
int agg_render(const struct agg *a, struct buf *out);

/* Stable lower-case names used in answers, logs and metrics ("timeout", ...). */
const char *agg_error_name(enum agg_error kind);

#endif
