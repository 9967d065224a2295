/* The aggregate endpoints: a request's plan is built, run by a fan-out while the request is
 * parked, and answered with the join; or, when the client asks for a stream (Accept:
 * application/x-ndjson or text/event-stream), answered at once with the headers and then a
 * line per call as each settles, and a closing line. */
#include "agg.h"
#include "config.h"
#include "fanout.h"
#include "httpd.h"
#include "plan.h"
#include "request.h"
#include "site.h"
#include "stream.h"

#include "buf.h"
#include <event2/event.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define JSON_TYPE "application/json"

/* Comment lines on an idle SSE stream, so that proxies do not cut it. */
#define SSE_KEEPALIVE_S 15

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

static void stream_write(struct request *q, struct buf *b)
{
    if (b->len > 0)
        httpd_stream_write(q->hr, b->data, b->len); /* -EPIPE: gone; the hooks clean up */
    if (q->keepalive != NULL) {
        struct timeval tv = {SSE_KEEPALIVE_S, 0};
        evtimer_add(q->keepalive, &tv); /* restarts: comments only while nothing else goes */
    }
}

static void on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    struct request *q = arg;
    (void)fd;
    (void)what;
    struct buf b = {(char *)STREAM_KEEPALIVE, sizeof STREAM_KEEPALIVE - 1, 0};
    stream_write(q, &b);
}

/* A call settled: its line goes out now. */
static void on_settled(void *arg, size_t i)
{
    struct request *q = arg;
    const struct agg *a = fanout_agg(q->fanout);
    struct buf b = BUF_INIT;
    if (agg_state_of(a, i) == AGG_DONE)
        q->ok++;
    else
        q->failed++;
    if (stream_append_call(&b, q->stream, a, i) == 0)
        stream_write(q, &b);
    buf_finish(&b);
}

static void on_join_ready(void *arg, int status, char *body, size_t len)
{
    struct request *q = arg;
    unlink_aggregate(q);
    if (q->stream != STREAM_NONE) {
        struct buf b = BUF_INIT;
        (void)status;
        if (stream_append_done(&b, q->stream, q->ok, q->failed) == 0)
            stream_write(q, &b);
        buf_finish(&b);
        if (q->keepalive != NULL)
            evtimer_del(q->keepalive);
        httpd_stream_end(q->hr);
        return;
    }
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
    /* Answers already rendered wait for clients that do not read them: another one would grow
     * memory without bound (each is up to the sum of its backends' bodies). */
    if (httpd_unsent_bytes(q->hr) >= q->site->cfg->max_unsent_answer_bytes) {
        static const struct httpd_header retry = {"Retry-After", "1"};
        httpd_respond_error(q->hr, 503, "overloaded",
                            "too many answers are waiting for their clients to read them", &retry,
                            1);
        return;
    }
    if (!httpd_req_is_head(q->hr))
        q->stream = stream_negotiate(httpd_req_header(q->hr, "Accept"));
    if (q->stream == STREAM_NONE && cached_serve(q)) /* streams bypass the cache */
        return;
    struct plan_request preq = {request_query(q), (const char *const *)q->params};
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
    struct fanout_env env = {
        rt->env.base, rt->env.flights, q->site->series, rt->env.worker, NULL, NULL, false};
    if (q->stream != STREAM_NONE) {
        /* nginx buffers a proxied answer unless told not to; SSE asks for no-cache. */
        const struct httpd_header h[] = {{"X-Accel-Buffering", "no"},
                                         {"Cache-Control", "no-cache"}};
        if (q->stream == STREAM_SSE &&
            (q->keepalive = evtimer_new(rt->env.base, on_keepalive, q)) == NULL) {
            plan_destroy(plan);
            httpd_respond_error(q->hr, 500, "internal", "out of memory", NULL, 0);
            return;
        }
        if (httpd_stream_begin(q->hr, 200, stream_content_type(q->stream), h,
                               q->stream == STREAM_SSE ? 2 : 1) < 0) {
            plan_destroy(plan); /* not even the headers could be queued: closed unanswered */
            return;
        }
        env.settled = on_settled;
        env.no_join = true;
        stream_write(q, &(struct buf)BUF_INIT); /* arms the keep-alive */
    } else if (httpd_park(q->hr) < 0) {         /* the client has already left: ends as 499 */
        plan_destroy(plan);
        return;
    }
    q->fanout = fanout_start(&env, plan, httpd_req_id(q->hr), on_join_ready, q);
    if (q->fanout == NULL) {
        if (q->stream != STREAM_NONE)
            httpd_stream_end(q->hr);
        else
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
    cached_release(q);
    unlink_aggregate(q);
    if (q->fanout != NULL)
        fanout_cancel(q->fanout);
}

void aggregate_release(struct request *q)
{
    cached_release(q);
    unlink_aggregate(q);
    fanout_destroy(q->fanout);
    q->fanout = NULL;
    if (q->keepalive != NULL)
        event_free(q->keepalive);
    q->keepalive = NULL;
}

void aggregate_expire(struct router *rt, const char *why)
{
    for (struct request *q = rt->aggregates; q != NULL; q = q->next)
        fanout_expire(q->fanout, why);
    cached_expire_fills(rt, why);
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
