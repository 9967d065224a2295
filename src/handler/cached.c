/* The response cache on the request path, for endpoints with "cache": the key of a request, the
 * lookup, answers from a stored entry (borrowed, not copied), waiting for a fill, and the fills
 * themselves: fan-outs run on this loop for the cache with no client of their own, whose answer
 * goes to every request waiting for the key on any worker (cache.h).
 *
 * A fill outlives the request that started it: a client that leaves only unregisters its
 * waiter, and the fill finishes (bounded by the endpoint's deadline) for the other waiters and
 * for the cache. So nobody has to hand ownership on, and a request arriving later still finds
 * the answer stored. */
#include "agg.h"
#include "buf.h"
#include "cache.h"
#include "clock.h"
#include "config.h"
#include "fanout.h"
#include "httpd.h"
#include "metrics.h"
#include "plan.h"
#include "request.h"
#include "site.h"

#include <event2/event.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_TYPE "application/json"

/* A fan-out for one key of the cache; owned by the router of its loop (rt->fills). */
struct fill {
    struct router *rt;
    struct site *site; /* reference: the configuration its plan borrows from */
    struct cache_fill *cf;
    struct fanout *fanout;
    struct event *reap; /* frees it after its fan-out's callback returned */
    struct fill *prev, *next;
    cached_fill_fn done; /* NULL, or told of the answer (a refresher) */
    void *arg;
};

static void unlink_fill(struct fill *f)
{
    if (f->prev != NULL)
        f->prev->next = f->next;
    else if (f->rt->fills == f)
        f->rt->fills = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
}

static void fill_free(struct fill *f)
{
    unlink_fill(f);
    fanout_destroy(f->fanout);
    if (f->reap != NULL)
        event_free(f->reap);
    site_unref(f->site);
    free(f);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fill_free(arg);
}

/* Complete: 200 and every call succeeded; only such answers are stored. */
static bool is_complete(const struct fanout *fo, int status)
{
    const struct agg *a = fanout_agg(fo);
    if (status != 200)
        return false;
    for (size_t i = 0; i < agg_count(a); i++)
        if (agg_state_of(a, i) != AGG_DONE)
            return false;
    return true;
}

static void on_fill_done(void *arg, int status, char *body, size_t len)
{
    struct fill *f = arg;
    struct cache *c = f->rt->env.cache;
    struct cache_answer *a = cache_answer_create(
        c, body != NULL ? status : 500, body != NULL && is_complete(f->fanout, status), body, len);
    bool stored = false;
    if (a != NULL)
        stored = cache_fill_done(c, f->cf, a);
    else
        cache_fill_abandon(c, f->cf);
    f->cf = NULL;
    if (f->done != NULL)
        f->done(f->arg, a, stored);
    cache_answer_unref(a);
    event_active(f->reap, EV_TIMEOUT, 0);
}

struct fill *cached_fill_start(struct router *rt, struct site *site, struct plan *plan,
                               struct cache_fill *cf, const char *request_id, cached_fill_fn done,
                               void *arg)
{
    struct fill *f = calloc(1, sizeof *f);
    if (f == NULL || (f->reap = event_new(rt->env.base, -1, 0, on_reap, f)) == NULL) {
        free(f);
        plan_destroy(plan);
        cache_fill_abandon(rt->env.cache, cf);
        return NULL;
    }
    f->rt = rt;
    f->site = site_ref(site);
    f->cf = cf;
    f->done = done;
    f->arg = arg;
    struct fanout_env env = {
        rt->env.base, rt->env.flights, site->series, rt->env.worker, NULL, NULL, false};
    f->fanout = fanout_start(&env, plan, request_id, on_fill_done, f);
    if (f->fanout == NULL) {
        f->cf = NULL;
        fill_free(f);
        cache_fill_abandon(rt->env.cache, cf);
        return NULL;
    }
    f->next = rt->fills;
    if (rt->fills != NULL)
        rt->fills->prev = f;
    rt->fills = f;
    return f;
}

void cached_fill_detach(struct fill *f)
{
    f->done = NULL;
}

void cached_expire_fills(struct router *rt, const char *why)
{
    for (struct fill *f = rt->fills; f != NULL; f = f->next)
        if (f->cf != NULL)
            fanout_expire(f->fanout, why);
}

void cached_destroy_fills(struct router *rt)
{
    while (rt->fills != NULL) {
        struct fill *f = rt->fills;
        if (f->cf != NULL)
            cache_fill_abandon(rt->env.cache, f->cf);
        fill_free(f);
    }
}

static void release_answer(void *arg)
{
    cache_answer_unref(arg);
}

/* Seconds, as the headers count them: whole ones, rounded down (Age, RFC 9111 5.1). */
static long whole_s(int64_t us)
{
    return us >= 0 ? (long)(us / 1000000) : -(long)((-us + 999999) / 1000000);
}

