/* The policies of the aggregation state machine, with no sockets: the order calls may start in
 * under a concurrency limit, the slots, fail-fast and required calls deciding a request, and
 * the statuses and join they lead to. */
#include "agg.h"
#include "buf.h"
#include "config.h"
#include "plan.h"
#include "tap.h"

#include <stdlib.h>

static char *dup_s(const char *s)
{
    return strdup(s);
}

static struct config *parse(const char *json)
{
    char err[512] = "";
    struct config *cfg = NULL;
    if (config_parse(json, strlen(json), "t", &cfg, err, sizeof err) < 0)
        printf("# config: %s\n", err);
    return cfg;
}

static struct plan *plan_of(const struct config *cfg, size_t ep, const char *query)
{
    struct plan *p = NULL;
    char err[256] = "";
    if (plan_build(&cfg->endpoints[ep], &(struct plan_request){query, NULL}, &p, err, sizeof err) <
        0)
        printf("# plan: %s\n", err);
    return p;
}

#define BE(n) "{\"name\":\"" n "\",\"url\":\"http://u/" n "\"}"

static void test_slots(void)
{
    struct config *cfg =
        parse("{\"endpoints\":[{\"path\":\"/t\",\"concurrency\":2,\"backends\":[" BE("a") "," BE(
            "b") "," BE("c") "," BE("d") "," BE("e") "]}]}");
    struct plan *p = plan_of(cfg, 0, NULL);
    struct agg *a = agg_create(p);
    size_t order[5], n = 0;
    ok(agg_next(a) == 0, "the first call may start");
    agg_start(a, 0);
    ok(agg_next(a) == 1, "then the second");
    agg_start(a, 1);
    ok(agg_next(a) == AGG_NONE && agg_running(a) == 2, "both slots taken: nothing more starts");
    ok(agg_complete(a, 1, 200, dup_s("1"), 1) == 0 && agg_next(a) == 2,
       "a slot frees: the next call in plan order");
    agg_start(a, 2);
    ok(agg_fail(a, 0, ERRKIND_TIMEOUT, NULL) == 0 && agg_next(a) == 3,
       "a failure frees its slot too (partial)");
    while ((order[n] = agg_next(a)) != AGG_NONE) {
        agg_start(a, order[n]);
        n++;
    }
    ok(n == 1 && order[0] == 3 && agg_running(a) == 2, "never more than two running");
    agg_complete(a, 2, 200, dup_s("2"), 1);
    ok(agg_next(a) == 4, "the last call waits for its slot");
    agg_start(a, 4);
    agg_complete(a, 3, 200, dup_s("3"), 1);
    agg_complete(a, 4, 200, dup_s("4"), 1);
    ok(agg_done(a) && agg_running(a) == 0 && !agg_decided(a), "done, nothing running");
    struct buf out = BUF_INIT;
    ok(agg_render(a, &out) == 200, "partial with one timeout: 200");
    agg_destroy(a);
    buf_finish(&out);
    plan_destroy(p);
    config_unref(cfg);
}

static void test_fail_fast(void)
{
    struct config *cfg =
        parse("{\"endpoints\":[{\"path\":\"/t\",\"on_error\":\"fail_fast\","
              "\"concurrency\":2,\"backends\":[" BE("a") "," BE("b") "," BE("c") "]}]}");
    struct plan *p = plan_of(cfg, 0, NULL);
    struct agg *a = agg_create(p);
    agg_start(a, 0);
    agg_start(a, 1);
    ok(agg_complete(a, 0, 200, dup_s("{\"a\":1}"), 7) == 0 && !agg_decided(a),
       "a success decides nothing");
    ok(agg_complete(a, 1, 503, NULL, 0) == 0 && agg_decided(a) && agg_decider(a) == 1,
       "the first failure decides the request");
    ok(agg_next(a) == AGG_NONE, "nothing starts once decided");
    ok(agg_cancel(a, 2, ERRKIND_CANCELLED, "ended early") == 0 && agg_done(a),
       "the call never started is cancelled");
    struct buf out = BUF_INIT;
    ok(agg_render(a, &out) == 502, "502");
    is_str(out.data,
           "{\"results\":[{\"a\":1},{},{}],\"errors\":[{\"index\":1,\"name\":\"b\",\"error\":"
           "\"http_status\",\"status\":503,\"message\":\"upstream answered 503\"},{\"index\":2,"
           "\"name\":\"c\",\"error\":\"cancelled\",\"message\":\"ended early\"}]}",
           "successes in place, the failure, then the cancelled, in index order");
    agg_destroy(a);
    buf_finish(&out);

    /* Under fail_fast, a call cut off by the deadline is a failure too. */
    a = agg_create(p);
    for (size_t i = 0; i < 2; i++)
        agg_start(a, i);
    agg_complete(a, 0, 200, dup_s("1"), 1);
    agg_complete(a, 1, 200, dup_s("1"), 1);
    agg_start(a, 2);
    agg_cancel(a, 2, ERRKIND_TIMEOUT, "deadline");
    ok(!agg_decided(a), "a deadline cut decides nothing by itself");
    out = (struct buf)BUF_INIT;
    ok(agg_render(a, &out) == 502, "but fail_fast answers 502 for it");
    agg_destroy(a);
    buf_finish(&out);
    plan_destroy(p);
    config_unref(cfg);
}

