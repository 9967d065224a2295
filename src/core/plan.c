#include "plan.h"

#include "config.h"

#include <errno.h>
#include <stdlib.h>

int plan_build(const struct config_endpoint *ep, const struct plan_request *req, struct plan **out)
{
    (void)req;
    struct plan *p = malloc(sizeof *p + ep->nbackends * sizeof p->calls[0]);
    if (p == NULL)
        return -ENOMEM;
    p->ep = ep;
    p->deadline_ms = ep->timeout_ms;
    p->ncalls = ep->nbackends;
    for (size_t i = 0; i < ep->nbackends; i++) {
        const struct config_backend *be = &ep->backends[i];
        p->calls[i] = (struct plan_call){
            .be = be,
            .url = be->url,
            .headers = be->headers,
            .nheaders = be->nheaders,
            .timeout_ms = be->timeout_ms,
            .max_body = be->max_body_bytes,
            .coalesce = be->coalesce,
            .index = i,
        };
    }
    *out = p;
    return 0;
}

void plan_destroy(struct plan *p)
{
    free(p);
}

const char *plan_call_name(const struct plan_call *c)
{
    return c->be->name;
}
