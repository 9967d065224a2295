#include "site.h"

#include "config.h"
#include "metrics.h"

#include <stdlib.h>

struct site *site_create(struct config *cfg, struct metrics *m)
{
    struct site *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->urls = malloc((cfg->nbackends_total + 1) * sizeof *s->urls);
    if (s->urls == NULL || (s->series = metrics_bind(m, cfg)) == NULL) {
        free(s->urls);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nendpoints; i++)
        for (size_t j = 0; j < cfg->endpoints[i].nbackends; j++)
            s->urls[cfg->endpoints[i].backends[j].id] = cfg->endpoints[i].backends[j].url;
    atomic_init(&s->refs, 1);
    s->cfg = config_ref(cfg);
    return s;
}

struct site *site_ref(struct site *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void site_unref(struct site *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    metrics_table_destroy(s->series);
    free(s->urls);
    config_unref(s->cfg);
    free(s);
}

struct metrics_endpoint *site_endpoint_series(const struct site *s,
                                              const struct config_endpoint *ep)
{
    return s->series->endpoint[ep->id];
}

struct metrics_backend *site_backend_series(const struct site *s, const struct config_backend *be)
{
    return s->series->backend[be->id];
}
