/* The notifier through the upstream seam: a fake upstream takes its POSTs. Checks the payload,
 * the FIFO per sink, the cap on POSTs in flight, the queue bound, the counts, the drain limit,
 * and that a notification outlives a reload of the configuration it was made under. */
#include "access.h"
#include "buf.h"
#include "config.h"
#include "fake_upstream.h"
#include "metrics.h"
#include "notify.h"
#include "site.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char cfg_json[] =
    "{\"endpoints\":[{\"path\":\"/t\",\"backends\":[{\"name\":\"a\",\"url\":\"http://u/a\"}],"
    "\"notify\":{\"url\":\"http://sink:9/n\",\"queue\":2,\"timeout_ms\":700,"
    "\"headers\":{\"X-Token\":\"k\"}}},"
    "{\"path\":\"/other\",\"backends\":[{\"name\":\"a\",\"url\":\"http://u/a\"}],"
    "\"notify\":{\"url\":\"http://elsewhere/n\",\"queue\":1}}]}";

struct world {
    struct fake_upstream up;
    struct metrics *metrics;
    struct config *cfg;
    struct site *site;
    struct notifier *n;
    int idle_calls;
};

static void on_idle(void *arg)
{
    struct world *w = arg;
    w->idle_calls++;
}

static void world_init(struct world *w)
{
    char err[512];
    memset(w, 0, sizeof *w);
    w->metrics = metrics_create(1, "version=\"t\"");
    if (config_parse(cfg_json, strlen(cfg_json), "t", &w->cfg, err, sizeof err) < 0)
        printf("# %s\n", err);
    w->site = site_create(w->cfg, w->metrics, 1);
    struct notify_env env = {&fake_ops, &w->up, 0, on_idle, w};
    w->n = notify_create(&env);
}

static void world_finish(struct world *w, const char *what)
{
    ok(fake_running(&w->up) == 0 && notify_pending(w->n) == 0, "%s: nothing left", what);
    notify_destroy(w->n);
    site_unref(w->site);
    config_unref(w->cfg);
    metrics_destroy(w->metrics);
}

static const char *const leg_names[] = {"a", "b"};

static void leg(const void *arg, size_t i, struct access_leg *out)
{
    (void)arg;
    *out = (struct access_leg){
        .name = leg_names[i], .result = i == 0 ? "ok" : "timeout", .usec = i == 0 ? 3200 : 1000000};
}

static void report(struct world *w, size_t ep, const char *rid)
{
    struct notify_report r = {rid, "/t", NULL, 200, 12345, 2, leg, NULL};
    notify_request(w->n, w->site, &w->cfg->endpoints[ep],
                   site_endpoint_series(w->site, &w->cfg->endpoints[ep]), &r);
}

/* gatherd_notify_total{endpoint=ep,result=result}, or -1. */
static long count(struct world *w, const char *ep, const char *result)
{
    struct buf b = BUF_INIT;
    char want[160];
    long n = -1;
    snprintf(want, sizeof want, "gatherd_notify_total{endpoint=\"%s\",result=\"%s\"} ", ep, result);
    if (metrics_render(w->metrics, &b) == 0) {
        const char *at = strstr(b.data, want);
        if (at != NULL)
            n = strtol(at + strlen(want), NULL, 10);
    }
    buf_finish(&b);
    return n;
}

static void test_payload(void)
{
    struct buf b = BUF_INIT;
    struct notify_report r = {"rid-1", "/t/\"q\"", "hit", 502, 1500, 2, leg, NULL};
    ok(notify_render(&b, &r) == 0, "renders");
    const char *time = strstr(b.data, "\"time\":\"");
    ok(time != NULL && strlen(time) > 33 && time[31] == 'Z', "with an RFC 3339 time");
    char *rest = time != NULL ? strstr(time, ",\"path\"") : NULL;
    is_str(rest,
           ",\"path\":\"/t/\\\"q\\\"\",\"status\":502,\"duration_ms\":1.50,\"cache\":\"hit\","
           "\"backends\":[{\"name\":\"a\",\"ok\":true,\"error\":null,\"ms\":3.20},"
           "{\"name\":\"b\",\"ok\":false,\"error\":\"timeout\",\"ms\":1000.00}]}",
           "the request, the cache verdict and each call");
    ok(strncmp(b.data, "{\"request_id\":\"rid-1\",", 22) == 0, "the request id first");
    buf_finish(&b);
    r.cache = NULL;
    r.nlegs = 0;
    ok(notify_render(&b, &r) == 0 && strstr(b.data, "\"cache\":null,\"backends\":[]}") != NULL,
       "no cache verdict is null; no calls, an empty list");
    buf_finish(&b);
}

static void item_leg(const void *arg, size_t i, struct access_leg *out)
{
    (void)arg;
    (void)i;
    *out = (struct access_leg){.name = "c", .result = "not_started", .item = "A\"1"};
}

