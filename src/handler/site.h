/* What one configuration generation serves: the configuration itself, immutable, and the
 * tables that live beside it (the metrics series its endpoints and backends record into, the
 * URLs they call).
 * Built by the control thread at start and on every reload, then shared read-only by every
 * worker; each request holds a reference for its whole life, so a reload never changes what a
 * request in flight sees, and a site is freed when its last reference is dropped. */
#ifndef GATHERD_SITE_H
#define GATHERD_SITE_H

#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>

struct config;
struct config_backend;
struct config_endpoint;
struct metrics;
struct metrics_backend;
struct metrics_endpoint;
struct metrics_table;

struct config_param;

struct site {
    atomic_int refs;
    struct config *cfg;           /* one reference, dropped with the site */
    struct metrics_table *series; /* by the configuration's ids */
    /* The path parameters' patterns compiled once per worker: glibc's regexec() takes a lock
     * in the compiled pattern, which one copy shared by every loop would make a point of
     * contention on the request path. */
    unsigned nworkers;
    regex_t *patterns; /* [worker * cfg->nparams_total + param id] */
    /* Every backend's URL (by id), then every notify's, borrowed from cfg: the origins the
     * upstream client keeps pools for. */
    const char **urls;
    size_t nurls;
};

/* Takes a reference on cfg, binds its metrics in m and compiles its path patterns for
 * `nworkers` loops. NULL when out of memory. */
struct site *site_create(struct config *cfg, struct metrics *m, unsigned nworkers);

/* Whether the decoded value matches path parameter p's pattern, on worker w's copy. */
bool site_param_matches(const struct site *s, unsigned w, const struct config_param *p,
                        const char *value);

/* Reference counting; safe from any thread. unref accepts NULL and frees at zero. */
struct site *site_ref(struct site *s);
void site_unref(struct site *s);

struct metrics_endpoint *site_endpoint_series(const struct site *s,
                                              const struct config_endpoint *ep);
struct metrics_backend *site_backend_series(const struct site *s, const struct config_backend *be);

#endif
