/* Fire-and-forget notifications: once a request to an endpoint with a "notify" has been
 * answered, a JSON report of it (request id, time, path, status, duration, cache, each call's
 * outcome) is POSTed to the endpoint's sink. One notifier per worker, on its loop, through the
 * upstream seam (upstream.h), so a POST costs the loop what a backend call does and never
 * blocks it.
 *
 * Bounds: notifications wait in a FIFO per sink (the sink URL's origin and connection
 * profile) on each worker; one that finds `queue` (its endpoint's) already waiting there is
 * dropped. At most NOTIFY_IN_FLIGHT POSTs per sink and worker run at once, so a dead or slow
 * sink holds at most that many connections and `queue` payloads per worker. Nothing here ever
 * touches the answer: the report is made after the answer went out.
 *
 * Each notification holds a reference on the site (the configuration) it was made under, so a
 * reload never changes where, or with which headers, a queued one goes. */
#ifndef GATHERD_NOTIFY_H
#define GATHERD_NOTIFY_H

#include "access.h"

#include <stddef.h>
#include <stdint.h>

struct config_endpoint;
struct metrics_endpoint;
struct notifier;
struct site;
struct upstream_ops;

/* POSTs in flight per sink and worker at most: also the connections a sink can hold. */
#define NOTIFY_IN_FLIGHT 4

/* A sink's answer is read up to this many bytes (and dropped); a longer one is a failure. */
#define NOTIFY_MAX_ANSWER (64 * 1024)

/* Borrowed; outlives the notifier. */
struct notify_env {
    const struct upstream_ops *ops; /* how POSTs are made; ctx is its client */
    void *ctx;
    unsigned worker;         /* the metrics block to count into */
    void (*idle)(void *arg); /* nothing is queued or in flight any more (for the drain) */
    void *arg;
};

/* What one answered request reports. Strings are borrowed for the call. */
struct notify_report {
    const char *request_id, *path;
    /* The response cache's verdict ("hit", "miss", ...); NULL sends null (no cache). */
    const char *cache;
    int status;
    uint64_t usec;
    /* The request's calls, as the access line reads them (access.h); nlegs may be 0. */
    size_t nlegs;
    access_leg_fn leg;
    const void *leg_arg;
};

/* NULL when out of memory. */
struct notifier *notify_create(const struct notify_env *env);

/* Cancels every POST in flight and frees everything, counting what was not sent as dropped
 * (see notify_drain_dropped()); accepts NULL. Must come before the upstream client goes. */
void notify_destroy(struct notifier *n);

/* Appends r as the notification's JSON object. 0 or -ENOMEM. */
int notify_render(struct buf *b, const struct notify_report *r);

/* Reports request r of endpoint ep (which has a notify) of site s: renders it and starts its
 * POST or queues it, or drops it (queue full, out of memory, or after notify_expire()),
 * counting that in `series` (the endpoint's). Takes a reference on s while the notification
 * lives. From the loop; never calls back from inside. */
void notify_request(struct notifier *n, struct site *s, const struct config_endpoint *ep,
                    struct metrics_endpoint *series, const struct notify_report *r);

/* Notifications queued or in flight. */
size_t notify_pending(const struct notifier *n);

/* The drain limit: every notification queued or in flight is dropped (its POST cancelled), and
 * from now on every new one is. Returns how many were dropped now. Does not call env->idle. */
size_t notify_expire(struct notifier *n);

/* Notifications dropped because the drain limit passed or the worker stopped with them left:
 * what the drain could not send. */
size_t notify_drain_dropped(const struct notifier *n);

#endif
