/* The plan of calls an endpoint makes for a request. */
#include "config.h"
#include "plan.h"
#include "tap.h"

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
    ok(plan_build(ep, &(struct plan_request){"/t"}, &p) == 0, "built");
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
    return tap_done();
}
