/* One aggregate request through the seams: a fake upstream behind the flight table, a clock
 * driven by hand, and a real (socket-free) event loop for the deadline and the completion.
 * Each case ends with nothing running, no flight left and the loop empty. */
#include "agg.h"
#include "clock.h"
#include "config.h"
#include "fake_upstream.h"
#include "fanout.h"
#include "flight.h"
#include "metrics.h"
#include "plan.h"
#include "site.h"
#include "tap.h"

#include <event2/event.h>
#include <stdio.h>

static uint64_t now = 1000000;
static uint64_t fake_now(void *ctx)
{
    (void)ctx;
    return now;
}
static const struct clock fake_clock = {fake_now, NULL};

struct answer {
    int calls, status;
    char *body;
};

static void on_done(void *arg, int status, char *body, size_t len)
{
    struct answer *a = arg;
    (void)len;
    a->calls++;
    a->status = status;
    free(a->body);
    a->body = body;
}

static const char cfg_json[] =
    "{\"endpoints\":[{\"path\":\"/t\",\"timeout_ms\":50,\"backends\":["
    "{\"name\":\"a\",\"url\":\"http://u/a\",\"headers\":{\"X-K\":\"1\"}},"
    "{\"name\":\"b\",\"url\":\"http://u/b\"},"
    "{\"name\":\"c\",\"url\":\"http://u/c\",\"coalesce\":true}]}]}";

struct world {
    struct event_base *base;
    struct fake_upstream up;
    struct flights *flights;
    struct metrics *metrics;
    struct config *cfg;
    struct site *site;
    struct fanout_env env;
};

static void world_init(struct world *w)
{
    char err[512];
    memset(w, 0, sizeof *w);
    w->base = event_base_new();
    w->flights = flights_create(&fake_ops, &w->up);
    w->metrics = metrics_create(1, "version=\"t\"");
    if (config_parse(cfg_json, strlen(cfg_json), "t", &w->cfg, err, sizeof err) < 0)
        printf("# %s\n", err);
    w->site = site_create(w->cfg, w->metrics, 1);
    w->env = (struct fanout_env){w->base, w->flights, w->site->series, 0, &fake_clock, NULL, false};
}

static struct fanout *start(struct world *w, const char *rid, struct answer *ans)
{
    struct plan *p;
    if (plan_build(&w->cfg->endpoints[0], &(struct plan_request){NULL, NULL}, &p, NULL, 0) < 0)
        return NULL;
    return fanout_start(&w->env, p, rid, on_done, ans);
}

/* Runs the loop until nothing is pending: the completion, or the deadline. */
static void run(struct world *w)
{
    event_base_dispatch(w->base);
}

static void world_finish(struct world *w, const char *what)
{
    ok(fake_running(&w->up) == 0 && flights_count(w->flights) == 0, "%s: nothing left running",
       what);
    ok(event_base_get_num_events(w->base, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE) == 0,
       "%s: the loop holds no event", what);
    flights_destroy(w->flights);
    site_unref(w->site);
    config_unref(w->cfg);
    metrics_destroy(w->metrics);
    event_base_free(w->base);
}

static void test_join_in_order(void)
{
    struct world w;
    world_init(&w);
    struct answer ans = {0};
    struct fanout *f = start(&w, "rid-1", &ans);
    ok(f != NULL && w.up.n == 3, "one transfer per call");
    is_str(w.up.x[0].url, "http://u/a", "call 0 goes to a's URL");
    ok(w.up.x[0].nheaders == 1 && strcmp(w.up.x[0].first_header, "X-K: 1") == 0,
       "with a's headers");
    is_str(w.up.x[2].rid, "rid-1", "the request id goes upstream");
    now += 7000;
    fake_answer(&w.up, 2, 200, "{\"c\":3}");
    now += 5000;
    fake_fail(&w.up, 1, ERRKIND_CONNECT, "refused");
    ok(ans.calls == 0, "no answer while a call runs");
    fake_answer(&w.up, 0, 200, "[1]");
    ok(ans.calls == 0, "the answer is never delivered from inside a callback");
    run(&w);
    ok(ans.calls == 1 && ans.status == 200, "answered 200 once every call is done");
    is_str(ans.body,
           "{\"results\":[[1],{},{\"c\":3}],\"errors\":[{\"index\":1,\"name\":\"b\","
           "\"error\":\"connect\",\"message\":\"refused\"}]}",
           "the join in plan order");
    ok(fanout_call_usec(f, 2) == 7000 && fanout_call_usec(f, 1) == 12000 &&
           fanout_call_usec(f, 0) == 12000,
       "per-call times from the injected clock");
    fanout_destroy(f);
    free(ans.body);
    world_finish(&w, "join");
}

static void test_deadline(void)
{
    struct world w;
    world_init(&w);
    struct answer ans = {0};
    struct fanout *f = start(&w, "rid-2", &ans);
    fake_answer(&w.up, 0, 200, "1");
    run(&w); /* the 50 ms deadline is the only event left */
    ok(ans.calls == 1 && ans.status == 200, "the deadline answers with what it has");
    ok(w.up.x[1].cancelled && w.up.x[2].cancelled, "running calls are cancelled");
    ok(agg_error_of(fanout_agg(f), 1) == ERRKIND_TIMEOUT, "and reported as timeouts");
    ok(strstr(ans.body, "endpoint deadline of 50 ms reached") != NULL, "with the reason");
    fanout_destroy(f);
    free(ans.body);
    world_finish(&w, "deadline");
}

