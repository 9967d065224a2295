#include "fanout.h"

#include "agg.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "flight.h"
#include "metrics.h"
#include "plan.h"
#include "reqid.h"
#include "upstream.h"

#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How much longer than the deadline a call that would reach it is given. */
#define DEADLINE_SLACK_MS 250

struct leg {
    struct fanout *f;
    size_t index;            /* of its call in the plan, and of its slot in the agg */
    struct flight_wait wait; /* wait.active until finished or cancelled */
    bool joined;             /* shares a transfer another request started */
    uint64_t t0, usec;       /* t0: when it started; 0 while it waits for a slot */
    char *url;               /* a chained call's URL, built when it starts; owned */
    bool told;               /* env.settled was called for it */
};

struct fanout {
    struct fanout_env env;
    struct plan *plan; /* owned */
    struct agg *agg;
    struct event *ev; /* the deadline; also activated by hand when all are done */
    fanout_done_fn done;
    void *arg;
    bool finished;      /* done() was called, or the fanout was cancelled */
    bool progressing;   /* in progress(): completions met on the way are handled by its loop */
    bool starting;      /* in fanout_start(): its caller does not hold the fanout yet */
    struct event *tell; /* env.settled for calls that settled inside fanout_start(); lazily */
    uint64_t t0;
    char request_id[REQID_MAX + 1];
    struct leg legs[];
};

static struct metrics_backend *series_of(const struct fanout *f, size_t i)
{
    return f->env.series->backend[f->plan->calls[i].be->id];
}

static void record(struct fanout *f, struct leg *leg, enum errkind kind)
{
    leg->usec = clock_now(f->env.clock) - leg->t0;
    metrics_backend_done(series_of(f, leg->index), f->env.worker, kind, leg->usec);
}

/* Tells env.settled of every call that settled since the last time: completions, failures to
 * start, cut-offs, and dependents that failed with their dependency inside the state machine. */
static void tell_settled(struct fanout *f)
{
    if (f->env.settled == NULL)
        return;
    for (size_t i = 0; i < f->plan->ncalls && !f->finished; i++) {
        enum agg_state st = agg_state_of(f->agg, i);
        if (!f->legs[i].told && st != AGG_PENDING && st != AGG_RUNNING) {
            f->legs[i].told = true;
            f->env.settled(f->arg, i);
        }
    }
}

static void on_tell(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tell_settled(arg);
}

/* Calls that settle inside fanout_start() (a transfer that could not start) are told from the
 * loop, as the header promises: the caller does not hold the fanout before it returns. Should
 * the event not be made, the completion tells them (on_event()). */
static void tell_later(struct fanout *f)
{
    bool any = false;
    for (size_t i = 0; i < f->plan->ncalls && !any; i++) {
        enum agg_state st = agg_state_of(f->agg, i);
        any = !f->legs[i].told && st != AGG_PENDING && st != AGG_RUNNING;
    }
    if (!any || f->env.settled == NULL)
        return;
    if (f->tell == NULL && (f->tell = evtimer_new(f->env.base, on_tell, f)) == NULL)
        return;
    event_active(f->tell, EV_TIMEOUT, 0);
}

static void maybe_finish(struct fanout *f)
{
    if (agg_done(f->agg) && !f->finished)
        event_active(f->ev, EV_TIMEOUT, 0);
}

/* Stops every running leg, marking it with `kind` (ERRKIND_NONE: a client cancel, not counted
 * as an upstream error), and settles every call not yet finished, started or not. */
static void stop_legs(struct fanout *f, enum errkind kind, const char *why)
{
    for (size_t i = 0; i < agg_count(f->agg); i++) {
        struct leg *leg = &f->legs[i];
        if (leg->wait.active) {
            flight_leave(&leg->wait);
            if (kind != ERRKIND_NONE)
                record(f, leg, kind);
            else
                leg->usec = clock_now(f->env.clock) - leg->t0;
        }
        agg_cancel(f->agg, i, kind != ERRKIND_NONE ? kind : ERRKIND_TRANSFER, why);
    }
}

