#include "router.h"

#include "access.h"
#include "buf.h"
#include "config.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "plan.h"
#include "request.h"
#include "site.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parameterised endpoint for the raw target: the first, in configuration order, whose
 * segments match and whose every value matches its pattern. A path with the shape of one but
 * a value its pattern refuses is that endpoint's 400 (q->bad says why). NULL when no
 * endpoint has the path's shape (404). */
static const struct config_endpoint *route_params(struct request *q, const char *target)
{
    const struct config *cfg = q->site->cfg;
    const struct config_endpoint *refused = NULL;
    if (target == NULL)
        return NULL;
    size_t plen = strcspn(target, "?#");
    for (size_t e = 0; e < cfg->nendpoints; e++) {
        const struct config_endpoint *ep = &cfg->endpoints[e];
        char **values = NULL;
        size_t undecodable = 0;
        int rc = ep->segs != NULL ? plan_match_path(ep, target, plen, &values, &undecodable) : 0;
        if (rc == -EINVAL && refused == NULL) {
            refused = ep;
            snprintf(q->bad, sizeof q->bad, "path parameter %.60s is not valid percent-encoding",
                     ep->params[undecodable].name);
        }
        if (rc <= 0)
            continue;
        size_t bad = ep->nparams;
        for (size_t i = 0; i < ep->nparams && bad == ep->nparams; i++)
            if (!site_param_matches(q->site, q->rt->env.worker, &ep->params[i], values[i]))
                bad = i;
        if (bad == ep->nparams) {
            q->params = values;
            q->bad[0] = '\0';
            return ep;
        }
        if (refused == NULL) {
            refused = ep;
            snprintf(q->bad, sizeof q->bad, "path parameter %.60s must match %.100s",
                     ep->params[bad].name, ep->params[bad].pattern);
        }
        free(values);
    }
    return refused;
}

static void on_begin(void *arg, struct httpd_req *hr, const char *url)
{
    struct router *rt = arg;
    struct request *q = calloc(1, sizeof *q);
    if (q == NULL)
        return; /* serve and done find no state: the connection is closed unanswered */
    q->rt = rt;
    q->hr = hr;
    q->site = site_ref(rt->site);
    const struct config *cfg = q->site->cfg;
    if (cfg->access_log)
        httpd_req_client(hr, cfg->trusted_proxies, q->client, sizeof q->client);
    if ((q->ep = config_find(cfg, url)) != NULL ||
        (cfg->nparams_total > 0 && (q->ep = route_params(q, httpd_req_target(hr))) != NULL)) {
        q->route = REQUEST_AGGREGATE;
        q->stats = site_endpoint_series(q->site, q->ep);
    } else if (strcmp(url, "/healthz") == 0) {
        q->route = REQUEST_HEALTHZ;
        q->stats = rt->m_healthz;
    } else if (strcmp(url, "/readyz") == 0) {
        q->route = REQUEST_READYZ;
        q->stats = rt->m_readyz;
    } else if (strcmp(url, "/metrics") == 0) {
        q->route = REQUEST_METRICS;
        q->stats = rt->m_metrics;
    } else {
        q->route = REQUEST_NOT_FOUND;
        q->stats = rt->m_unmatched;
    }
    httpd_req_set_ctx(hr, q);
}

static void on_serve(void *arg, struct httpd_req *hr)
{
    struct request *q = httpd_req_ctx(hr);
    (void)arg;
    if (q == NULL)
        return;
    if (q->route == REQUEST_NOT_FOUND) {
        char msg[240];
        snprintf(msg, sizeof msg, "no endpoint at %s", httpd_req_path(hr));
        httpd_respond_error(hr, 404, "not_found", msg, NULL, 0);
        return;
    }
    if (strcmp(httpd_req_method(hr), "GET") != 0 && !httpd_req_is_head(hr)) {
        static const struct httpd_header allow = {"Allow", "GET, HEAD"};
        httpd_respond_error(hr, 405, "method_not_allowed", "only GET and HEAD are allowed", &allow,
                            1);
        return;
    }
    if (q->route == REQUEST_AGGREGATE && q->bad[0] != '\0')
        httpd_respond_error(hr, 400, "bad_request", q->bad, NULL, 0);
    else if (q->route == REQUEST_AGGREGATE)
        aggregate_serve(q);
    else
        builtin_serve(q);
}

static void on_gone(void *arg, struct httpd_req *hr)
{
    struct request *q = httpd_req_ctx(hr);
    (void)arg;
    if (q != NULL && q->route == REQUEST_AGGREGATE)
        aggregate_gone(q);
}