/* Answers q with a (a reference, passed on), with the cache's headers; `status` is the
 * Cache-Status value after "gatherd; ". `stored`: a is held by the cache (so may be cached
 * downstream for what freshness it has left). */
static void answer(struct request *q, struct cache_answer *a, const char *how, bool stored)
{
    char age[24], cc[40], cs[120];
    int64_t held = (int64_t)(clock_us() - a->stored_us);
    int64_t left = (int64_t)q->ep->cache.ttl_ms * 1000 - held;
    long ttl = whole_s(left);
    snprintf(age, sizeof age, "%ld", whole_s(held));
    snprintf(cc, sizeof cc, stored ? "max-age=%ld" : "no-store", ttl > 0 ? ttl : 0);
    if (stored)
        snprintf(cs, sizeof cs, "gatherd; %s; ttl=%ld", how, ttl);
    else
        snprintf(cs, sizeof cs, "gatherd; %s", how);
    /* A stream of the same endpoint (Accept) is another representation, never cached. */
    struct httpd_header h[] = {{"Cache-Control", cc},
                               {"Cache-Status", cs},
                               {"Age", age},
                               {"Vary", "Accept"},
                               {"ETag", a->etag}};
    size_t nh = a->status == 200 ? 5 : 4;
    if (a->len == 0 && a->status == 500) { /* rendering the join ran out of memory */
        cache_answer_unref(a);
        httpd_respond_error(q->hr, 500, "internal", "out of memory", h, 4);
        return;
    }
    const char *inm = a->status == 200 ? httpd_req_header(q->hr, "If-None-Match") : NULL;
    if (inm != NULL && cache_etag_matches(inm, a->etag)) {
        /* Given the body, libmicrohttpd sends none for a 304 but says its length, which is
         * what RFC 9110 allows a 304's Content-Length to say. */
        httpd_respond_borrowed(q->hr, 304, JSON_TYPE, a->body, a->len, release_answer, a, h, nh);
        return;
    }
    httpd_respond_borrowed(q->hr, a->status, JSON_TYPE, a->body, a->len, release_answer, a, h, nh);
}

/* Answers q, woken: its fill has ended (cache.h filled q->waiter). */
static void deliver(struct request *q)
{
    struct cache_answer *a = q->waiter.answer;
    q->waiter.answer = NULL;
    q->waiting = false;
    if (a == NULL) {
        httpd_respond_error(q->hr, 503, "unavailable", "the answer was abandoned at shutdown", NULL,
                            0);
        return;
    }
    char how[80];
    if (q->waiter.stale) /* the new answer was not complete: the last complete one */
        snprintf(how, sizeof how, "fwd=stale; fwd-status=%d%s", q->waiter.fwd_status,
                 q->cache_result == CACHE_COLLAPSED ? "; collapsed" : "");
    else
        snprintf(how, sizeof how, "fwd=%s%s%s", q->had_stale ? "stale" : "miss",
                 q->cache_result == CACHE_COLLAPSED ? "; collapsed" : "",
                 q->waiter.stored ? "; stored" : "");
    answer(q, a, how, q->waiter.stored || q->waiter.stale);
}

/* The router's mailbox for woken waiters: fills end on any worker, and each wakes the loop of
 * its waiters through the list and the one event of their router, so that waiting costs a
 * request no event (nor a hit an allocation). */
static void on_woken(evutil_socket_t fd, short what, void *arg)
{
    struct router *rt = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&rt->woken_mu);
    struct request *list = rt->woken;
    rt->woken = NULL;
    for (struct request *q = list; q != NULL; q = q->woken_next)
        q->woken_queued = false;
    pthread_mutex_unlock(&rt->woken_mu);
    /* Answering never frees a request here (done comes from the daemon's run), so the list
     * stays valid while it is walked. */
    for (struct request *q = list, *next; q != NULL; q = next) {
        next = q->woken_next;
        q->woken_next = NULL;
        deliver(q);
    }
}

/* Runs on the thread that ended the fill, with the cache's lock held: queues q on its own
 * router and wakes that loop, nothing more. */
static void notify(void *arg)
{
    struct request *q = arg;
    struct router *rt = q->rt;
    pthread_mutex_lock(&rt->woken_mu);
    q->woken_next = rt->woken;
    q->woken_queued = true;
    rt->woken = q;
    pthread_mutex_unlock(&rt->woken_mu);
    event_active(rt->wake, EV_READ, 0);
}

int cached_router_init(struct router *rt)
{
    if (pthread_mutex_init(&rt->woken_mu, NULL) != 0)
        return -ENOMEM;
    if ((rt->wake = event_new(rt->env.base, -1, 0, on_woken, rt)) == NULL) {
        pthread_mutex_destroy(&rt->woken_mu);
        return -ENOMEM;
    }
    return 0;
}

void cached_router_finish(struct router *rt)
{
    if (rt->wake == NULL)
        return;
    event_free(rt->wake);
    rt->wake = NULL;
    pthread_mutex_destroy(&rt->woken_mu);
}

