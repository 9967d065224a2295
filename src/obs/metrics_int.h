/* Internal to the metrics: what metrics.c (the registry: series made, bound to a
 * configuration and counted on the request path) and metrics_render.c (the Prometheus text
 * exposition) share. Nothing outside them includes this header. The two arrays are small and
 * used by both files, so each has its own copy. */
#ifndef GATHERD_METRICS_INT_H
#define GATHERD_METRICS_INT_H

#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Upper bounds in microseconds; Prometheus' default buckets widened to 60 s. */
static const uint64_t bucket_us[] = {1000,    2500,    5000,     10000,    25000,
                                     50000,   100000,  250000,   500000,   1000000,
                                     2500000, 5000000, 10000000, 30000000, 60000000};
#define NBUCKETS (sizeof bucket_us / sizeof bucket_us[0])

/* The status codes gatherd answers with; anything else is counted as "other". */
static const int codes[] = {200, 304, 400, 404, 405, 408, 413, 414, 431, 499, 500, 501, 502, 503};
#define NCODES (sizeof codes / sizeof codes[0])

struct hist {
    atomic_uint_fast64_t bucket[NBUCKETS]; /* non-cumulative; summed on render */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
};

struct ep_block {
    _Alignas(64) struct hist latency;
    atomic_uint_fast64_t by_code[NCODES + 1];
    atomic_uint_fast64_t cache[METRICS_CACHE_NRESULTS];
    atomic_uint_fast64_t refreshes[METRICS_REFRESH_NOUTCOMES];
    struct hist refresh_latency;
    atomic_uint_fast64_t notify[METRICS_NOTIFY_COUNT];
};

struct be_block {
    _Alignas(64) struct hist latency;
    atomic_uint_fast64_t errors[ERRKIND_COUNT];
    atomic_uint_fast64_t joined;
    struct hist slot_wait;
    atomic_uint_fast64_t tls_failures[TLSFAIL_COUNT];
};

struct metrics_endpoint {
    char *path;
    bool cached;    /* a configuration gave it a "cache": its lookups are shown, 0 or not */
    bool refreshed; /* ... and "refresh_ms": its refreshes are shown */
    atomic_uint_fast64_t refresh_stored_us; /* when its stored answer was made; 0: none yet */
    bool notifies; /* a configuration gave it a notify: its gatherd_notify_total is shown */
    uint64_t hash;
    struct metrics_endpoint *next;  /* in exposition order */
    struct metrics_endpoint *hnext; /* in its hash bucket */
    struct ep_block *w;             /* one per worker */
};

struct metrics_backend {
    char *endpoint, *name;
    bool https; /* a configuration named it with an https:// URL: its TLS failures are shown */
    uint64_t hash;
    struct metrics_backend *next, *hnext;
    struct be_block *w;
};

/* Series are found by name through chained hash tables, so binding a configuration is linear in
 * its size: a list search per backend made 40,000 backends take 26.7 s to start. */
struct index {
    void **buckets; /* a power of two */
    size_t nbuckets, n;
};

struct metrics {
    unsigned nworkers;
    char *build_labels;
    pthread_mutex_t mu; /* guards the lists; never taken on the request path */
    struct metrics_endpoint *endpoints, *builtins, **endpoints_tail;
    struct metrics_backend *backends, **backends_tail;
    struct index ep_index, be_index;
    struct metrics_worker *workers;
    atomic_uint_fast64_t reloads_ok, reloads_failed, log_dropped;
    atomic_int draining;
    struct metrics_cache cache;
    double start_time;
};

#endif