static void log_access_line(struct request *q, const struct httpd_outcome *o)
{
    struct access_entry e = {
        .request_id = httpd_req_id(q->hr),
        .method = httpd_req_method(q->hr),
        .path = httpd_req_path(q->hr),
        .status = o->status,
        .worker = (int)q->rt->env.worker,
        .usec = o->usec,
        .bytes = o->bytes,
        .client = q->client,
        .nlegs = aggregate_nlegs(q),
        .leg = aggregate_leg,
        .leg_arg = q,
        .summarise = q->ep != NULL && q->ep->each_param != NULL,
        .stream = q->stream == STREAM_NDJSON ? "ndjson"
                  : q->stream == STREAM_SSE  ? "sse"
                                             : NULL,
        .cache = q->cache,
    };
    struct buf b = BUF_INIT;
    if (access_format(&b, &e) == 0)
        log_access(q->rt->env.log, b.data, b.len);
    buf_finish(&b);
}

/* The answer has gone out (or the client left): the endpoint's sink hears of it. */
static void notify_done(struct request *q, const struct httpd_outcome *o)
{
    struct notify_report r = {
        .request_id = httpd_req_id(q->hr),
        .path = httpd_req_path(q->hr),
        .cache = q->cache,
        .status = o->status,
        .usec = o->usec,
        .nlegs = aggregate_nlegs(q),
        .leg = aggregate_leg,
        .leg_arg = q,
    };
    notify_request(q->rt->env.notifier, q->site, q->ep, q->stats, &r);
}

static void on_done(void *arg, struct httpd_req *hr, const struct httpd_outcome *o)
{
    struct router *rt = arg;
    struct request *q = httpd_req_ctx(hr);
    if (q != NULL) {
        metrics_request_done(q->stats, rt->env.worker, o->status, o->usec);
        q->client_gone = o->client_gone;
        if (q->site->cfg->access_log)
            log_access_line(q, o);
        if (q->route == REQUEST_AGGREGATE && q->ep->notify != NULL && rt->env.notifier != NULL)
            notify_done(q, o);
        aggregate_release(q);
        site_unref(q->site);
        free(q->params);
        free(q);
    }
    rt->env.finished(rt->env.arg);
}

/* The access line of a request that never reached begin (libmicrohttpd refused it, or its head
 * timed out): the configuration in use now decides whether there is one. */
static void on_refused(void *arg, struct httpd_req *hr, const struct httpd_outcome *o)
{
    struct router *rt = arg;
    const struct config *cfg = rt->site->cfg;
    if (!cfg->access_log)
        return;
    struct request q = {.rt = rt, .hr = hr, .site = rt->site};
    httpd_req_client(hr, cfg->trusted_proxies, q.client, sizeof q.client);
    log_access_line(&q, o);
}

const struct httpd_hooks router_hooks = {on_begin, on_serve, on_gone, on_done, on_refused};

struct router *router_create(const struct router_env *env, struct site *site)
{
    struct router *rt = calloc(1, sizeof *rt);
    if (rt == NULL)
        return NULL;
    rt->env = *env;
    rt->site = site_ref(site);
    rt->m_unmatched = metrics_builtin(env->metrics, "(unmatched)");
    rt->m_healthz = metrics_builtin(env->metrics, "/healthz");
    rt->m_readyz = metrics_builtin(env->metrics, "/readyz");
    rt->m_metrics = metrics_builtin(env->metrics, "/metrics");
    if (cached_router_init(rt) < 0) {
        site_unref(rt->site);
        free(rt);
        return NULL;
    }
    refresher_sync(rt);
    return rt;
}

void router_destroy(struct router *rt)
{
    if (rt == NULL)
        return;
    refresher_destroy(rt);
    cached_destroy_fills(rt);
    cached_router_finish(rt);
    site_unref(rt->site);
    free(rt);
}

void router_set_site(struct router *rt, struct site *site)
{
    site_ref(site);
    site_unref(rt->site);
    rt->site = site;
    refresher_sync(rt);
}

void router_drain(struct router *rt)
{
    refresher_stop(rt);
}

void router_expire(struct router *rt, const char *why)
{
    rt->expired = true;
    aggregate_expire(rt, why);
}

const char *request_query(const struct request *q)
{
    const char *target = httpd_req_target(q->hr);
    const char *query = target != NULL ? strchr(target, '?') : NULL;
    return query != NULL ? query + 1 : NULL;
}