int cached_key(const struct config_endpoint *ep, char *const *params, const char *items,
               size_t nitems, struct buf *key)
{
    int rc = cache_key_begin(key, ep->ident);
    if (rc == 0)
        rc = cache_key_part(key, ep->path, strlen(ep->path));
    for (size_t i = 0; rc == 0 && i < ep->nparams; i++)
        rc = cache_key_part(key, params[i], strlen(params[i]));
    for (size_t i = 0; rc == 0 && i < nitems; i++, items += strlen(items) + 1)
        rc = cache_key_part(key, items, strlen(items));
    return rc;
}

static const enum metrics_cache_result as_metric[CACHE_NRESULTS] = {
    [CACHE_HIT] = METRICS_CACHE_HIT,
    [CACHE_STALE] = METRICS_CACHE_STALE,
    [CACHE_MISS] = METRICS_CACHE_MISS,
    [CACHE_COLLAPSED] = METRICS_CACHE_COLLAPSED,
};

/* Runs the fan-out for cf (the key q missed). Out of memory: the fill is abandoned, and its
 * waiters are answered 503 at once. */
static void run_fill(struct request *q, struct cache_fill *cf)
{
    struct plan_request preq = {request_query(q), (const char *const *)q->params};
    struct plan *plan;
    char why[300];
    if (plan_build(q->ep, &preq, &plan, why, sizeof why) < 0) /* the items parsed before */
        cache_fill_abandon(q->rt->env.cache, cf);
    else
        cached_fill_start(q->rt, q->site, plan, cf, httpd_req_id(q->hr), NULL, NULL);
}

bool cached_serve(struct request *q)
{
    struct router *rt = q->rt;
    const struct config_endpoint *ep = q->ep;
    if (ep->cache.ttl_ms == 0 || q->site->cfg->cache_max_bytes == 0 || rt->env.cache == NULL)
        return false;
    /* The key needs the items (and they may make a 400), not the plan: a hit builds none. */
    char *items = NULL, why[300];
    size_t nitems = 0;
    int rc = 0;
    if (ep->each_param != NULL && (rc = plan_items(request_query(q), ep->each_param, ep->max_items,
                                                   &items, &nitems, why, sizeof why)) == -EINVAL) {
        httpd_respond_error(q->hr, 400, "bad_request", why, NULL, 0);
        return true;
    }
    struct buf key = BUF_INIT;
    struct cache_policy p = {ep->cache.ttl_ms, ep->cache.stale_while_revalidate_ms,
                             ep->cache.stale_if_error_ms};
    struct cache_lookup lk;
    q->waiter.notify = notify;
    q->waiter.arg = q;
    if (rc < 0 || cached_key(ep, q->params, items, nitems, &key) < 0 ||
        cache_lookup(rt->env.cache, key.data, key.len, &p, &q->waiter, &lk) < 0) {
        free(items);
        buf_finish(&key);
        httpd_respond_error(q->hr, 500, "internal", "out of memory", NULL, 0);
        return true;
    }
    free(items);
    buf_finish(&key);
    static const char *const names[CACHE_NRESULTS] = {"hit", "stale", "miss", "collapsed"};
    q->cache = names[lk.result]; /* the access line's and the notification's "cache" */
    q->cache_result = lk.result;
    q->had_stale = lk.had_stale;
    metrics_cache_lookup(q->stats, rt->env.worker, as_metric[lk.result]);
    if (lk.result == CACHE_HIT || lk.result == CACHE_STALE) {
        if (lk.fill != NULL) /* stale_while_revalidate: refreshed in the background */
            run_fill(q, lk.fill);
        answer(q, lk.answer, lk.result == CACHE_HIT ? "hit" : "fwd=stale", true);
        return true;
    }
    /* MISS or COLLAPSED: q waits for the fill's answer, parked; a fill runs for the others
     * even when q's client has already gone (it then ends as 499). */
    q->waiting = true;
    if (httpd_park(q->hr) < 0)
        cached_release(q);
    if (lk.fill != NULL)
        run_fill(q, lk.fill);
    return true;
}

void cached_release(struct request *q)
{
    if (!q->waiting)
        return;
    q->waiting = false;
    struct router *rt = q->rt;
    cache_waiter_cancel(rt->env.cache, &q->waiter); /* no notify can follow */
    pthread_mutex_lock(&rt->woken_mu);
    if (q->woken_queued) { /* notified, not yet delivered: taken off the mailbox */
        struct request **pp = &rt->woken;
        while (*pp != q)
            pp = &(*pp)->woken_next;
        *pp = q->woken_next;
        q->woken_next = NULL;
        q->woken_queued = false;
    }
    pthread_mutex_unlock(&rt->woken_mu);
    cache_answer_unref(q->waiter.answer);
    q->waiter.answer = NULL;
}
