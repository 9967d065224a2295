/* The configuration: parsed and validated once, then immutable and shared read-only by every
 * worker. A reload builds a new one; in-flight requests keep a reference to the one they
 * started with, so a config is freed only when its last reference is dropped. */
#ifndef GATHERD_CONFIG_H
#define GATHERD_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loglevel.h"

struct netacl;
struct config_tls;
struct config_tls_set;

#define CONFIG_MAX_BACKENDS 1000
/* Across all endpoints. Each backend costs every worker its counters and /metrics about 2 KB
 * a scrape (20 MB at this bound); start-up and reload are linear in it. */
#define CONFIG_MAX_BACKENDS_TOTAL 10000
#define CONFIG_MAX_TIMEOUT_MS 600000L

/* A {name} placeholder in a backend URL, found and resolved at load. Placeholders stand only in
 * a URL's path or query, never in its scheme, host or port, so a client can never choose which
 * host gatherd talks to; every value is percent-encoded when substituted (core/plan.c). */
struct config_ref {
    size_t start, end; /* the span of "{name}" in the backend's url */
    int param;  /* its path parameter's index in the endpoint, CONFIG_REF_ITEM or CONFIG_REF_DEP */
    size_t dep; /* CONFIG_REF_DEP: the backend of the endpoint whose answer it reads */
    char *pointer; /* CONFIG_REF_DEP: an RFC 6901 pointer into that answer */
};
#define CONFIG_REF_ITEM (-1)
#define CONFIG_REF_DEP (-2) /* {backend:/pointer}: a field of another backend's answer */

/* A path placeholder and the pattern its decoded value must match as a whole. */
struct config_param {
    char *name;
    char *pattern;  /* POSIX extended regular expression, as configured */
    char *anchored; /* "^(" pattern ")$": what is compiled */
    size_t id;      /* 0 to nparams_total - 1 across the configuration */
};

/* One segment of an endpoint path with placeholders: literal text, or a parameter. */
struct config_seg {
    char *text; /* the literal segment; NULL for a parameter */
    int param;  /* index into the endpoint's params, or -1 */
};

/* Something a valid configuration does that the operator should hear about (a backend whose
 * certificate is not verified), logged at start and on every reload that applies it. */
struct config_warning {
    char *key; /* the key path, e.g. endpoints[0].backends[1].tls.verify */
    char *detail;
};

enum config_on_error { CONFIG_ON_ERROR_PARTIAL, CONFIG_ON_ERROR_FAIL_FAST };

#define CONFIG_MAX_CONCURRENCY 1000
#define CONFIG_MAX_ITEMS 1000

struct config_backend {
    char *name;
    char *url;
    struct config_ref *refs; /* placeholders in url, in order; NULL when none */
    size_t nrefs;
    bool required; /* its failure fails the request (502), under either on_error */
    size_t *deps;  /* the distinct backends its URL reads from, in order; NULL when none */
    size_t ndeps;
    long timeout_ms;
    size_t max_body_bytes;
    bool coalesce;  /* concurrent requests share one transfer (flight.h) */
    char **headers; /* "Name: value" lines, ${VAR} already expanded */
    size_t nheaders;
    const struct config_tls *tls; /* how its connections are made (config_tls.h); never NULL */
    size_t id; /* 0 to nbackends_total - 1 across the configuration: indexes tables beside it */
};

/* An endpoint's "cache" object: how long its complete answers serve (handler/cache.h). */
struct config_cache {
    long ttl_ms; /* 0: the endpoint is not cached */
    long stale_while_revalidate_ms;
    long stale_if_error_ms;
    long refresh_ms; /* 0: none; else one background fan-out every this many ms */
};

/* Where an endpoint reports each request once it is answered (handler/notify.h): a JSON POST,
 * fire and forget. */
struct config_notify {
    char *url;       /* http:// or https://, no placeholders */
    size_t queue;    /* notifications waiting per worker and sink at most; more are dropped */
    long timeout_ms; /* per POST, time waiting for a connection included */
    char **headers;  /* "Name: value" lines, ${VAR} already expanded */
    size_t nheaders;
    const struct config_tls *tls; /* the top level's tls and http2; never NULL */
};

#define CONFIG_NOTIFY_QUEUE_MAX 100000

struct config_endpoint {
    char *path;
    long timeout_ms;
    bool coalesce; /* the default for its backends */
    enum config_on_error on_error;
    long concurrency; /* upstream calls of one request in flight at most; 0: no limit */
    char *each_param; /* one call per item of this query parameter; NULL: no "each" */
    size_t max_items;
    struct config_param *params; /* path placeholders; NULL when the path is literal */
    size_t nparams;
    struct config_seg *segs; /* the path's segments when it has placeholders */
    size_t nsegs;
    size_t nbackends;
    struct config_backend *backends;
    struct config_cache cache;
    /* A hash of its definition: its JSON with keys sorted, its backends' headers as expanded,
     * and the top-level keys it inherits. A reload keeps the cached answers of an endpoint
     * whose identity it still has. */
    uint64_t ident;
    struct config_notify *notify; /* NULL: its requests are not reported */
    size_t id; /* its index in config.endpoints: indexes tables beside the configuration */
};

struct config {
    atomic_int refs;
    char *listen; /* NULL: not given, the caller applies $PORT or the default */
    int workers;  /* 0: one per usable CPU (app_worker_count()) */
    enum loglevel log_level;
    bool access_log;
    struct netacl *trusted_proxies; /* NULL when empty */
    unsigned worker_connections;
    long idle_timeout_ms;
    long header_timeout_ms; /* a request head must arrive within this of its first byte */
    long send_timeout_ms;   /* a connection that accepts no answer bytes this long is closed */
    size_t max_unsent_answer_bytes; /* process-wide; past it new aggregates get 503 */
    long drain_timeout_ms;
    size_t max_body_bytes;
    long upstream_max_host_connections;
    long upstream_idle_connections;
    size_t cache_max_bytes; /* the response cache's bound; 0: nothing is cached */
    size_t nendpoints;
    struct config_endpoint *endpoints;
    size_t nbackends_total;
    size_t nnotify; /* endpoints with a notify */
    size_t nparams_total;
    struct config_tls_set *tls;      /* the backends' connection profiles and their files */
    struct config_warning *warnings; /* what is allowed but deserves a warning at start */
    size_t nwarnings;
};

/* Parses and validates text[0..len). `origin` prefixes error messages (a file name, or
 * "built-in"). Returns 0 and a config holding one reference in *out, or -EINVAL (or -ENOMEM)
 * with a message naming the key and the reason in err. Reads the environment for ${VAR}. */
int config_parse(const char *text, size_t len, const char *origin, struct config **out, char *err,
                 size_t errlen);

/* Reads and parses a file. Blocking I/O: call it at start or from the control thread only. */
int config_load_file(const char *path, struct config **out, char *err, size_t errlen);

/* The built-in configuration (the three public BTC/JPY tickers on /tickers). */
int config_default(struct config **out, char *err, size_t errlen);
extern const char config_default_json[];

/* Reference counting; safe from any thread. unref accepts NULL and frees at zero. */
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* The endpoint with the literal path `path` (endpoints with placeholders never match here), or
 * NULL. */
const struct config_endpoint *config_find(const struct config *cfg, const char *path);

#endif