static void start_leg(struct fanout *f, size_t i);

/* Moves the request on after any change: ends it at once when a failure decided it (fail_fast,
 * a required call), else starts what the state machine lets start (concurrency slots), then
 * completes once nothing is left. A call that fails to start can decide the request too, and
 * a completion can arrive while this runs only from the loop, never from inside it, so one
 * loop here suffices. */
static void progress(struct fanout *f)
{
    if (f->finished || f->progressing)
        return;
    f->progressing = true;
    for (;;) {
        if (agg_decided(f->agg)) {
            const struct plan_call *c = &f->plan->calls[agg_decider(f->agg)];
            char why[320];
            if (c->item != NULL)
                snprintf(why, sizeof why, "the request ended early: item \"%.200s\" failed",
                         c->item);
            else
                snprintf(why, sizeof why, "the request ended early: backend \"%.200s\" failed",
                         plan_call_name(c));
            stop_legs(f, ERRKIND_CANCELLED, why);
            break;
        }
        size_t i = agg_next(f->agg);
        if (i == AGG_NONE)
            break;
        start_leg(f, i);
    }
    f->progressing = false;
    if (f->starting)
        tell_later(f);
    else
        tell_settled(f);
    maybe_finish(f);
}

static void on_leg_done(void *arg, struct upstream_result *res)
{
    struct leg *leg = arg;
    struct fanout *f = leg->f;
    if (res->error == ERRKIND_NONE)
        agg_complete(f->agg, leg->index, res->status, res->body, res->len);
    else
        agg_fail(f->agg, leg->index, res->error, res->message);
    if (res->tls != TLSFAIL_NONE)
        metrics_backend_tls_failure(series_of(f, leg->index), f->env.worker, res->tls);
    record(f, leg, agg_error_of(f->agg, leg->index));
    progress(f);
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct fanout *f = arg;
    (void)fd;
    (void)what;
    if (f->finished)
        return;
    if (!agg_done(f->agg)) {
        char why[96];
        snprintf(why, sizeof why, "endpoint deadline of %ld ms reached", f->plan->deadline_ms);
        stop_legs(f, ERRKIND_TIMEOUT, why);
    }
    tell_settled(f); /* also what settled inside fanout_start(), if on_tell() has not run */
    f->finished = true;
    if (f->env.no_join) {
        struct buf none = BUF_INIT;
        int status = agg_render(f->agg, &none); /* the status alone would do; it is cheap */
        buf_finish(&none);
        f->done(f->arg, status < 0 ? 500 : status, NULL, 0);
        return;
    }
    struct buf out = BUF_INIT;
    int status = agg_render(f->agg, &out);
    if (status < 0) {
        buf_finish(&out);
        f->done(f->arg, 500, NULL, 0);
        return;
    }
    size_t len;
    char *body = buf_steal(&out, &len);
    f->done(f->arg, body ? status : 500, body, body ? len : 0);
}

/* A call's own timeout, unless it would reach the deadline: then the deadline must decide,
 * or curl's timer and the deadline's could fire in either order, and under fail_fast a call
 * timing out just first would read as the failure that cancelled the rest. So the transfer
 * gets a little longer than the whole deadline (so longer than what is left), and the deadline
 * cuts it off as a timeout. Not what is left plus the slack: the timeout is part of what
 * coalescing matches (flight.h), and a call that starts after its request did (a dependent, a
 * call that waited for a slot) would then differ from every other request's by the
 * milliseconds each had used, and never be shared. */
static long call_timeout(const struct fanout *f, const struct plan_call *call, uint64_t now)
{
    uint64_t elapsed_ms = (now - f->t0) / 1000;
    long left = f->plan->deadline_ms - (long)elapsed_ms;
    if (left < 1)
        left = 1;
    return call->timeout_ms < left ? call->timeout_ms : f->plan->deadline_ms + DEADLINE_SLACK_MS;
}

