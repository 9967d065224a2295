/* Prometheus metrics. The registry is process-wide and append-only: an endpoint or backend gets
 * its series the first time a configuration names it, and keeps them across reloads. Each
 * series holds one block of counters per worker; a worker writes only its own block (relaxed
 * atomics, no lock), and a scrape sums the blocks. So the request path shares nothing, and a
 * scrape costs the scraping loop a few microseconds per series. */
#ifndef GATHERD_METRICS_H
#define GATHERD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "errkind.h"
#include "tlsfail.h"

struct buf;
struct config;
struct metrics;
struct metrics_endpoint;
struct metrics_backend;

/* Why a request never reached gatherd's handler, or was refused from its head
 * (gatherd_http_rejected_total{reason}); metrics_reject_name() gives the label. */
enum metrics_reject {
    METRICS_REJECT_BAD_REQUEST,       /* libmicrohttpd's 400 */
    METRICS_REJECT_PAYLOAD_TOO_LARGE, /* its 413 */
    METRICS_REJECT_URI_TOO_LONG,      /* its 414 */
    METRICS_REJECT_HEADER_TOO_LARGE,  /* its 431, or gatherd's when the head fills the buffer */
    METRICS_REJECT_VERSION,           /* its 505 */
    METRICS_REJECT_CLOSED,            /* closed after the request line without an answer */
    METRICS_REJECT_UNPARSED,          /* bytes that never made a request line */
    METRICS_REJECT_HEADER_TIMEOUT,    /* the head took longer than header_timeout_ms: 408 */
    METRICS_REJECT_FRAMING,           /* gatherd's own refusals of the head (reqcheck.h) */
    METRICS_REJECT_COUNT
};

const char *metrics_reject_name(enum metrics_reject r);

/* Gauges and counters that belong to a worker rather than to an endpoint. */
struct metrics_worker {
    _Alignas(64) atomic_int_fast64_t requests_in_flight;
    atomic_int_fast64_t http_connections_open;
    atomic_uint_fast64_t http_connections_opened;
    atomic_int_fast64_t upstream_connections_open;
    atomic_uint_fast64_t upstream_connections_opened;
    atomic_uint_fast64_t http_rejected[METRICS_REJECT_COUNT];
};

/* The response cache's gauges and counter (handler/cache.h writes them, under its lock). */
struct metrics_cache {
    atomic_int_fast64_t bytes, entries;
    atomic_uint_fast64_t evictions;
};

/* How a lookup in the response cache went, for gatherd_cache_lookups_total. */
enum metrics_cache_result {
    METRICS_CACHE_HIT,
    METRICS_CACHE_STALE,
    METRICS_CACHE_MISS,
    METRICS_CACHE_COLLAPSED,
    METRICS_CACHE_NRESULTS,
};

/* How a background refresh ended, for gatherd_refreshes_total. */
enum metrics_refresh_outcome {
    METRICS_REFRESH_COMPLETE, /* stored */
    METRICS_REFRESH_PARTIAL,  /* 200, but some call failed: not stored */
    METRICS_REFRESH_FAILED,
    METRICS_REFRESH_NOUTCOMES,
};

/* `build_labels` is the label set of gatherd_build_info, e.g. version="0.1.0",libcurl="7.88.1".
 * NULL when out of memory. */
struct metrics *metrics_create(unsigned nworkers, const char *build_labels);
void metrics_destroy(struct metrics *m);

/* The series one configuration records into, indexed by the ids config.h gives its endpoints
 * and backends. It lives beside the configuration, which stays immutable: built on the control
 * thread before the configuration is published, read-only afterwards. */
struct metrics_table {
    size_t nendpoints, nbackends;
    struct metrics_endpoint **endpoint; /* by config_endpoint.id */
    struct metrics_backend **backend;   /* by config_backend.id */
};

/* Finds or creates the series of every endpoint and backend of cfg (borrowed) and returns the
 * table of them (the caller owns it), or NULL when out of memory. Linear in cfg's size. */
struct metrics_table *metrics_bind(struct metrics *m, const struct config *cfg);

/* Frees the table, not the series (the registry keeps them); accepts NULL. */
void metrics_table_destroy(struct metrics_table *t);

/* Series for gatherd's own paths ("/healthz", "/readyz", "/metrics") and for requests that
 * matched nothing ("(unmatched)"); NULL for any other name. */
struct metrics_endpoint *metrics_builtin(struct metrics *m, const char *name);

struct metrics_worker *metrics_worker(struct metrics *m, unsigned worker);

/* The process's one set of cache gauges. */
struct metrics_cache *metrics_cache(struct metrics *m);

/* Recording, from worker `w` only. */
void metrics_request_done(struct metrics_endpoint *e, unsigned w, int status, uint64_t usec);
void metrics_backend_done(struct metrics_backend *b, unsigned w, enum errkind kind, uint64_t usec);
/* A lookup of the endpoint's answer in the response cache. */
void metrics_cache_lookup(struct metrics_endpoint *e, unsigned w, enum metrics_cache_result r);
/* A background refresh of the endpoint ended after usec. */
void metrics_refresh_done(struct metrics_endpoint *e, unsigned w, enum metrics_refresh_outcome o,
                          uint64_t usec);
/* The refreshed endpoint's stored answer was made at stored_us (monotonic clock); any thread. */
void metrics_refresh_stored(struct metrics_endpoint *e, uint64_t stored_us);
/* A backend call joined a transfer another request had started (flight.h). */
void metrics_backend_joined(struct metrics_backend *b, unsigned w);
/* A backend call failed in TLS for `reason` (its error is counted by metrics_backend_done()). */
void metrics_backend_tls_failure(struct metrics_backend *b, unsigned w, enum tlsfail reason);
/* A call of an endpoint with a concurrency limit started after waiting usec for a slot. */
void metrics_slot_wait(struct metrics_backend *b, unsigned w, uint64_t usec);

/* What became of a notification (handler/notify.h): gatherd_notify_total's result label. */
enum metrics_notify {
    METRICS_NOTIFY_SENT,    /* the sink answered 2xx */
    METRICS_NOTIFY_FAILED,  /* another status, no answer, or its timeout_ms passed */
    METRICS_NOTIFY_DROPPED, /* never sent: its queue was full, or the drain limit passed */
    METRICS_NOTIFY_COUNT
};
void metrics_notify(struct metrics_endpoint *e, unsigned w, enum metrics_notify result);

/* Control-plane counters, from any thread. */
void metrics_reload(struct metrics *m, int ok);
void metrics_set_draining(struct metrics *m, int draining);
void metrics_set_log_dropped(struct metrics *m, uint64_t n);

/* Appends the whole exposition (text format 0.0.4) to out. 0 or -ENOMEM. */
int metrics_render(struct metrics *m, struct buf *out);

static inline void metrics_add(atomic_uint_fast64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline void metrics_gauge_add(atomic_int_fast64_t *g, int64_t v)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

#endif
