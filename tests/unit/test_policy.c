/* The policies of the aggregation state machine, with no sockets: the order calls may start in
 * under a concurrency limit, the slots, fail-fast and required calls deciding a request, and
 * the statuses and join they lead to. */
#include "agg.h"
#include "buf.h"
#include "config.h"
#include "plan.h"
#include "tap.h"
#include "testcfg.h"

#include <errno.h>
#include <stdlib.h>

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
    ok(agg_complete(a, 1, 200, dup_s("1"), strlen("1")) == 0 && agg_next(a) == 2,
       "a slot frees: the next call in plan order");
    agg_start(a, 2);
    ok(agg_fail(a, 0, ERRKIND_TIMEOUT, NULL) == 0 && agg_next(a) == 3,
       "a failure frees its slot too (partial)");
    while ((order[n] = agg_next(a)) != AGG_NONE) {
        agg_start(a, order[n]);
        n++;
    }
    ok(n == 1 && order[0] == 3 && agg_running(a) == 2, "never more than two running");
    agg_complete(a, 2, 200, dup_s("2"), strlen("2"));
    ok(agg_next(a) == 4, "the last call waits for its slot");
    agg_start(a, 4);
    agg_complete(a, 3, 200, dup_s("3"), strlen("3"));
    agg_complete(a, 4, 200, dup_s("4"), strlen("4"));
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
    ok(agg_complete(a, 0, 200, dup_s("{\"a\":1}"), strlen("{\"a\":1}")) == 0 && !agg_decided(a),
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
    agg_complete(a, 0, 200, dup_s("1"), strlen("1"));
    agg_complete(a, 1, 200, dup_s("1"), strlen("1"));
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
    agg_complete(a, 2, 200, dup_s("3"), strlen("3"));
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
    agg_complete(a, 0, 200, dup_s("{\"n\":1}"), strlen("{\"n\":1}"));
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

static void test_graph(void)
{
    /* b and d read a; e reads b and d (a diamond); c is independent; f reads e. */
    struct config *cfg = parse("{\"endpoints\":[{\"path\":\"/g\",\"backends\":["
                               "{\"name\":\"a\",\"url\":\"http://u/a\"},"
                               "{\"name\":\"b\",\"url\":\"http://u/b?u={a:/user/id}\"},"
                               "{\"name\":\"c\",\"url\":\"http://u/c\"},"
                               "{\"name\":\"d\",\"url\":\"http://u/d/{a:/user/name}\"},"
                               "{\"name\":\"e\",\"url\":\"http://u/e?x={b:/v}&y={d:/v}\"},"
                               "{\"name\":\"f\",\"url\":\"http://u/f?{e:/v}\"}]}]}");
    struct plan *p = plan_of(cfg, 0, NULL);
    ok(p->calls[1].chained && p->calls[1].url == NULL && !p->calls[2].chained,
       "chained calls have no URL until they start");
    ok(p->calls[4].ndeps == 2 && p->calls[4].deps[0] == 1 && p->calls[4].deps[1] == 3,
       "e depends on b and d");
    struct agg *a = agg_create(p);
    size_t first[6], n = 0, i;
    while ((i = agg_next(a)) != AGG_NONE) {
        first[n++] = i;
        agg_start(a, i);
    }
    ok(n == 2 && first[0] == 0 && first[1] == 2, "independent calls start at once: a and c");
    agg_complete(a, 0, 200, dup_s("{\"user\":{\"id\":42,\"name\":\"J\\u00f6 D/e\"}}"),
                 strlen("{\"user\":{\"id\":42,\"name\":\"J\\u00f6 D/e\"}}"));
    char *url = NULL, err[256];
    ok(agg_next(a) == 1, "b starts the moment a succeeds");
    ok(plan_chain_url(p, 1, a, &url, err, sizeof err) == 0, "b's URL");
    is_str(url, "http://u/b?u=42", "a number as its JSON text");
    free(url);
    agg_start(a, 1);
    ok(agg_next(a) == 3, "and so does d, not waiting for a stage");
    ok(plan_chain_url(p, 3, a, &url, err, sizeof err) == 0, "d's URL");
    is_str(url, "http://u/d/J%C3%B6%20D%2Fe", "a string unescaped, then percent-encoded");
    free(url);
    agg_start(a, 3);
    ok(agg_next(a) == AGG_NONE, "e waits for both b and d");
    agg_complete(a, 1, 200, dup_s("{\"v\":[1]}"), strlen("{\"v\":[1]}"));
    ok(agg_next(a) == AGG_NONE, "still waiting for d");
    agg_complete(a, 3, 200, dup_s("{\"v\":\"x\"}"), strlen("{\"v\":\"x\"}"));
    ok(agg_next(a) == 4, "e starts once both have succeeded");
    ok(plan_chain_url(p, 4, a, &url, err, sizeof err) == -EINVAL && strstr(err, "an array"),
       "a pointer that finds an array: a dependency error naming what it found (%s)", err);
    ok(agg_fail(a, 4, ERRKIND_DEPENDENCY, err) == 0, "e fails before it starts");
    ok(agg_state_of(a, 5) == AGG_FAILED && agg_error_of(a, 5) == ERRKIND_DEPENDENCY,
       "its dependent fails with it, transitively");
    agg_complete(a, 2, 200, dup_s("1"), strlen("1"));
    ok(agg_done(a), "done");
    struct buf out = BUF_INIT;
    ok(agg_render(a, &out) == 200 && strstr(out.data, "\"dependency\"") != NULL,
       "200 with dependency errors");
    buf_finish(&out);
    agg_destroy(a);
    plan_destroy(p);
    config_unref(cfg);

    /* Load-time refusals. */
    char e2[512];
    struct config *bad = NULL;
    static const char cyc[] = "{\"endpoints\":[{\"path\":\"/g\",\"backends\":["
                              "{\"name\":\"a\",\"url\":\"http://u/a?{b:/x}\"},"
                              "{\"name\":\"b\",\"url\":\"http://u/b?{a:/x}\"}]}]}";
    ok(config_parse(cyc, strlen(cyc), "t", &bad, e2, sizeof e2) == -EINVAL &&
           strstr(e2, "a -> b -> a") != NULL,
       "a cycle is named (%s)", e2);
    static const struct {
        const char *json, *needle;
    } refused[] = {
        {"{\"endpoints\":[{\"path\":\"/g\",\"backends\":[{\"name\":\"a\",\"url\":\"http://u/a\"},"
         "{\"name\":\"b\",\"url\":\"http://u/b?{b:/x}\"}]}]}",
         "backends[1].url: {b:/x}: a backend cannot read its own answer"},
        {"{\"endpoints\":[{\"path\":\"/g\",\"backends\":[{\"name\":\"a\",\"url\":\"http://u/a\"},"
         "{\"name\":\"b\",\"url\":\"http://u/b?{z:/x}\"}]}]}",
         "backends[1].url: {z:/x}: no backend \"z\""},
        {"{\"endpoints\":[{\"path\":\"/g\",\"backends\":[{\"name\":\"a\",\"url\":\"http://u/a\"},"
         "{\"name\":\"b\",\"url\":\"http://u/b?{a:/x~}\"}]}]}",
         "backends[1].url: {a:/x~}"},
        {"{\"endpoints\":[{\"path\":\"/g\",\"backends\":[{\"name\":\"a\",\"url\":\"http://u/a?{c:/"
         "x}\"},{\"name\":\"b\",\"url\":\"http://u/b?{a:/x}\"},{\"name\":\"c\",\"url\":\"http://u/"
         "c?{b:/x}\"},{\"name\":\"d\",\"url\":\"http://u/d?{d2:/x}\"},{\"name\":\"d2\",\"url\":"
         "\"http://u/d2\"}]}]}",
         "a -> c -> b -> a"},
        {"{\"endpoints\":[{\"path\":\"/g\",\"backends\":[{\"name\":\"a\",\"url\":\"http://u/a\"},"
         "{\"name\":\"a\",\"url\":\"http://u/b?{a:/x}\"}]}]}",
         "backends[1].name"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        e2[0] = '\0';
        ok(config_parse(refused[i].json, strlen(refused[i].json), "t", &bad, e2, sizeof e2) ==
                   -EINVAL &&
               strstr(e2, refused[i].needle) != NULL,
           "refused at load: %s (%s)", refused[i].needle, e2);
    }
}

/* Start order follows the graph, not configuration order; under fail_fast a failed dependency
 * decides the request, and its dependents are left for the caller to cancel (not failed as
 * "dependency"); without it, the failure travels down every path of the graph. */
static void test_graph_order(void)
{
    struct config *cfg = parse("{\"endpoints\":["
                               "{\"path\":\"/o\",\"backends\":["
                               "{\"name\":\"late\",\"url\":\"http://u/l?{mid:/v}\"},"
                               "{\"name\":\"mid\",\"url\":\"http://u/m?{root:/v}\"},"
                               "{\"name\":\"root\",\"url\":\"http://u/r\"}]},"
                               "{\"path\":\"/f\",\"on_error\":\"fail_fast\",\"backends\":["
                               "{\"name\":\"a\",\"url\":\"http://u/a\"},"
                               "{\"name\":\"b\",\"url\":\"http://u/b?{a:/v}\"},"
                               "{\"name\":\"c\",\"url\":\"http://u/c\"}]}]}");
    struct plan *p = plan_of(cfg, 0, NULL);
    struct agg *a = agg_create(p);
    ok(agg_next(a) == 2, "the root starts first, though it is configured last");
    agg_start(a, 2);
    ok(agg_next(a) == AGG_NONE, "nothing else may start yet");
    agg_complete(a, 2, 200, dup_s("{\"v\":1}"), 7);
    ok(agg_next(a) == 1, "then mid");
    agg_start(a, 1);
    ok(agg_next(a) == AGG_NONE, "late waits for mid");
    agg_fail(a, 1, ERRKIND_TIMEOUT, NULL);
    ok(agg_state_of(a, 0) == AGG_FAILED && agg_error_of(a, 0) == ERRKIND_DEPENDENCY && agg_done(a),
       "mid timing out fails late with dependency, and the request is done");
    struct buf out = BUF_INIT;
    ok(agg_render(a, &out) == 200 && strstr(out.data, "dependency \\\"mid\\\" did not succeed"),
       "the message names the dependency (%s)", out.data);
    buf_finish(&out);
    agg_destroy(a);
    plan_destroy(p);

    p = plan_of(cfg, 1, NULL);
    a = agg_create(p);
    size_t i, n = 0;
    while ((i = agg_next(a)) != AGG_NONE && n++ < 3)
        agg_start(a, i);
    ok(agg_running(a) == 2 && agg_state_of(a, 1) == AGG_PENDING, "a and c run, b waits");
    agg_complete(a, 0, 500, NULL, 0);
    ok(agg_decided(a) && agg_decider(a) == 0, "a's failure decides the request");
    ok(agg_state_of(a, 1) == AGG_PENDING && agg_next(a) == AGG_NONE,
       "b is left to be cancelled, never started, not failed as dependency");
    ok(agg_cancel(a, 1, ERRKIND_CANCELLED, "ended") == 0 &&
           agg_cancel(a, 2, ERRKIND_CANCELLED, "ended") == 0 && agg_done(a),
       "the caller cancels the rest");
    agg_destroy(a);
    plan_destroy(p);
    config_unref(cfg);
}

int main(void)
{
    test_graph();
    test_graph_order();
    test_slots();
    test_fail_fast();
    test_required();
    test_each();
    return tap_done();
}
