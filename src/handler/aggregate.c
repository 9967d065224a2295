/* The aggregate endpoints: a request's plan is built, run by a fan-out while the request is
 * parked, and answered with the join. */
#include "agg.h"
#include "config.h"
#include "fanout.h"
#include "httpd.h"
#include "plan.h"
#include "request.h"
#include "site.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JSON_TYPE "application/json"

static void unlink_aggregate(struct request *q)
{
    struct router *rt = q->rt;
    if (q->prev != NULL)
        q->prev->next = q->next;
    else if (rt->aggregates == q)
        rt->aggregates = q->next;
    if (q->next != NULL)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

static void on_join_ready(void *arg, int status, char *body, size_t len)
{
    struct request *q = arg;
    unlink_aggregate(q);
    if (body == NULL)
        httpd_respond_error(q->hr, 500, "internal", "out of memory", NULL, 0);
    else
        httpd_respond(q->hr, status, JSON_TYPE, body, len, HTTPD_MEM_OWNED, NULL, 0);
}

void aggregate_serve(struct request *q)
{
    struct router *rt = q->rt;
    if (rt->expired) {
        httpd_respond_error(q->hr, 503, "draining", "the server is shutting down", NULL, 0);
        return;
    }
    const char *target = httpd_req_target(q->hr);
    const char *query = target != NULL ? strchr(target, '?') : NULL;
    struct plan_request preq = {query != NULL ? query + 1 : NULL, (const char *const *)q->params};
    struct plan *plan;
    char why[300];
    int rc = plan_build(q->ep, &preq, &plan, why, sizeof why);
    if (rc == -EINVAL) {
        httpd_respond_error(q->hr, 400, "bad_request", why, NULL, 0);
        return;
    }
    if (rc < 0) {
        httpd_respond_error(q->hr, 500, "internal", "out of memory", NULL, 0);
        return;
    }
    if (httpd_park(q->hr) < 0) { /* the client has already left: ends as 499 */
        plan_destroy(plan);
        return;
    }
    struct fanout_env env = {rt->env.base, rt->env.flights, q->site->series, rt->env.worker, NULL};
    q->fanout = fanout_start(&env, plan, httpd_req_id(q->hr), on_join_ready, q);
    if (q->fanout == NULL) {
        httpd_respond_error(q->hr, 500, "internal", "out of memory", NULL, 0);
        return;
    }
    q->next = rt->aggregates;
    if (rt->aggregates != NULL)
        rt->aggregates->prev = q;
    rt->aggregates = q;
}

void aggregate_gone(struct request *q)
{
    unlink_aggregate(q);
    if (q->fanout != NULL)
        fanout_cancel(q->fanout);
}

void aggregate_release(struct request *q)
{
    unlink_aggregate(q);
    fanout_destroy(q->fanout);
    q->fanout = NULL;
}

void aggregate_expire(struct router *rt, const char *why)
{
    for (struct request *q = rt->aggregates; q != NULL; q = q->next)
        fanout_expire(q->fanout, why);
}

size_t aggregate_nlegs(const struct request *q)
{
    return q->fanout != NULL ? fanout_plan(q->fanout)->ncalls : 0;
}

static const char *result_name(const struct agg *a, size_t i, bool client_gone, bool started)
{
    switch (agg_state_of(a, i)) {
    case AGG_DONE:
        return "ok";
    case AGG_CANCELLED:
        if (client_gone)
            return started ? "cancelled" : "not_started";
        return errkind_name(agg_error_of(a, i));
    case AGG_FAILED:
        return errkind_name(agg_error_of(a, i));
    default:
        return "running";
    }
}

void aggregate_leg(const void *arg, size_t i, struct access_leg *out)
{
    const struct request *q = arg;
    const struct fanout *f = q->fanout;
    const struct agg *a = fanout_agg(f);
    const struct plan_call *call = &fanout_plan(f)->calls[i];
    *out = (struct access_leg){
        .name = plan_call_name(call),
        .item = call->item,
        .result = result_name(a, i, q->client_gone, fanout_call_started(f, i)),
        .status = agg_status_of(a, i),
        .usec = fanout_call_usec(f, i),
        .joined = fanout_call_joined(f, i),
        .dependent = call->ndeps > 0 && fanout_call_started(f, i),
        .start_usec = fanout_call_start_usec(f, i),
    };
}
