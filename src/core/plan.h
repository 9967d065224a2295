/* The plan of one request: every upstream call it will make, decided from the endpoint and the
 * request before any call starts. Everything downstream works per call, never per configured
 * backend: the aggregation state machine (agg.h) has a slot per call, the access line and the
 * metrics label each call with its backend's name, and coalescing keys on a call's final
 * upstream request. So a request that makes many calls to one backend, or whose URLs depend on
 * the request or on another call's answer, has a place to live.
 *
 * Today an endpoint's plan is one call per backend, in configuration order, with the backend's
 * own URL and headers, labelled by its index, depending on nothing. Pure: no I/O, no clock. */
#ifndef GATHERD_PLAN_H
#define GATHERD_PLAN_H

#include <stdbool.h>
#include <stddef.h>

struct config_backend;
struct config_endpoint;

struct plan_call {
    const struct config_backend *be; /* where the call comes from; borrowed from the endpoint */
    const char *url;                 /* the final URL */
    char *const *headers;            /* the final "Name: value" lines */
    size_t nheaders;
    long timeout_ms;
    size_t max_body;
    bool coalesce; /* may share a transfer with an identical call of another request */
    size_t index;  /* its label in the answer: the position in "results" */
    size_t ndeps;  /* calls that must succeed before this one starts; none today */
    const size_t *deps;
};

/* Immutable once built. Borrows the endpoint, which must outlive it (a request holds a
 * reference to its configuration); owns everything else. */
struct plan {
    const struct config_endpoint *ep;
    long deadline_ms; /* for the whole answer */
    size_t ncalls;
    struct plan_call calls[];
};

/* What of the request selects its calls: nothing yet (items, path parameters and the like
 * later). */
struct plan_request {
    const char *path;
};

/* Builds the plan for `req` on `ep`. 0 and the plan in *out, or -ENOMEM. */
int plan_build(const struct config_endpoint *ep, const struct plan_request *req, struct plan **out);

/* Frees the plan; accepts NULL. */
void plan_destroy(struct plan *p);

/* The name a call is labelled with in errors, access lines and metrics. */
const char *plan_call_name(const struct plan_call *c);

#endif
