#include "agg.h"
#include "buf.h"
#include "config.h"
#include "plan.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>

static char *dup_s(const char *s)
{
    return strdup(s);
}

int main(void)
{
    struct config_backend be[3] = {{.name = "a"}, {.name = "b\"q"}, {.name = "c"}};
    struct config_endpoint ep = {.path = "/x", .timeout_ms = 1000, .nbackends = 3, .backends = be};
    struct buf out = BUF_INIT;
    struct plan *plan;
    ok(plan_build(&ep, &(struct plan_request){NULL, NULL}, &plan, NULL, 0) == 0 &&
           plan->ncalls == 3,
       "one call per backend");

    /* Completion order does not matter; config order is kept. */
    struct agg *a = agg_create(plan);
    for (size_t i = 0; i < 3; i++)
        ok(agg_start(a, i) == 0, "start %zu", i);
    ok(agg_start(a, 0) == -EALREADY, "start twice refused");
    ok(agg_complete(a, 2, 200, dup_s(" {\"c\":3} \n"), 10) == 0, "c done first");
    ok(agg_remaining(a) == 2 && !agg_done(a), "two remain");
    ok(agg_complete(a, 0, 200, dup_s("[1]"), 3) == 0, "a done");
    ok(agg_complete(a, 1, 201, dup_s("\"s\""), 3) == 0, "b done (any 2xx)");
    ok(agg_done(a), "all done");
    ok(agg_complete(a, 1, 200, dup_s("1"), 1) == -EALREADY, "late completion refused");
    ok(agg_render(a, &out) == 200, "200 when all succeed");
    is_str(out.data, "{\"results\":[[1],\"s\",{\"c\":3}],\"errors\":[]}", "join in config order");
    /* Once rendered, the bodies go; what the access line reads stays. */
    const char *body;
    size_t blen;
    agg_drop_bodies(a);
    ok(agg_body_of(a, 0, &body, &blen) == -EINVAL, "no body after agg_drop_bodies");
    ok(agg_state_of(a, 2) == AGG_DONE && agg_status_of(a, 1) == 201, "states and statuses stay");
    ok(agg_render(a, &out) == -EINVAL && agg_render_call(a, 0, &out) == -EINVAL,
       "nothing to render once dropped");
    agg_destroy(a);
    out.len = 0;

    /* Every failure shape; one success keeps it a 200. */
    a = agg_create(plan);
    agg_start(a, 0);
    agg_start(a, 1);
    agg_start(a, 2);
    agg_complete(a, 0, 503, dup_s("{}"), 2);
    agg_complete(a, 1, 200, dup_s("{\"a\":"), 5);
    agg_complete(a, 2, 200, dup_s("{\"ok\":true}"), 11);
    ok(agg_state_of(a, 0) == AGG_FAILED && agg_error_of(a, 0) == ERRKIND_HTTP_STATUS,
       "503 is http_status");
    ok(agg_error_of(a, 1) == ERRKIND_INVALID_JSON, "truncated body is invalid_json");
    ok(agg_render(a, &out) == 200, "partial success is 200");
    is_str(out.data,
           "{\"results\":[{},{},{\"ok\":true}],\"errors\":[{\"index\":0,\"name\":\"a\",\"error\":"
           "\"http_status\",\"status\":503,\"message\":\"upstream answered 503\"},{\"index\":1,"
           "\"name\":\"b\\\"q\",\"error\":\"invalid_json\",\"message\":\"upstream body is not "
           "valid JSON (at byte 5 of 5)\"}]}",
           "errors in index order, names escaped");
    agg_destroy(a);
    out.len = 0;

    /* A call that could not be started fails from PENDING (a chained call whose dependency gave
     * it nothing to use); a settled one cannot fail again. */
    a = agg_create(plan);
    ok(agg_fail(a, 2, ERRKIND_DEPENDENCY, "no field") == 0 && agg_remaining(a) == 2,
       "fail a pending call");
    ok(agg_fail(a, 2, ERRKIND_CONNECT, NULL) == -EALREADY, "fail a failed call refused");
    ok(agg_start(a, 2) == -EALREADY, "a failed call never starts");
    agg_destroy(a);

    /* All failed: 502; cancel covers pending and running; transport errors keep messages. */
    a = agg_create(plan);
    agg_start(a, 0);
    agg_start(a, 1);
    ok(agg_fail(a, 0, ERRKIND_CONNECT, "refused") == 0, "connect failure");
    ok(agg_fail(a, 2, ERRKIND_NONE, NULL) == -EINVAL, "failing with no error kind refused");
    ok(agg_cancel(a, 1, ERRKIND_TIMEOUT, "deadline") == 0, "cancel running");
    ok(agg_cancel(a, 2, ERRKIND_TIMEOUT, NULL) == 0, "cancel pending");
    ok(agg_cancel(a, 2, ERRKIND_TIMEOUT, NULL) == -EALREADY, "cancel twice refused");
    ok(agg_complete(a, 1, 200, dup_s("{}"), 2) == -EALREADY, "completion after cancel refused");
    ok(agg_render(a, &out) == 502, "502 when none succeeded");
    is_str(out.data,
           "{\"results\":[{},{},{}],\"errors\":[{\"index\":0,\"name\":\"a\",\"error\":\"connect\","
           "\"message\":\"refused\"},{\"index\":1,\"name\":\"b\\\"q\",\"error\":\"timeout\","
           "\"message\":\"deadline\"},{\"index\":2,\"name\":\"c\",\"error\":\"timeout\","
           "\"message\":\"upstream did not answer in time\"}]}",
           "all-failed join");
    agg_destroy(a);
    out.len = 0;

    /* Empty body and the error-name table. */
    a = agg_create(plan);
    agg_start(a, 0);
    agg_complete(a, 0, 200, NULL, 0);
    ok(agg_error_of(a, 0) == ERRKIND_INVALID_JSON, "empty body is invalid_json");
    agg_destroy(a);
    is_str(errkind_name(ERRKIND_TOO_LARGE), "too_large", "error names");
    is_str(errkind_name(ERRKIND_TRANSFER), "transfer", "error names");
    buf_finish(&out);
    plan_destroy(plan);
    return tap_done();
}
