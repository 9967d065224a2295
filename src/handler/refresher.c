/* Background refresh ("refresh_ms"): for each refreshed endpoint, one refresher in the whole
 * process, on the worker its path hashes to (stable across reloads, so a changed definition is
 * taken over by the same loop and never runs beside its old self). It runs a cache fill with no
 * request at start-up, then one every refresh_ms measured start to start; one that would start
 * while the last still runs starts when that one ends instead. The first fill's end, complete
 * or not, marks the endpoint's identity warm for /readyz. */
#include "buf.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "metrics.h"
#include "plan.h"
#include "request.h"
#include "site.h"

#include <event2/event.h>

#include <stdlib.h>
#include <string.h>

struct refresher {
    struct router *rt;
    struct refresher *next;
    struct site *site;                /* reference: what ep belongs to */
    const struct config_endpoint *ep; /* the definition it refreshes now */
    struct event *timer;
    struct fill *running; /* NULL when idle */
    bool due;             /* its interval passed while one ran */
    uint64_t started_us;
    uint64_t ident; /* the definition the last one started under: warm once it ends */
    char *path;
};

static uint64_t path_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static bool pinned_here(const struct router *rt, const struct config_endpoint *ep)
{
    unsigned n = rt->site->nworkers > 0 ? rt->site->nworkers : 1;
    return path_hash(ep->path) % n == rt->env.worker;
}

static void arm(struct refresher *r, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->timer, &tv);
}

static void start(struct refresher *r);

static void on_refreshed(void *arg, const struct cache_answer *a, bool stored)
{
    struct refresher *r = arg;
    struct metrics_endpoint *stats = site_endpoint_series(r->site, r->ep);
    /* Complete or not is the fan-out's outcome; whether it was stored (not when over an
     * eighth of the bound) is the age gauge's business. */
    enum metrics_refresh_outcome o = a != NULL && a->complete        ? METRICS_REFRESH_COMPLETE
                                     : a != NULL && a->status == 200 ? METRICS_REFRESH_PARTIAL
                                                                     : METRICS_REFRESH_FAILED;
    r->running = NULL;
    metrics_refresh_done(stats, r->rt->env.worker, o, clock_us() - r->started_us);
    if (stored)
        metrics_refresh_stored(stats, a->stored_us);
    cache_mark_warm(r->rt->env.cache, r->ident); /* out of memory: stays warming */
    if (r->due && !r->rt->stopped) {
        r->due = false;
        event_active(r->timer, EV_TIMEOUT, 0);
    }
}

static void start(struct refresher *r)
{
    struct router *rt = r->rt;
    const struct config_endpoint *ep = r->ep;
    struct plan_request preq = {NULL, NULL};
    struct plan *plan = NULL;
    struct buf key = BUF_INIT;
    struct cache_fill *cf = NULL;
    struct cache_policy p = {ep->cache.ttl_ms, ep->cache.stale_while_revalidate_ms,
                             ep->cache.stale_if_error_ms};
    char why[64];
    r->started_us = clock_us();
    r->ident = ep->ident;
    arm(r, ep->cache.refresh_ms); /* start to start, whatever happens to this one */
    if (plan_build(ep, &preq, &plan, why, sizeof why) < 0 ||
        cached_key(ep, NULL, NULL, 0, &key) < 0 ||
        cache_refresh(rt->env.cache, key.data, key.len, &p, &cf) < 0) {
        plan_destroy(plan);
        buf_finish(&key);
        on_refreshed(r, NULL, false); /* out of memory: counted as failed */
        return;
    }
    buf_finish(&key);
    if (cf == NULL) { /* a request's fill for the key is running: it refreshes the entry */
        plan_destroy(plan);
        return;
    }
    r->running = cached_fill_start(rt, r->site, plan, cf, "gatherd-refresh", on_refreshed, r);
    if (r->running == NULL)
        on_refreshed(r, NULL, false);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct refresher *r = arg;
    (void)fd;
    (void)what;
    if (r->rt->stopped)
        return;
    if (r->running != NULL) {
        r->due = true; /* never two at once: it starts when this one ends */
        return;
    }
    start(r);
}

static void free_refresher(struct refresher *r)
{
    if (r->running != NULL)
        cached_fill_detach(r->running); /* it finishes for the cache, or is cut off */
    if (r->timer != NULL)
        event_free(r->timer);
    site_unref(r->site);
    free(r->path);
    free(r);
}

/* Takes the endpoint over from the configuration in force; a changed definition refreshes at
 * once (its answers were dropped), or as soon as the running one ends. */
static void update(struct refresher *r, struct site *site, const struct config_endpoint *ep)
{
    bool changed = r->ep->ident != ep->ident;
    site_ref(site);
    site_unref(r->site);
    r->site = site;
    r->ep = ep;
    if (!changed)
        return;
    if (r->running != NULL)
        r->due = true;
    else
        event_active(r->timer, EV_TIMEOUT, 0);
}

void refresher_sync(struct router *rt)
{
    struct site *site = rt->site;
    const struct config *cfg = site->cfg;
    bool on = cfg->cache_max_bytes > 0 && rt->env.cache != NULL && !rt->stopped;
    /* Those the configuration no longer refreshes here go. */
    for (struct refresher **pp = &rt->refreshers; *pp != NULL;) {
        struct refresher *r = *pp;
        const struct config_endpoint *ep = config_find(cfg, r->path);
        if (on && ep != NULL && ep->cache.refresh_ms > 0 && pinned_here(rt, ep)) {
            update(r, site, ep);
            pp = &r->next;
        } else {
            *pp = r->next;
            free_refresher(r);
        }
    }
    for (size_t i = 0; on && i < cfg->nendpoints; i++) {
        const struct config_endpoint *ep = &cfg->endpoints[i];
        if (ep->cache.refresh_ms == 0 || !pinned_here(rt, ep))
            continue;
        struct refresher *r = rt->refreshers;
        while (r != NULL && strcmp(r->path, ep->path) != 0)
            r = r->next;
        if (r != NULL)
            continue;
        /* Out of memory: the endpoint is served as a cached one, refreshed by requests. */
        if ((r = calloc(1, sizeof *r)) == NULL)
            continue;
        r->rt = rt;
        r->ep = ep;
        r->site = site_ref(site);
        r->path = strdup(ep->path);
        r->timer = evtimer_new(rt->env.base, on_timer, r);
        if (r->path == NULL || r->timer == NULL) {
            free_refresher(r);
            continue;
        }
        r->next = rt->refreshers;
        rt->refreshers = r;
        event_active(r->timer, EV_TIMEOUT, 0); /* the first at once, from the loop */
    }
}

void refresher_stop(struct router *rt)
{
    rt->stopped = true;
    for (struct refresher *r = rt->refreshers; r != NULL; r = r->next) {
        evtimer_del(r->timer);
        r->due = false;
    }
}

void refresher_destroy(struct router *rt)
{
    while (rt->refreshers != NULL) {
        struct refresher *r = rt->refreshers;
        rt->refreshers = r->next;
        free_refresher(r);
    }
}
