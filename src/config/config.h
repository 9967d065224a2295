/* The configuration: parsed and validated once, then immutable and shared read-only by every
 * worker. A reload builds a new one; in-flight requests keep a reference to the one they
 * started with, so a config is freed only when its last reference is dropped. */
#ifndef GATHERD_CONFIG_H
#define GATHERD_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "loglevel.h"

struct netacl;

#define CONFIG_MAX_BACKENDS 1000
/* Across all endpoints. Each backend costs every worker its counters and /metrics about 2 KB
 * a scrape (20 MB at this bound); start-up and reload are linear in it. */
#define CONFIG_MAX_BACKENDS_TOTAL 10000
#define CONFIG_MAX_TIMEOUT_MS 600000L

struct config_backend {
    char *name;
    char *url;
    long timeout_ms;
    size_t max_body_bytes;
    bool coalesce;  /* concurrent requests share one transfer (flight.h) */
    char **headers; /* "Name: value" lines, ${VAR} already expanded */
    size_t nheaders;
    size_t id; /* 0 to nbackends_total - 1 across the configuration: indexes tables beside it */
};

struct config_endpoint {
    char *path;
    long timeout_ms;
    bool coalesce; /* the default for its backends */
    size_t nbackends;
    struct config_backend *backends;
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
    long drain_timeout_ms;
    size_t max_body_bytes;
    long upstream_max_host_connections;
    long upstream_idle_connections;
    size_t nendpoints;
    struct config_endpoint *endpoints;
    size_t nbackends_total;
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

/* The endpoint serving `path`, or NULL. */
const struct config_endpoint *config_find(const struct config *cfg, const char *path);

#endif
