#include "notify.h"

#include "buf.h"
#include "config.h"
#include "config_tls.h"
#include "jsonv.h"
#include "log.h"
#include "metrics.h"
#include "reqid.h"
#include "site.h"
#include "upstream.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct notify_sink;

/* One notification, from its request's done hook to its POST's end. */
struct notify_item {
    struct notifier *n;
    struct notify_sink *sink;
    struct site *site; /* a reference: cfg stays what it was made under */
    const struct config_notify *cfg;
    struct metrics_endpoint *series;
    struct upstream_xfer *x;  /* while its POST runs */
    int slot;                 /* its index in sink->running while it runs */
    struct notify_item *next; /* in its sink's queue */
    char request_id[REQID_MAX + 1];
    char *body; /* the rendered report */
    size_t len;
};

/* Where POSTs go: an origin and connection profile, as the upstream client pools them. */
struct notify_sink {
    char *key; /* origin, "\n", profile id */
    struct notify_item *running[NOTIFY_IN_FLIGHT];
    size_t nrunning;
    struct notify_item *head, *tail; /* waiting, oldest first */
    size_t nqueued;
    struct notify_sink *next;
};

struct notifier {
    struct notify_env env;
    struct notify_sink *sinks; /* only those with something queued or running */
    size_t pending;            /* queued or running, over every sink */
    bool expired;              /* the drain limit passed: everything new is dropped */
    size_t drain_dropped;
};

struct notifier *notify_create(const struct notify_env *env)
{
    struct notifier *n = calloc(1, sizeof *n);
    if (n != NULL)
        n->env = *env;
    return n;
}

static void item_free(struct notify_item *it)
{
    site_unref(it->site);
    free(it->body);
    free(it);
}

/* Counts it with `result` and frees it. */
static void finish(struct notify_item *it, enum metrics_notify result)
{
    struct notifier *n = it->n;
    metrics_notify(it->series, n->env.worker, result);
    if (result == METRICS_NOTIFY_DROPPED && n->expired)
        n->drain_dropped++;
    item_free(it);
}