static void test_payload_items(void)
{
    struct buf b = BUF_INIT;
    struct notify_report r = {"rid-2", "/c", NULL, 499, 0, 1, item_leg, NULL};
    ok(notify_render(&b, &r) == 0 &&
           strstr(b.data, "\"backends\":[{\"name\":\"c\",\"item\":\"A\\\"1\",\"ok\":false,"
                          "\"error\":\"not_started\",\"ms\":0.00}]}") != NULL,
       "an each call names its item, escaped");
    buf_finish(&b);
}

static void test_fifo_cap_and_queue(void)
{
    struct world w;
    world_init(&w);
    char rid[16];
    for (int i = 0; i < 8; i++) {
        snprintf(rid, sizeof rid, "r%d", i);
        report(&w, 0, rid);
    }
    ok(w.up.n == NOTIFY_IN_FLIGHT, "at most %d POSTs in flight per sink", NOTIFY_IN_FLIGHT);
    ok(notify_pending(w.n) == NOTIFY_IN_FLIGHT + 2, "queue 2: two wait");
    ok(count(&w, "/t", "dropped") == 2, "the rest are dropped and counted");
    is_str(w.up.x[0].url, "http://sink:9/n", "POSTed to the sink");
    ok(w.up.x[0].post && strstr(w.up.x[0].body, "\"request_id\":\"r0\"") != NULL,
       "as a POST of the report");
    is_str(w.up.x[0].rid, "r0", "with the request's id");
    is_str(w.up.x[0].first_header, "X-Token: k", "and the configured headers");
    ok(w.up.x[0].timeout_ms == 700, "under the notify's timeout_ms");
    /* A second endpoint with another sink is not held up by the full one. */
    report(&w, 1, "o0");
    ok(w.up.n == NOTIFY_IN_FLIGHT + 1, "another sink has slots of its own");
    is_str(w.up.x[4].url, "http://elsewhere/n", "and its own URL");
    fake_answer(&w.up, 4, 204, "");
    fake_answer(&w.up, 1, 200, "{}");
    ok(w.up.n == NOTIFY_IN_FLIGHT + 2 && strstr(w.up.x[5].body, "\"r4\"") != NULL,
       "a slot freed starts the oldest waiting");
    fake_fail(&w.up, 0, ERRKIND_CONNECT, "refused");
    fake_answer(&w.up, 2, 500, "{}");
    ok(strstr(w.up.x[6].body, "\"r5\"") != NULL, "in order");
    ok(count(&w, "/t", "sent") == 1 && count(&w, "/t", "failed") == 2, "2xx sent, else failed");
    ok(count(&w, "/other", "sent") == 1, "counted per endpoint");
    size_t idle_before = (size_t)w.idle_calls;
    fake_answer(&w.up, 3, 200, "");
    fake_answer(&w.up, 5, 200, "");
    fake_answer(&w.up, 6, 200, "");
    ok(idle_before == 0 && w.idle_calls == 1, "idle is told once nothing is left");
    ok(w.up.n == 7, "no more POSTs than notifications kept");
    world_finish(&w, "fifo");
}

static void test_expire(void)
{
    struct world w;
    world_init(&w);
    for (int i = 0; i < 6; i++)
        report(&w, 0, "r");
    ok(notify_expire(w.n) == 6, "the drain limit drops what is queued or in flight");
    ok(w.up.x[0].cancelled && fake_running(&w.up) == 0, "and cancels its POSTs");
    report(&w, 0, "late");
    ok(w.up.n == NOTIFY_IN_FLIGHT, "a notification after it is not sent");
    ok(count(&w, "/t", "dropped") == 7 && notify_drain_dropped(w.n) == 7,
       "each is dropped and counted for the drain's log line");
    ok(w.idle_calls == 0, "expire does not call idle");
    world_finish(&w, "expire");
}

static void test_outlives_reload(void)
{
    struct world w;
    world_init(&w);
    for (int i = 0; i < 5; i++)
        report(&w, 0, "r");
    /* What a reload does: the worker drops its site, the control thread its configuration. */
    site_unref(w.site);
    config_unref(w.cfg);
    w.site = NULL;
    w.cfg = NULL;
    fake_answer(&w.up, 0, 200, "");
    is_str(w.up.x[4].url, "http://sink:9/n", "a queued one still goes where it was made for");
    is_str(w.up.x[4].first_header, "X-Token: k", "with its headers");
    for (size_t i = 1; i < 5; i++)
        fake_answer(&w.up, i, 200, "");
    world_finish(&w, "reload");
}

static void test_destroy_drops(void)
{
    struct world w;
    world_init(&w);
    report(&w, 0, "r");
    report(&w, 1, "o");
    notify_destroy(w.n);
    w.n = NULL;
    ok(w.up.x[0].cancelled && w.up.x[1].cancelled, "destroy cancels what runs");
    ok(count(&w, "/t", "dropped") == 1 && count(&w, "/other", "dropped") == 1,
       "and counts it dropped");
    site_unref(w.site);
    config_unref(w.cfg);
    metrics_destroy(w.metrics);
}

int main(void)
{
    test_payload();
    test_payload_items();
    test_fifo_cap_and_queue();
    test_expire();
    test_outlives_reload();
    test_destroy_drops();
    return tap_done();
}
