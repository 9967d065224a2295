#include "site.h"

#include "config.h"
#include "metrics.h"

#include <stdlib.h>

static void free_patterns(struct site *s, size_t n)
{
    for (size_t i = 0; s->patterns != NULL && i < n; i++)
        regfree(&s->patterns[i]);
    free(s->patterns);
}

/* Every path parameter's pattern, once per worker; false when out of memory (config_parse()
 * compiled each already, so nothing else can fail). */
static bool compile_patterns(struct site *s)
{
    const struct config *cfg = s->cfg;
    size_t n = cfg->nparams_total * s->nworkers, done = 0;
    if (n == 0)
        return true;
    if ((s->patterns = calloc(n, sizeof *s->patterns)) == NULL)
        return false;
    for (unsigned w = 0; w < s->nworkers; w++)
        for (size_t e = 0; e < cfg->nendpoints; e++)
            for (size_t p = 0; p < cfg->endpoints[e].nparams; p++) {
                const struct config_param *pa = &cfg->endpoints[e].params[p];
                regex_t *re = &s->patterns[w * cfg->nparams_total + pa->id];
                if (regcomp(re, pa->anchored, REG_EXTENDED | REG_NOSUB) != 0) {
                    free_patterns(s, done);
                    s->patterns = NULL;
                    return false;
                }
                done++;
            }
    return true;
}

struct site *site_create(struct config *cfg, struct metrics *m, unsigned nworkers)
{
    struct site *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->cfg = cfg;
    s->nworkers = nworkers;
    s->urls = malloc((cfg->nbackends_total + cfg->nnotify + 1) * sizeof *s->urls);
    if (s->urls == NULL || (s->series = metrics_bind(m, cfg)) == NULL || !compile_patterns(s)) {
        metrics_table_destroy(s->series);
        free(s->urls);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nendpoints; i++)
        for (size_t j = 0; j < cfg->endpoints[i].nbackends; j++)
            s->urls[cfg->endpoints[i].backends[j].id] = cfg->endpoints[i].backends[j].url;
    s->nurls = cfg->nbackends_total;
    for (size_t i = 0; i < cfg->nendpoints; i++)
        if (cfg->endpoints[i].notify != NULL)
            s->urls[s->nurls++] = cfg->endpoints[i].notify->url;
    atomic_init(&s->refs, 1);
    config_ref(cfg);
    return s;
}

bool site_param_matches(const struct site *s, unsigned w, const struct config_param *p,
                        const char *value)
{
    const regex_t *re = &s->patterns[w * s->cfg->nparams_total + p->id];
    return regexec(re, value, 0, NULL, 0) == 0;
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
    free_patterns(s, s->cfg->nparams_total * s->nworkers);
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
