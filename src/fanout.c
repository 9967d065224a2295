#include "fanout.h"

#include "agg.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "flight.h"
#include "metrics.h"
#include "upstream.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct leg {
    struct fanout *f;
    size_t index;
    struct flight_wait wait; /* wait.active until finished or cancelled */
    bool joined;             /* shares a transfer another request started */
    uint64_t t0, usec;
};

struct fanout {
    struct fanout_env env;
    const struct config_endpoint *ep;
    struct agg *agg;
    struct event *ev; /* the endpoint deadline; also activated by hand when all are done */
    fanout_done_fn done;
    void *arg;
    bool finished; /* done() was called, or the fanout was cancelled */
    char request_id[132];
    struct leg legs[];
};

static void record(struct fanout *f, struct leg *leg, enum agg_error kind)
{
    leg->usec = clock_us() - leg->t0;
    metrics_backend_done(f->ep->backends[leg->index].stats, f->env.worker, kind, leg->usec);
}

static void maybe_finish(struct fanout *f)
{
    if (agg_done(f->agg) && !f->finished)
        event_active(f->ev, EV_TIMEOUT, 0);
}

static void on_leg_done(void *arg, struct upstream_result *res)
{
    struct leg *leg = arg;
    struct fanout *f = leg->f;
    if (res->error == AGG_E_NONE)
        agg_complete(f->agg, leg->index, res->status, res->body, res->len);
    else
        agg_fail(f->agg, leg->index, res->error, res->message);
    record(f, leg, agg_error_of(f->agg, leg->index));
    maybe_finish(f);
}

/* Stops every running leg, marking it with `kind` (AGG_E_NONE: a client cancel, not counted as
 * an upstream error). */
static void stop_legs(struct fanout *f, enum agg_error kind, const char *why)
{
    for (size_t i = 0; i < agg_count(f->agg); i++) {
        struct leg *leg = &f->legs[i];
        if (leg->wait.active) {
            flight_leave(&leg->wait);
            if (kind != AGG_E_NONE)
                record(f, leg, kind);
            else
                leg->usec = clock_us() - leg->t0;
        }
        agg_cancel(f->agg, i, kind != AGG_E_NONE ? kind : AGG_E_TRANSFER, why);
    }
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
        snprintf(why, sizeof why, "endpoint deadline of %ld ms reached", f->ep->timeout_ms);
        stop_legs(f, AGG_E_TIMEOUT, why);
    }
    f->finished = true;
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

struct fanout *fanout_start(const struct fanout_env *env, const struct config_endpoint *ep,
                            const char *request_id, fanout_done_fn done, void *arg)
{
    struct fanout *f = calloc(1, sizeof *f + ep->nbackends * sizeof f->legs[0]);
    if (f == NULL)
        return NULL;
    f->env = *env;
    f->ep = ep;
    f->done = done;
    f->arg = arg;
    snprintf(f->request_id, sizeof f->request_id, "%s", request_id);
    f->agg = agg_create(ep);
    f->ev = evtimer_new(env->base, on_event, f);
    if (f->agg == NULL || f->ev == NULL) {
        fanout_destroy(f);
        return NULL;
    }
    struct timeval tv = {ep->timeout_ms / 1000, (ep->timeout_ms % 1000) * 1000};
    evtimer_add(f->ev, &tv);

    for (size_t i = 0; i < ep->nbackends; i++) {
        const struct config_backend *be = &ep->backends[i];
        struct leg *leg = &f->legs[i];
        struct upstream_req req = {be->url,     be->timeout_ms, be->max_body_bytes,
                                   be->headers, be->nheaders,   f->request_id};
        leg->f = f;
        leg->index = i;
        leg->t0 = clock_us();
        agg_start(f->agg, i);
        if (flight_join(env->flights, &leg->wait, be->coalesce ? be : NULL, &req, on_leg_done, leg,
                        &leg->joined) < 0) {
            agg_fail(f->agg, i, AGG_E_TRANSFER, "could not start the upstream request");
            record(f, leg, AGG_E_TRANSFER);
        }
        if (leg->joined)
            metrics_backend_joined(be->stats, env->worker);
    }
    maybe_finish(f);
    return f;
}

void fanout_cancel(struct fanout *f)
{
    if (f->finished)
        return;
    f->finished = true;
    event_del(f->ev);
    stop_legs(f, AGG_E_NONE, "client went away");
}

void fanout_expire(struct fanout *f, const char *why)
{
    if (f->finished)
        return;
    stop_legs(f, AGG_E_TIMEOUT, why);
    maybe_finish(f);
}

void fanout_destroy(struct fanout *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; f->agg != NULL && i < agg_count(f->agg); i++)
        flight_leave(&f->legs[i].wait);
    if (f->ev != NULL)
        event_free(f->ev);
    agg_destroy(f->agg);
    free(f);
}

const struct agg *fanout_agg(const struct fanout *f)
{
    return f->agg;
}

uint64_t fanout_backend_usec(const struct fanout *f, size_t i)
{
    const struct leg *leg = &f->legs[i];
    return leg->wait.active ? clock_us() - leg->t0 : leg->usec;
}

bool fanout_backend_joined(const struct fanout *f, size_t i)
{
    return f->legs[i].joined;
}
