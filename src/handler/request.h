/* Internal to handler/: one request as the router and the endpoints that serve it see it, and
 * the router they share. Nothing outside handler/ includes this header. */
#ifndef GATHERD_REQUEST_H
#define GATHERD_REQUEST_H

#include "access.h"
#include "netacl.h"
#include "router.h"
#include "stream.h"

#include <stdbool.h>

struct config_endpoint;
struct event;
struct fanout;
struct httpd_req;
struct metrics_endpoint;

enum request_route {
    REQUEST_AGGREGATE,
    REQUEST_HEALTHZ,
    REQUEST_READYZ,
    REQUEST_METRICS,
    REQUEST_NOT_FOUND,
};

struct router {
    struct router_env env;
    struct site *site;          /* the configuration new requests are served under */
    bool expired;               /* the drain limit passed: no new aggregates */
    struct request *aggregates; /* parked aggregate requests, for the drain limit */
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
};

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