static void test_cancel_and_coalesce(void)
{
    struct world w;
    world_init(&w);
    struct answer a1 = {0}, a2 = {0};
    struct fanout *f1 = start(&w, "one", &a1);
    struct fanout *f2 = start(&w, "two", &a2);
    ok(w.up.n == 5, "the coalescing call is shared: 3 + 2 transfers");
    ok(fanout_call_joined(f2, 2) && !fanout_call_joined(f1, 2), "the second request joined");
    fanout_cancel(f1); /* its client left */
    ok(w.up.x[0].cancelled && w.up.x[1].cancelled && !w.up.x[2].cancelled,
       "a client leaving cancels its own calls, not a shared one still wanted");
    fake_answer(&w.up, 2, 200, "{\"shared\":true}");
    fake_answer(&w.up, 3, 200, "1");
    fake_answer(&w.up, 4, 200, "2");
    run(&w);
    ok(a1.calls == 0, "a cancelled fan-out never calls back");
    ok(a2.calls == 1 && a2.status == 200 && strstr(a2.body, "{\"shared\":true}") != NULL,
       "the joined request gets the shared answer");
    fanout_destroy(f1);
    fanout_destroy(f2);
    free(a2.body);
    world_finish(&w, "cancel");
}

static void test_expire_and_start_failure(void)
{
    struct world w;
    world_init(&w);
    struct answer ans = {0};
    w.up.fail_start = true; /* call 0 cannot start */
    struct fanout *f = start(&w, "rid-3", &ans);
    ok(f != NULL && w.up.n == 2, "a call that cannot start does not stop the others");
    fanout_expire(f, "drain limit reached");
    run(&w);
    ok(ans.calls == 1 && ans.status == 502, "expired with nothing done: 502");
    ok(strstr(ans.body, "could not start the upstream request") != NULL &&
           strstr(ans.body, "drain limit reached") != NULL,
       "both reasons in the errors");
    fanout_destroy(f);
    free(ans.body);
    world_finish(&w, "expire");
}

/* A streamed fan-out: each call is told as it settles, always from the loop, never from inside
 * fanout_start(), whose caller does not hold the fan-out yet (aggregate.c reads the state
 * machine through it); a call that could not start is told too, also when nothing else runs. */
struct told {
    struct fanout **f; /* where the caller keeps the fan-out, as aggregate.c does */
    size_t order[8], n;
    int early; /* told while the caller did not hold the fan-out */
};

static void on_told(void *arg, size_t i)
{
    struct told *t = arg;
    if (*t->f == NULL)
        t->early++;
    else if (agg_state_of(fanout_agg(*t->f), i) == AGG_PENDING)
        t->early++;
    if (t->n < 8)
        t->order[t->n++] = i;
}

static void on_stream_done(void *arg, int status, char *body, size_t len)
{
    (void)len;
    struct told *t = arg;
    t->order[t->n < 8 ? t->n++ : 7] = 100 + (size_t)status; /* 100 + status: done */
    free(body);
}

static void test_stream_start_failure(void)
{
    struct world w;
    world_init(&w);
    struct fanout *f = NULL;
    struct told t = {&f, {0}, 0, 0};
    w.env.settled = on_told;
    w.env.no_join = true;
    w.up.fail_start = true; /* call 0 cannot start */
    struct plan *p;
    plan_build(&w.cfg->endpoints[0], &(struct plan_request){NULL, NULL}, &p, NULL, 0);
    f = fanout_start(&w.env, p, "rid-s", on_stream_done, &t);
    ok(f != NULL && t.n == 0, "nothing is told from inside fanout_start()");
    fake_answer(&w.up, 1, 200, "{\"c\":1}");
    fake_answer(&w.up, 0, 200, "{\"b\":1}");
    run(&w);
    ok(t.early == 0, "every call told from the loop, with the fan-out in the caller's hands");
    ok(t.n == 4 && t.order[0] == 0 && t.order[1] == 2 && t.order[2] == 1 && t.order[3] == 300,
       "told in the order they settled: the failed start first, then c, b, then done (%zu)", t.n);
    fanout_destroy(f);

    /* Every call fails to start: each is still told, then done. */
    f = NULL;
    t = (struct told){&f, {0}, 0, 0};
    plan_build(&w.cfg->endpoints[0], &(struct plan_request){NULL, NULL}, &p, NULL, 0);
    w.up.n = FAKE_MAX; /* no transfer can start */
    f = fanout_start(&w.env, p, "rid-s2", on_stream_done, &t);
    run(&w);
    ok(t.early == 0 && t.n == 4 && t.order[3] == 602,
       "three calls that could not start: three told, then done with 502 (%zu: %d %zu)", t.n,
       t.early, t.order[3]);
    fanout_destroy(f);
    w.up.n = 2;
    world_finish(&w, "stream start failure");
}

int main(void)
{
    test_join_in_order();
    test_deadline();
    test_cancel_and_coalesce();
    test_expire_and_start_failure();
    test_stream_start_failure();
    return tap_done();
}
