/* The plan of calls an endpoint makes for a request. */
#include "config.h"
#include "plan.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>

int main(void)
{
    static const char json[] =
        "{\"endpoints\":[{\"path\":\"/t\",\"timeout_ms\":900,\"coalesce\":true,\"backends\":["
        "{\"name\":\"a\",\"url\":\"http://u/a\",\"timeout_ms\":300,\"headers\":{\"X-A\":\"1\"}},"
        "{\"name\":\"b\",\"url\":\"http://u/b\",\"coalesce\":false,\"max_body_bytes\":10}]}]}";
    char err[512] = "";
    struct config *cfg = NULL;
    ok(config_parse(json, strlen(json), "t", &cfg, err, sizeof err) == 0, "config (%s)", err);
    const struct config_endpoint *ep = &cfg->endpoints[0];
    struct plan *p = NULL;
    ok(plan_build(ep, &(struct plan_request){NULL, NULL}, &p, NULL, 0) == 0, "built");
    ok(p->ep == ep && p->ncalls == 2 && p->deadline_ms == 900, "two calls, endpoint deadline");
    for (size_t i = 0; i < p->ncalls; i++) {
        const struct plan_call *c = &p->calls[i];
        ok(c->be == &ep->backends[i] && c->index == i && c->ndeps == 0,
           "call %zu: backend %zu, index %zu, no dependencies", i, i, i);
    }
    is_str(p->calls[0].url, "http://u/a", "call 0 URL");
    is_str(plan_call_name(&p->calls[1]), "b", "call 1 name");
    ok(p->calls[0].nheaders == 1 && strcmp(p->calls[0].headers[0], "X-A: 1") == 0,
       "call 0 headers");
    ok(p->calls[0].timeout_ms == 300 && p->calls[1].timeout_ms == 900,
       "timeouts: the backend's, else the endpoint's");
    ok(p->calls[1].max_body == 10 && p->calls[0].max_body == 8u << 20, "body caps");
    ok(p->calls[0].coalesce && !p->calls[1].coalesce, "coalesce: inherited, overridden");
    ok(cfg->endpoints[0].id == 0 && ep->backends[0].id == 0 && ep->backends[1].id == 1,
       "ids index the tables beside the configuration");
    plan_destroy(p);
    plan_destroy(NULL);
    config_unref(cfg);

    /* Items: decoded, split, deduplicated, bounded; and the 400s. */
    char *store = NULL, err2[200];
    size_t n = 0;
    ok(plan_items("a=1&sn=B,,A&sn=A&sn=%C3%A9,C", "sn", 10, &store, &n, err2, sizeof err2) == 0 &&
           n == 4,
       "four distinct items");
    ok(store != NULL && memcmp(store, "B\0A\0\xc3\xa9\0C\0", 10) == 0,
       "in first-occurrence order, empty pieces skipped");
    free(store);
    ok(plan_items("sn=A,B,C", "sn", 2, &store, &n, err2, sizeof err2) == -EINVAL &&
           strstr(err2, "sn") && strstr(err2, "2"),
       "too many: names the parameter and the limit");
    ok(plan_items("sn=A,A,A", "sn", 1, &store, &n, err2, sizeof err2) == 0 && n == 1,
       "duplicates do not count against the limit");
    free(store);
    ok(plan_items("sn=%4", "sn", 5, &store, &n, err2, sizeof err2) == -EINVAL &&
           strstr(err2, "percent"),
       "bad percent-encoding refused");
    ok(plan_items("sn=%00", "sn", 5, &store, &n, err2, sizeof err2) == -EINVAL,
       "a NUL byte refused");
    ok(plan_items("other=1", "sn", 5, &store, &n, err2, sizeof err2) == -EINVAL &&
           strstr(err2, "no items"),
       "no items refused");
    ok(plan_items(NULL, "sn", 5, &store, &n, err2, sizeof err2) == -EINVAL, "no query refused");
    ok(plan_items("s%6E=x", "sn", 5, &store, &n, err2, sizeof err2) == 0 && n == 1,
       "the key is decoded too");
    free(store);

    /* Path parameters: shape, decoding, literals. */
    static const char pj[] =
        "{\"endpoints\":[{\"path\":\"/t/{pair}/x\",\"params\":{\"pair\":\"[a-z_]+\"},"
        "\"backends\":[{\"name\":\"a\",\"url\":\"http://u/p?q={pair}\"}]}]}";
    ok(config_parse(pj, strlen(pj), "t", &cfg, err, sizeof err) == 0, "path config (%s)", err);
    ep = &cfg->endpoints[0];
    char **v = NULL;
    const char *path = "/t/btc%2Fjpy/x";
    size_t bad = 99;
    ok(plan_match_path(ep, path, strlen(path), &v, &bad) == 1, "matches, the value decoded");
    is_str(v[0], "btc/jpy", "an encoded slash stays inside the segment");
    const char *params[] = {v[0]};
    ok(plan_build(ep, &(struct plan_request){NULL, params}, &p, NULL, 0) == 0, "built");
    is_str(p->calls[0].url, "http://u/p?q=btc%2Fjpy", "substituted percent-encoded");
    plan_destroy(p);
    free(v);
    ok(plan_match_path(ep, "/t/a/y", 6, &v, &bad) == 0, "another literal: no match");
    ok(plan_match_path(ep, "/t/a/b/x", 8, &v, &bad) == 0, "another shape: no match");
    ok(plan_match_path(ep, "/t/%zz/x", 8, &v, &bad) == -EINVAL && bad == 0,
       "this shape, an unreadable value: the endpoint's 400");
    ok(plan_match_path(ep, "/t/%zz/y", 8, &v, &bad) == 0,
       "another literal still decides the shape");
    ok(plan_match_path(ep, "/t/a%00/x", 9, &v, &bad) == -EINVAL, "a NUL byte is unreadable");
    config_unref(cfg);
    return tap_done();
}
