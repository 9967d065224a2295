/* Internal to handler/: one request as the router and the endpoints that serve it see it, and
 * the router they share. Nothing outside handler/ includes this header. */
#ifndef GATHERD_REQUEST_H
#define GATHERD_REQUEST_H

#include "access.h"
#include "cache.h"
#include "netacl.h"
#include "router.h"
#include "stream.h"

#include <pthread.h>
#include <stdbool.h>

struct config_endpoint;
struct event;
struct fanout;
struct fill;
struct httpd_req;
struct metrics_endpoint;
struct plan;

enum request_route {
    REQUEST_AGGREGATE,
    REQUEST_HEALTHZ,
    REQUEST_READYZ,
    REQUEST_METRICS,
    REQUEST_NOT_FOUND,
};

struct router {
    struct router_env env;
    struct site *site;            /* the configuration new requests are served under */
    bool expired;                 /* the drain limit passed: no new aggregates */
    struct request *aggregates;   /* parked aggregate requests, for the drain limit */
    struct fill *fills;           /* cache fills running on this loop (cached.c) */
    struct refresher *refreshers; /* the refreshed endpoints pinned to this loop */
    /* Waiters whose fill has ended, queued by the thread that ended it (cached.c). */
    pthread_mutex_t woken_mu;
    struct request *woken; /* guarded by woken_mu */
    struct event *wake;
    bool stopped; /* the drain began: no refresh starts */
    struct metrics_endpoint *m_unmatched, *m_healthz, *m_readyz, *m_metrics;
};

/* Everything one request owns in the handler; created by the begin hook, freed by done. */
struct request {
    struct router *rt;
    struct httpd_req *hr;
    struct site *site; /* reference held for the request's lifetime */
    enum request_route route;
    const struct config_endpoint *ep; /* REQUEST_AGGREGATE */
    struct metrics_endpoint *stats;
    struct fanout *fanout;       /* once it fanned out */
    char **params;               /* path parameter values, decoded, by the endpoint's param index */
    char bad[200];               /* why the path's parameters cannot be served (400), or empty */
    struct request *prev, *next; /* in rt->aggregates while parked */
    bool client_gone;            /* set once done: it left before its answer */
    enum stream_mode stream;     /* how the answer goes out */
    struct event *keepalive;     /* SSE: comment lines while the stream idles */
    size_t ok, failed;           /* streamed calls so far */
    /* The response cache's verdict on this request ("hit", "miss", ...), the one place it is
     * set: the access line shows it and the notification reports it as "cache" (notify.h).
     * NULL: none known (no member in the access line, null in the notification). */
    const char *cache;
    char client[NETACL_ADDRSTRLEN];
    /* cached.c: the response cache, for an endpoint with "cache" */
    enum cache_result cache_result; /* how its lookup went, once cache is set */
    bool had_stale;                 /* an expired answer was held when it looked up */
    bool waiting;                   /* waiter is registered with a fill, or woken */
    struct cache_waiter waiter;
    struct request *woken_next; /* in rt->woken; both guarded by rt->woken_mu */
    bool woken_queued;
};

/* cached.c: serves q (not a stream) from the cache, or parks it to wait for the fill of its
 * key. False when the endpoint is not cached here: the caller serves it as usual. */
bool cached_serve(struct request *q);
/* The router's mailbox for woken waiters. init: 0 or -ENOMEM; finish accepts a failed init. */
int cached_router_init(struct router *rt);
void cached_router_finish(struct router *rt);
/* Unregisters q from its fill (gone or done); idempotent. */
void cached_release(struct request *q);
/* The fills of this loop: cut off at the drain limit; abandoned when the router goes. */
void cached_expire_fills(struct router *rt, const char *why);
void cached_destroy_fills(struct router *rt);

/* A fan-out for the cache with no request of its own (a background refresh): runs plan (taken
 * over) for cf on rt's loop under site, and tells done (if not NULL, and not detached) of the
 * answer (borrowed) and whether it was stored. NULL when it could not start (cf was then
 * abandoned, and done is not called). */
struct cache_answer;
typedef void (*cached_fill_fn)(void *arg, const struct cache_answer *a, bool stored);
struct fill *cached_fill_start(struct router *rt, struct site *site, struct plan *plan,
                               struct cache_fill *cf, const char *request_id, cached_fill_fn done,
                               void *arg);
/* Its done is not called any more: the fill finishes for the cache and its waiters alone. */
void cached_fill_detach(struct fill *f);
/* The key of ep's answer for these path values (ep->nparams of them) and the nitems
 * NUL-separated items (plan_items()). */
struct buf;
int cached_key(const struct config_endpoint *ep, char *const *params, const char *items,
               size_t nitems, struct buf *key);

/* refresher.c: one background refresher per refreshed endpoint per process, each on the
 * worker its path hashes to. sync follows rt->site (added, removed, changed); stop (the drain)
 * starts no refresh from now on; destroy frees them (running fills finish or are cut off with
 * the router's other fills). */
struct refresher;
void refresher_sync(struct router *rt);
void refresher_stop(struct router *rt);
void refresher_destroy(struct router *rt);

/* router.c: the request's raw query string (after '?', not decoded), or NULL when it has none;
 * what selects an "each" endpoint's items. */
const char *request_query(const struct request *q);

/* builtin.c: /healthz, /readyz, /metrics. */
void builtin_serve(struct request *q);

/* aggregate.c */
void aggregate_serve(struct request *q);
void aggregate_gone(struct request *q);
/* The request is done: forgets it and frees its fan-out. */
void aggregate_release(struct request *q);
void aggregate_expire(struct router *rt, const char *why);
/* The access line's view of the request's calls; q is a const struct request *. */
void aggregate_leg(const void *q, size_t i, struct access_leg *out);
size_t aggregate_nlegs(const struct request *q);

#endif
