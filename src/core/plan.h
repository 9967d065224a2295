/* The plan of one request: every upstream call it will make, decided from the endpoint and the
 * request before any call starts. Everything downstream works per call, never per configured
 * backend: the aggregation state machine (agg.h) has a slot per call, the access line and the
 * metrics label each call with its backend's name, and coalescing keys on a call's final
 * upstream request. So a request that makes many calls to one backend, or whose URLs depend on
 * the request, has a place to live.
 *
 * An endpoint's plan is one call per backend, in configuration order, labelled by its index;
 * an endpoint with "each" makes one call of its one backend per distinct item of the request,
 * in the request's order, labelled by the item. Placeholders ({item}, path parameters) are
 * substituted percent-encoded. Pure: no I/O, no clock. */
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
    bool coalesce;      /* may share a transfer with an identical call of another request */
    bool required;      /* its failure fails the request */
    size_t index;       /* its position in the plan, and in "results" unless labelled by item */
    const char *item;   /* "each": the item it is for (its label in the answer); else NULL */
    size_t ndeps;       /* calls that must succeed before this one starts */
    const size_t *deps; /* their indexes (a backend's call has its backend's index) */
    bool chained;       /* its URL reads the answers of deps: url is NULL, see plan_chain_url() */
};

/* Immutable once built. Borrows the endpoint, which must outlive it (a request holds a
 * reference to its configuration); owns everything else. */
struct plan {
    const struct config_endpoint *ep;
    long deadline_ms;   /* for the whole answer */
    bool fail_fast;     /* the first failure ends the request */
    size_t concurrency; /* calls in flight at most; 0: no limit */
    bool each;          /* calls are labelled by item: "results" is an object */
    char *store;        /* the substituted URLs */
    char *items;        /* the items, NUL-separated */
    char **params;      /* the request's path parameter values, kept for chained calls */
    size_t ncalls;
    struct plan_call calls[];
};

/* What of the request selects its calls. */
struct plan_request {
    const char *query;         /* the raw query string, not decoded; NULL when there is none */
    const char *const *params; /* decoded path parameter values, by the endpoint's param index */
};

/* Builds the plan for `req` on `ep`. 0 and the plan in *out; -EINVAL with the reason in err
 * when the request cannot be served as asked (a 400: no items, too many, bad encoding);
 * -ENOMEM. */
int plan_build(const struct config_endpoint *ep, const struct plan_request *req, struct plan **out,
               char *err, size_t errlen);

/* The URL of chained call i once its dependencies are DONE in `a`: every placeholder
 * substituted, a {backend:/pointer} by the field the pointer finds in that call's answer (a
 * string as its characters, a number as its JSON text), percent-encoded. 0 and a malloc'd URL
 * in *url; -EINVAL with the reason in err when a pointer finds nothing or something else (the
 * call then fails with error kind "dependency"); -ENOMEM. */
struct agg;
int plan_chain_url(const struct plan *p, size_t i, const struct agg *a, char **url, char *err,
                   size_t errlen);

/* Frees the plan; accepts NULL. */
void plan_destroy(struct plan *p);

/* The name a call is labelled with in errors, access lines and metrics: its backend's. */
const char *plan_call_name(const struct plan_call *c);

/* The distinct items of query parameter `param` in a raw query string: every value of it,
 * percent-decoded, split on ','; empty pieces skipped, duplicates dropped (the first one keeps
 * its place). Writes them NUL-separated to *store (malloc'd, the caller frees it) and their
 * count to *n. -EINVAL with the reason in err for a value that is not valid percent-encoding,
 * no items, or more than max distinct ones; -ENOMEM. */
int plan_items(const char *query, const char *param, size_t max, char **store, size_t *n, char *err,
               size_t errlen);

/* Matches the raw path[0..plen) (not decoded) against ep's segments (config.h): each literal
 * segment must equal the decoded raw segment, each parameter takes one whole raw segment,
 * decoded. 1 on a match, with the decoded values, by the endpoint's param index, in *values
 * (one allocation; the caller frees it); 0 when the path has another shape; -EINVAL when it
 * has this shape but parameter *bad is not valid percent-encoding or decodes to a NUL byte
 * (the endpoint's 400); -ENOMEM. Patterns are the caller's to check. */
int plan_match_path(const struct config_endpoint *ep, const char *path, size_t plen, char ***values,
                    size_t *bad);

#endif