static void test_required(void)
{
    struct config *cfg = parse("{\"endpoints\":[{\"path\":\"/t\",\"backends\":[" BE(
        "a") ",{\"name\":\"b\",\"url\":"
             "\"http://u/b\",\"required\":true}," BE("c") "]}]}");
    struct plan *p = plan_of(cfg, 0, NULL);
    ok(!p->fail_fast && p->calls[1].required && !p->calls[0].required, "b is required");
    struct agg *a = agg_create(p);
    for (size_t i = 0; i < 3; i++)
        agg_start(a, i);
    ok(agg_fail(a, 0, ERRKIND_CONNECT, NULL) == 0 && !agg_decided(a),
       "an optional failure stays isolated");
    ok(agg_fail(a, 1, ERRKIND_TIMEOUT, NULL) == 0 && agg_decided(a) && agg_decider(a) == 1,
       "a required failure decides the request");
    agg_complete(a, 2, 200, dup_s("3"), 1);
    struct buf out = BUF_INIT;
    ok(agg_render(a, &out) == 502, "502 even with a success");
    agg_destroy(a);
    buf_finish(&out);
    plan_destroy(p);
    config_unref(cfg);
}

static void test_each(void)
{
    struct config *cfg =
        parse("{\"endpoints\":[{\"path\":\"/c\",\"each\":{\"param\":\"sn\",\"max_items\":3},"
              "\"backends\":[{\"name\":\"contract\",\"url\":\"http://u/c/{item}?x=1\"}]}]}");
    struct plan *p = plan_of(cfg, 0, "sn=A1,a%20b&x=2&sn=A1,%2F");
    ok(p != NULL && p->each && p->ncalls == 3, "three distinct items");
    is_str(p->calls[0].item, "A1", "item 0");
    is_str(p->calls[1].item, "a b", "item 1, decoded");
    is_str(p->calls[2].item, "/", "item 2, decoded");
    is_str(p->calls[1].url, "http://u/c/a%20b?x=1", "substituted percent-encoded");
    is_str(p->calls[2].url, "http://u/c/%2F?x=1", "a slash cannot leave its segment");
    struct agg *a = agg_create(p);
    for (size_t i = 0; i < 3; i++)
        agg_start(a, i);
    agg_complete(a, 0, 200, dup_s("{\"n\":1}"), 7);
    agg_complete(a, 1, 404, NULL, 0);
    agg_fail(a, 2, ERRKIND_TIMEOUT, "slow");
    struct buf out = BUF_INIT;
    ok(agg_render(a, &out) == 200, "200: an item succeeded");
    is_str(out.data,
           "{\"results\":{\"A1\":{\"n\":1},\"a b\":{},\"/\":{}},\"errors\":[{\"item\":\"a b\","
           "\"name\":\"contract\",\"error\":\"http_status\",\"status\":404,\"message\":"
           "\"upstream answered 404\"},{\"item\":\"/\",\"name\":\"contract\",\"error\":"
           "\"timeout\",\"message\":\"slow\"}]}",
           "results keyed by item in request order; errors by item");
    agg_destroy(a);
    buf_finish(&out);
    plan_destroy(p);
    config_unref(cfg);
}

int main(void)
{
    test_slots();
    test_fail_fast();
    test_required();
    test_each();
    return tap_done();
}
