/* What a worker serves over HTTP: the hooks (http/httpd.h) that route each request to one of
 * gatherd's own endpoints (builtin.c) or to an aggregate endpoint of the configuration in force
 * (aggregate.c), and that record every request in the metrics and the access log once it is
 * done. One per worker, on its loop. */
#ifndef GATHERD_ROUTER_H
#define GATHERD_ROUTER_H

#include <stdatomic.h>

struct cache;
struct event_base;
struct flights;
struct httpd_hooks;
struct log_sink;
struct log_writer;
struct metrics;
struct router;
struct site;

/* Borrowed; outlives the router. */
struct router_env {
    struct event_base *base;
    unsigned worker; /* the metrics block it records into */
    struct log_sink *log;
    struct metrics *metrics;     /* the registry: gatherd's own series, and /metrics */
    struct log_writer *logw;     /* whose dropped-line count /metrics reports */
    const atomic_int *draining;  /* /readyz answers 503 once set */
    struct flights *flights;     /* every upstream call starts through it */
    struct cache *cache;         /* the process's response cache; NULL: none */
    struct notifier *notifier;   /* reports requests of endpoints with a notify; NULL: none */
    void (*finished)(void *arg); /* a request is done (for the drain) */
    void *arg;
};

/* NULL when out of memory. Takes a reference on site. */
struct router *router_create(const struct router_env *env, struct site *site);

/* Frees the router; accepts NULL. Every request must be done (httpd_destroy() first). */
void router_destroy(struct router *rt);

/* The hooks to give the daemon, with the router as their argument. */
extern const struct httpd_hooks router_hooks;

/* New requests are served under `site` (a reference is taken); requests in flight keep theirs.
 * The background refreshers follow it. */
void router_set_site(struct router *rt, struct site *site);

/* The drain began: no background refresh starts from now on (running ones finish, or are cut
 * off at the drain limit). */
void router_drain(struct router *rt);

/* The drain limit: every aggregate still waiting has its running calls cut off as timeouts and
 * is answered with what it has; aggregate requests from now on get 503. */
void router_expire(struct router *rt, const char *why);

#endif