static void sink_unlink(struct notifier *n, struct notify_sink *s)
{
    for (struct notify_sink **p = &n->sinks; *p != NULL; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    free(s->key);
    free(s);
}

static void on_posted(void *arg, struct upstream_result *res);

/* Starts it on its sink, which has a free slot. One that cannot start (out of memory, curl
 * refused) is counted as failed and freed at once. */
static void start(struct notify_item *it)
{
    struct notifier *n = it->n;
    struct notify_sink *s = it->sink;
    const struct config_notify *c = it->cfg;
    struct upstream_req req = {c->url,     c->timeout_ms, NOTIFY_MAX_ANSWER,
                               c->headers, c->nheaders,   it->request_id,
                               c->tls,     it->body,      it->len};
    it->x = n->env.ops->start(n->env.ctx, &req, on_posted, it);
    if (it->x == NULL) {
        n->pending--;
        finish(it, METRICS_NOTIFY_FAILED);
        return;
    }
    for (int i = 0; i < NOTIFY_IN_FLIGHT; i++)
        if (s->running[i] == NULL) {
            s->running[i] = it;
            it->slot = i;
            break;
        }
    s->nrunning++;
}

/* Starts what waits on s while it has room; frees s once nothing is left on it. */
static void pump(struct notifier *n, struct notify_sink *s)
{
    while (s->head != NULL && s->nrunning < NOTIFY_IN_FLIGHT) {
        struct notify_item *it = s->head;
        s->head = it->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->nqueued--;
        it->next = NULL;
        start(it);
    }
    if (s->nrunning == 0 && s->head == NULL)
        sink_unlink(n, s);
}

static void on_posted(void *arg, struct upstream_result *res)
{
    struct notify_item *it = arg;
    struct notifier *n = it->n;
    struct notify_sink *s = it->sink;
    bool sent = res->error == ERRKIND_NONE && res->status >= 200 && res->status <= 299;
    free(res->body);
    s->running[it->slot] = NULL;
    s->nrunning--;
    n->pending--;
    finish(it, sent ? METRICS_NOTIFY_SENT : METRICS_NOTIFY_FAILED);
    pump(n, s);
    if (n->pending == 0 && n->env.idle != NULL)
        n->env.idle(n->env.arg);
}

/* The sink of url with profile tls, made on first use; NULL when out of memory. */
static struct notify_sink *sink_for(struct notifier *n, const char *url, const char *tls_id)
{
    const char *p = strstr(url, "://");
    p = p != NULL ? p + 3 : url;
    size_t olen = (size_t)(p + strcspn(p, "/?#") - url);
    for (struct notify_sink *s = n->sinks; s != NULL; s = s->next)
        if (strncmp(s->key, url, olen) == 0 && s->key[olen] == '\n' &&
            strcmp(s->key + olen + 1, tls_id) == 0)
            return s;
    struct notify_sink *s = calloc(1, sizeof *s);
    size_t klen = olen + 1 + strlen(tls_id) + 1;
    if (s == NULL || (s->key = malloc(klen)) == NULL) {
        free(s);
        return NULL;
    }
    memcpy(s->key, url, olen);
    s->key[olen] = '\n';
    memcpy(s->key + olen + 1, tls_id, klen - olen - 1);
    s->next = n->sinks;
    n->sinks = s;
    return s;
}

int notify_render(struct buf *b, const struct notify_report *r)
{
    /* request_id is safe by construction (reqid.h); path, names and items are escaped. */
    int rc = buf_printf(b, "{\"request_id\":\"%s\",", r->request_id);
    if (rc == 0)
        rc = log_append_time(b);
    if (rc == 0)
        rc = buf_appends(b, ",\"path\":");
    if (rc == 0)
        rc = jsonv_append_string(b, r->path, strlen(r->path));
    if (rc == 0)
        rc = buf_printf(b, ",\"status\":%d,\"duration_ms\":%.2f,\"cache\":", r->status,
                        (double)r->usec / 1e3);
    if (rc == 0)
        rc = r->cache != NULL ? jsonv_append_string(b, r->cache, strlen(r->cache))
                              : buf_appends(b, "null");
    if (rc == 0)
        rc = buf_appends(b, ",\"backends\":[");
    for (size_t i = 0; rc == 0 && i < r->nlegs; i++) {
        struct access_leg leg = {0};
        r->leg(r->leg_arg, i, &leg);
        bool ok = strcmp(leg.result, "ok") == 0;
        rc = buf_appends(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = jsonv_append_string(b, leg.name, strlen(leg.name));
        if (rc == 0 && leg.item != NULL) {
            rc = buf_appends(b, ",\"item\":");
            if (rc == 0)
                rc = jsonv_append_string(b, leg.item, strlen(leg.item));
        }
        if (rc == 0 && ok)
            rc = buf_appends(b, ",\"ok\":true,\"error\":null");
        else if (rc == 0)
            rc = buf_printf(b, ",\"ok\":false,\"error\":\"%s\"", leg.result);
        if (rc == 0)
            rc = buf_printf(b, ",\"ms\":%.2f}", (double)leg.usec / 1e3);
    }
    if (rc == 0)
        rc = buf_appends(b, "]}");
    return rc;
}

void notify_request(struct notifier *n, struct site *site, const struct config_endpoint *ep,
                    struct metrics_endpoint *series, const struct notify_report *r)
{
    const struct config_notify *c = ep->notify;
    if (n->expired) {
        metrics_notify(series, n->env.worker, METRICS_NOTIFY_DROPPED);
        n->drain_dropped++;
        return;
    }
    struct notify_sink *s = sink_for(n, c->url, c->tls->id);
    if (s == NULL) {
        metrics_notify(series, n->env.worker, METRICS_NOTIFY_DROPPED);
        return;
    }
    /* Full: the newest is dropped, so what waits keeps its order and its age stays bounded. */
    if (s->nrunning == NOTIFY_IN_FLIGHT && s->nqueued >= c->queue) {
        metrics_notify(series, n->env.worker, METRICS_NOTIFY_DROPPED);
        return;
    }
    struct notify_item *it = calloc(1, sizeof *it);
    struct buf b = BUF_INIT;
    if (it == NULL || notify_render(&b, r) < 0) {
        buf_finish(&b);
        free(it);
        metrics_notify(series, n->env.worker, METRICS_NOTIFY_DROPPED);
        pump(n, s); /* frees s if it was made for this one */
        return;
    }
    it->n = n;
    it->sink = s;
    it->site = site_ref(site);
    it->cfg = c;
    it->series = series;
    snprintf(it->request_id, sizeof it->request_id, "%s", r->request_id);
    it->body = buf_steal(&b, &it->len);
    n->pending++;
    if (s->nrunning < NOTIFY_IN_FLIGHT) {
        start(it);
        if (s->nrunning == 0)
            sink_unlink(n, s); /* it could not start: nothing else is on s */
        return;
    }
    if (s->tail != NULL)
        s->tail->next = it;
    else
        s->head = it;
    s->tail = it;
    s->nqueued++;
}

size_t notify_pending(const struct notifier *n)
{
    return n->pending;
}

size_t notify_expire(struct notifier *n)
{
    size_t dropped = n->pending;
    n->expired = true;
    while (n->sinks != NULL) {
        struct notify_sink *s = n->sinks;
        for (int i = 0; i < NOTIFY_IN_FLIGHT; i++)
            if (s->running[i] != NULL) {
                n->env.ops->cancel(n->env.ctx, s->running[i]->x);
                finish(s->running[i], METRICS_NOTIFY_DROPPED);
            }
        for (struct notify_item *it = s->head, *next; it != NULL; it = next) {
            next = it->next;
            finish(it, METRICS_NOTIFY_DROPPED);
        }
        sink_unlink(n, s);
    }
    n->pending = 0;
    return dropped;
}

size_t notify_drain_dropped(const struct notifier *n)
{
    return n->drain_dropped;
}

void notify_destroy(struct notifier *n)
{
    if (n == NULL)
        return;
    notify_expire(n);
    free(n);
}