static void start_leg(struct fanout *f, size_t i)
{
    const struct plan_call *call = &f->plan->calls[i];
    struct leg *leg = &f->legs[i];
    leg->f = f;
    leg->index = i;
    leg->t0 = clock_now(f->env.clock);
    if (call->chained) {
        char why[512];
        int rc = plan_chain_url(f->plan, i, f->agg, &leg->url, why, sizeof why);
        if (rc < 0) {
            agg_fail(f->agg, i, rc == -EINVAL ? ERRKIND_DEPENDENCY : ERRKIND_TRANSFER,
                     rc == -EINVAL ? why : "out of memory building the upstream URL");
            record(f, leg, agg_error_of(f->agg, i));
            return;
        }
    }
    struct upstream_req req = {leg->url ? leg->url : call->url,
                               call_timeout(f, call, leg->t0),
                               call->max_body,
                               call->headers,
                               call->nheaders,
                               f->request_id,
                               call->be->tls,
                               NULL,
                               0};
    if (f->plan->concurrency > 0)
        metrics_slot_wait(series_of(f, i), f->env.worker, leg->t0 - f->t0);
    agg_start(f->agg, i);
    if (flight_join(f->env.flights, &leg->wait, call->coalesce, &req, on_leg_done, leg,
                    &leg->joined) < 0) {
        agg_fail(f->agg, i, ERRKIND_TRANSFER, "could not start the upstream request");
        record(f, leg, ERRKIND_TRANSFER);
    }
    if (leg->joined)
        metrics_backend_joined(series_of(f, i), f->env.worker);
}

struct fanout *fanout_start(const struct fanout_env *env, struct plan *plan, const char *request_id,
                            fanout_done_fn done, void *arg)
{
    struct fanout *f = calloc(1, sizeof *f + plan->ncalls * sizeof f->legs[0]);
    if (f == NULL) {
        plan_destroy(plan);
        return NULL;
    }
    f->env = *env;
    f->plan = plan;
    f->done = done;
    f->arg = arg;
    snprintf(f->request_id, sizeof f->request_id, "%s", request_id);
    f->agg = agg_create(plan);
    f->ev = evtimer_new(env->base, on_event, f);
    if (f->agg == NULL || f->ev == NULL) {
        fanout_destroy(f);
        return NULL;
    }
    long ms = plan->deadline_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(f->ev, &tv);
    f->t0 = clock_now(env->clock);
    f->starting = true;
    progress(f);
    f->starting = false;
    return f;
}

void fanout_cancel(struct fanout *f)
{
    if (f->finished)
        return;
    f->finished = true;
    event_del(f->ev);
    stop_legs(f, ERRKIND_NONE, "client went away");
}

void fanout_expire(struct fanout *f, const char *why)
{
    if (f->finished)
        return;
    stop_legs(f, ERRKIND_TIMEOUT, why);
    tell_settled(f);
    maybe_finish(f);
}

void fanout_destroy(struct fanout *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; f->agg != NULL && i < agg_count(f->agg); i++) {
        flight_leave(&f->legs[i].wait);
        free(f->legs[i].url);
    }
    if (f->ev != NULL)
        event_free(f->ev);
    if (f->tell != NULL)
        event_free(f->tell);
    agg_destroy(f->agg);
    plan_destroy(f->plan);
    free(f);
}

const struct plan *fanout_plan(const struct fanout *f)
{
    return f->plan;
}

const struct agg *fanout_agg(const struct fanout *f)
{
    return f->agg;
}

uint64_t fanout_call_usec(const struct fanout *f, size_t i)
{
    const struct leg *leg = &f->legs[i];
    return leg->wait.active ? clock_now(f->env.clock) - leg->t0 : leg->usec;
}

bool fanout_call_started(const struct fanout *f, size_t i)
{
    return f->legs[i].f != NULL;
}

uint64_t fanout_call_start_usec(const struct fanout *f, size_t i)
{
    return f->legs[i].f != NULL ? f->legs[i].t0 - f->t0 : 0;
}

bool fanout_call_joined(const struct fanout *f, size_t i)
{
    return f->legs[i].joined;
}
