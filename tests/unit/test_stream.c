/* Streamed answers without sockets: which Accept headers select a stream, and the exact bytes
 * of each NDJSON line and SSE event (labels, errors, ids that cannot break the framing, the
 * closing line). */
#include "agg.h"
#include "buf.h"
#include "config.h"
#include "plan.h"
#include "stream.h"
#include "tap.h"
#include "testcfg.h"

#include <stdlib.h>

static void test_negotiate(void)
{
    static const struct {
        const char *accept;
        enum stream_mode want;
    } cases[] = {
        {NULL, STREAM_NONE},
        {"", STREAM_NONE},
        {"application/json", STREAM_NONE},
        {"*/*", STREAM_NONE},
        {"application/*", STREAM_NONE},
        {"text/*;q=1", STREAM_NONE},
        {"application/x-ndjson", STREAM_NDJSON},
        {"APPLICATION/X-NDJSON", STREAM_NDJSON},
        {"text/event-stream", STREAM_SSE},
        {" text/event-stream ;charset=utf-8", STREAM_SSE},
        {"application/x-ndjson;q=0", STREAM_NONE},
        {"application/x-ndjson; q=0.000", STREAM_NONE},
        {"text/event-stream;q=0, application/x-ndjson;q=0", STREAM_NONE},
        {"application/json, application/x-ndjson;q=0.1", STREAM_NDJSON},
        {"application/x-ndjson;q=0.5, text/event-stream;q=0.8", STREAM_SSE},
        {"text/event-stream;q=0.8, application/x-ndjson;q=0.5", STREAM_SSE},
        {"application/x-ndjson, text/event-stream", STREAM_NDJSON},
        {"application/x-ndjsonx", STREAM_NONE},
        {"text/event-streams", STREAM_NONE},
        {"application/x-ndjso", STREAM_NONE},
        {"application/x-ndjson;q=", STREAM_NONE},
        {",,,", STREAM_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ok(stream_negotiate(cases[i].accept) == cases[i].want, "Accept: %s -> %d",
           cases[i].accept ? cases[i].accept : "(none)", (int)cases[i].want);
    is_str(stream_content_type(STREAM_NDJSON), "application/x-ndjson", "NDJSON type");
    is_str(stream_content_type(STREAM_SSE), "text/event-stream", "SSE type");
}

static void test_lines(void)
{
    struct config *cfg = parse("{\"endpoints\":[{\"path\":\"/t\",\"backends\":["
                               "{\"name\":\"a\",\"url\":\"http://u/a\"},"
                               "{\"name\":\"b\\\"q\",\"url\":\"http://u/b\"},"
                               "{\"name\":\"c\",\"url\":\"http://u/c\"}]}]}");
    struct plan *p = NULL;
    ok(plan_build(&cfg->endpoints[0], &(struct plan_request){NULL, NULL}, &p, NULL, 0) == 0,
       "plan");
    struct agg *a = agg_create(p);
    for (size_t i = 0; i < 3; i++)
        agg_start(a, i);
    agg_complete(a, 2, 200, dup_s(" {\"c\": [1, 2]}\n"), 15);
    agg_complete(a, 1, 503, dup_s("{}"), 2);
    agg_cancel(a, 0, ERRKIND_TIMEOUT, "endpoint deadline of 5 ms reached");
    struct buf b = BUF_INIT;
    ok(stream_append_call(&b, STREAM_NDJSON, a, 2) == 0, "a result line");
    is_str(b.data, "{\"index\":2,\"name\":\"c\",\"result\":{\"c\": [1, 2]}}\n",
           "the answer byte for byte, no surrounding white space, one line");
    b.len = 0;
    ok(stream_append_call(&b, STREAM_NDJSON, a, 1) == 0, "an error line");
    is_str(b.data,
           "{\"index\":1,\"name\":\"b\\\"q\",\"error\":\"http_status\",\"status\":503,"
           "\"message\":\"upstream answered 503\"}\n",
           "error, status, message; a name's quote escaped");
    b.len = 0;
    ok(stream_append_call(&b, STREAM_SSE, a, 0) == 0, "a timeout event");
    is_str(b.data,
           "event: result\nid: 0\ndata: {\"index\":0,\"name\":\"a\",\"error\":\"timeout\","
           "\"message\":\"endpoint deadline of 5 ms reached\"}\n\n",
           "SSE: event, id, data, blank line");
    b.len = 0;
    ok(stream_append_done(&b, STREAM_NDJSON, 1, 2) == 0, "done line");
    is_str(b.data, "{\"done\":true,\"ok\":1,\"failed\":2}\n", "NDJSON done");
    b.len = 0;
    ok(stream_append_done(&b, STREAM_SSE, 3, 0) == 0, "done event");
    is_str(b.data, "event: done\ndata: {\"done\":true,\"ok\":3,\"failed\":0}\n\n", "SSE done");
    buf_finish(&b);
    agg_destroy(a);
    plan_destroy(p);
    config_unref(cfg);
}

static void test_items(void)
{
    struct config *cfg = parse("{\"endpoints\":[{\"path\":\"/e\",\"each\":{\"param\":\"sn\"},"
                               "\"backends\":[{\"name\":\"c\",\"url\":\"http://u/{item}\"}]}]}");
    struct plan *p = NULL;
    char err[200];
    ok(plan_build(&cfg->endpoints[0], &(struct plan_request){"sn=a%0Ab,x%3Ay,%C3%A9", NULL}, &p,
                  err, sizeof err) == 0 &&
           p->ncalls == 3,
       "three items");
    struct agg *a = agg_create(p);
    for (size_t i = 0; i < 3; i++)
        agg_start(a, i);
    agg_complete(a, 0, 200, dup_s("1"), 1);
    agg_complete(a, 1, 404, NULL, 0);
    agg_complete(a, 2, 200, dup_s("\"\xc3\xa9\""), 4);
    struct buf b = BUF_INIT;
    stream_append_call(&b, STREAM_NDJSON, a, 0);
    is_str(b.data, "{\"item\":\"a\\u000ab\",\"name\":\"c\",\"result\":1}\n",
           "an item line is labelled by item, escaped");
    b.len = 0;
    stream_append_call(&b, STREAM_SSE, a, 0);
    is_str(
        b.data,
        "event: result\nid: a%0Ab\ndata: {\"item\":\"a\\u000ab\",\"name\":\"c\",\"result\":1}\n\n",
        "an item with a line break cannot break the SSE framing");
    b.len = 0;
    stream_append_call(&b, STREAM_SSE, a, 1);
    ok(strncmp(b.data, "event: result\nid: x%3Ay\ndata: {\"item\":\"x:y\"", 40) == 0 &&
           strstr(b.data, "\"status\":404") != NULL,
       "an item's error event");
    b.len = 0;
    stream_append_call(&b, STREAM_SSE, a, 2);
    ok(strncmp(b.data, "event: result\nid: %C3%A9\n", 24) == 0, "UTF-8 ids percent-encoded");
    buf_finish(&b);
    agg_destroy(a);
    plan_destroy(p);
    config_unref(cfg);
}

int main(void)
{
    test_negotiate();
    test_lines();
    test_items();
    return tap_done();
}
