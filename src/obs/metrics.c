#include "metrics.h"

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "config_tls.h"
#include "jsonv.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void *alloc_blocks(unsigned n, size_t size)
{
    void *p = aligned_alloc(64, ((n * size) + 63) / 64 * 64);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

static struct metrics_endpoint *endpoint_new(struct metrics *m, const char *path)
{
    struct metrics_endpoint *e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->path = strdup(path);
    e->w = alloc_blocks(m->nworkers, sizeof *e->w);
    if (e->path == NULL || e->w == NULL) {
        free(e->path);
        free(e->w);
        free(e);
        return NULL;
    }
    return e;
}

struct metrics *metrics_create(unsigned nworkers, const char *build_labels)
{
    static const char *const builtin_names[] = {"/healthz", "/readyz", "/metrics", "(unmatched)"};
    struct metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->nworkers = nworkers;
    m->endpoints_tail = &m->endpoints;
    m->backends_tail = &m->backends;
    pthread_mutex_init(&m->mu, NULL);
    m->build_labels = strdup(build_labels);
    m->workers = alloc_blocks(nworkers, sizeof *m->workers);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (m->build_labels == NULL || m->workers == NULL)
        goto fail;
    for (size_t i = sizeof builtin_names / sizeof builtin_names[0]; i-- > 0;) {
        struct metrics_endpoint *e = endpoint_new(m, builtin_names[i]);
        if (e == NULL)
            goto fail;
        e->next = m->builtins;
        m->builtins = e;
    }
    return m;
fail:
    metrics_destroy(m);
    return NULL;
}

void metrics_destroy(struct metrics *m)
{
    if (m == NULL)
        return;
    struct metrics_endpoint *lists[2] = {m->endpoints, m->builtins};
    for (int l = 0; l < 2; l++)
        for (struct metrics_endpoint *e = lists[l], *next; e != NULL; e = next) {
            next = e->next;
            free(e->path);
            free(e->w);
            free(e);
        }
    for (struct metrics_backend *b = m->backends, *next; b != NULL; b = next) {
        next = b->next;
        free(b->endpoint);
        free(b->name);
        free(b->w);
        free(b);
    }
    free(m->ep_index.buckets);
    free(m->be_index.buckets);
    free(m->workers);
    free(m->build_labels);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

struct metrics_endpoint *metrics_builtin(struct metrics *m, const char *name)
{
    for (struct metrics_endpoint *e = m->builtins; e != NULL; e = e->next)
        if (strcmp(e->path, name) == 0)
            return e;
    return NULL;
}

struct metrics_worker *metrics_worker(struct metrics *m, unsigned worker)
{
    return &m->workers[worker];
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static uint64_t ep_hash(const char *path)
{
    return fnv1a(0xcbf29ce484222325ull, path);
}

static uint64_t be_hash(const char *path, const char *name)
{
    /* The \x01 between the two keeps ("/a", "bc") and ("/ab", "c") apart. */
    return fnv1a(fnv1a(ep_hash(path), "\x01"), name);
}

/* Grows the index once it holds as many entries as buckets. `hnext_off` is where the entry
 * type keeps its chain link, `hash_off` its hash. */
static int index_grow(struct index *ix, size_t hnext_off, size_t hash_off)
{
    if (ix->n < ix->nbuckets)
        return 0;
    size_t n = ix->nbuckets ? ix->nbuckets * 2 : 64;
    void **b = calloc(n, sizeof *b);
    if (b == NULL)
        return ix->nbuckets ? 0 : -ENOMEM; /* a failed grow only makes chains longer */
    for (size_t i = 0; i < ix->nbuckets; i++)
        for (char *e = ix->buckets[i], *next; e != NULL; e = next) {
            next = *(char **)(e + hnext_off);
            size_t k = *(uint64_t *)(e + hash_off) & (n - 1);
            *(void **)(e + hnext_off) = b[k];
            b[k] = e;
        }
    free(ix->buckets);
    ix->buckets = b;
    ix->nbuckets = n;
    return 0;
}

static struct metrics_endpoint *find_endpoint(struct metrics *m, const char *path)
{
    struct index *ix = &m->ep_index;
    uint64_t h = ep_hash(path);
    if (ix->nbuckets > 0)
        for (struct metrics_endpoint *e = ix->buckets[h & (ix->nbuckets - 1)]; e != NULL;
             e = e->hnext)
            if (e->hash == h && strcmp(e->path, path) == 0)
                return e;
    if (index_grow(ix, offsetof(struct metrics_endpoint, hnext),
                   offsetof(struct metrics_endpoint, hash)) < 0)
        return NULL;
    struct metrics_endpoint *e = endpoint_new(m, path);
    if (e == NULL)
        return NULL;
    e->hash = h;
    size_t k = h & (ix->nbuckets - 1);
    e->hnext = ix->buckets[k];
    ix->buckets[k] = e;
    ix->n++;
    *m->endpoints_tail = e; /* keep configuration order in the exposition */
    m->endpoints_tail = &e->next;
    return e;
}

static struct metrics_backend *find_backend(struct metrics *m, const char *path, const char *name)
{
    struct index *ix = &m->be_index;
    uint64_t h = be_hash(path, name);
    if (ix->nbuckets > 0)
        for (struct metrics_backend *b = ix->buckets[h & (ix->nbuckets - 1)]; b != NULL;
             b = b->hnext)
            if (b->hash == h && strcmp(b->endpoint, path) == 0 && strcmp(b->name, name) == 0)
                return b;
    if (index_grow(ix, offsetof(struct metrics_backend, hnext),
                   offsetof(struct metrics_backend, hash)) < 0)
        return NULL;
    struct metrics_backend *b = calloc(1, sizeof *b);
    if (b == NULL || (b->endpoint = strdup(path)) == NULL || (b->name = strdup(name)) == NULL ||
        (b->w = alloc_blocks(m->nworkers, sizeof *b->w)) == NULL) {
        if (b != NULL) {
            free(b->endpoint);
            free(b->name);
        }
        free(b);
        return NULL;
    }
    b->hash = h;
    size_t k = h & (ix->nbuckets - 1);
    b->hnext = ix->buckets[k];
    ix->buckets[k] = b;
    ix->n++;
    *m->backends_tail = b;
    m->backends_tail = &b->next;
    return b;
}

struct metrics_table *metrics_bind(struct metrics *m, const struct config *cfg)
{
    struct metrics_table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->nendpoints = cfg->nendpoints;
    t->nbackends = cfg->nbackends_total;
    t->endpoint = calloc(cfg->nendpoints + 1, sizeof *t->endpoint);
    t->backend = calloc(cfg->nbackends_total + 1, sizeof *t->backend);
    if (t->endpoint == NULL || t->backend == NULL) {
        metrics_table_destroy(t);
        return NULL;
    }
    bool ok = true;
    pthread_mutex_lock(&m->mu);
    /* The cache and refresh series follow the newest configuration: an endpoint that stopped
     * being refreshed must not show an answer ageing for ever. */
    for (struct metrics_endpoint *e = m->endpoints; e != NULL; e = e->next)
        e->cached = e->refreshed = false;
    for (size_t i = 0; ok && i < cfg->nendpoints; i++) {
        const struct config_endpoint *ep = &cfg->endpoints[i];
        ok = (t->endpoint[ep->id] = find_endpoint(m, ep->path)) != NULL;
        if (ok && ep->cache.ttl_ms > 0)
            t->endpoint[ep->id]->cached = true;
        if (ok && ep->cache.refresh_ms > 0)
            t->endpoint[ep->id]->refreshed = true;
        if (ok && ep->notify != NULL)
            t->endpoint[ep->id]->notifies = true;
        for (size_t j = 0; ok && j < ep->nbackends; j++) {
            const struct config_backend *be = &ep->backends[j];
            ok = (t->backend[be->id] = find_backend(m, ep->path, be->name)) != NULL;
            if (ok && be->tls->https)
                t->backend[be->id]->https = true;
        }
    }
    for (struct metrics_endpoint *e = m->endpoints; e != NULL; e = e->next)
        if (!e->refreshed)
            atomic_store_explicit(&e->refresh_stored_us, 0, memory_order_relaxed);
    pthread_mutex_unlock(&m->mu);
    if (!ok) {
        metrics_table_destroy(t);
        return NULL;
    }
    return t;
}

void metrics_table_destroy(struct metrics_table *t)
{
    if (t == NULL)
        return;
    free(t->endpoint);
    free(t->backend);
    free(t);
}

static void hist_observe(struct hist *h, uint64_t usec)
{
    size_t i = 0;
    while (i < NBUCKETS && usec > bucket_us[i])
        i++;
    if (i < NBUCKETS)
        metrics_add(&h->bucket[i], 1);
    metrics_add(&h->count, 1);
    metrics_add(&h->sum_us, usec);
}

void metrics_request_done(struct metrics_endpoint *e, unsigned w, int status, uint64_t usec)
{
    size_t c = 0;
    while (c < NCODES && codes[c] != status)
        c++;
    metrics_add(&e->w[w].by_code[c], 1);
    hist_observe(&e->w[w].latency, usec);
}

void metrics_backend_done(struct metrics_backend *b, unsigned w, enum errkind kind, uint64_t usec)
{
    if (kind != ERRKIND_NONE && kind < ERRKIND_COUNT)
        metrics_add(&b->w[w].errors[kind], 1);
    hist_observe(&b->w[w].latency, usec);
}

struct metrics_cache *metrics_cache(struct metrics *m)
{
    return &m->cache;
}

void metrics_cache_lookup(struct metrics_endpoint *e, unsigned w, enum metrics_cache_result r)
{
    metrics_add(&e->w[w].cache[r], 1);
}

void metrics_refresh_done(struct metrics_endpoint *e, unsigned w, enum metrics_refresh_outcome o,
                          uint64_t usec)
{
    metrics_add(&e->w[w].refreshes[o], 1);
    hist_observe(&e->w[w].refresh_latency, usec);
}

void metrics_refresh_stored(struct metrics_endpoint *e, uint64_t stored_us)
{
    atomic_store_explicit(&e->refresh_stored_us, stored_us, memory_order_relaxed);
}

void metrics_notify(struct metrics_endpoint *e, unsigned w, enum metrics_notify result)
{
    if (result < METRICS_NOTIFY_COUNT)
        metrics_add(&e->w[w].notify[result], 1);
}

void metrics_backend_joined(struct metrics_backend *b, unsigned w)
{
    metrics_add(&b->w[w].joined, 1);
}

void metrics_backend_tls_failure(struct metrics_backend *b, unsigned w, enum tlsfail reason)
{
    if (reason != TLSFAIL_NONE && reason < TLSFAIL_COUNT)
        metrics_add(&b->w[w].tls_failures[reason], 1);
}

void metrics_slot_wait(struct metrics_backend *b, unsigned w, uint64_t usec)
{
    hist_observe(&b->w[w].slot_wait, usec);
}

void metrics_reload(struct metrics *m, int ok)
{
    atomic_fetch_add(ok ? &m->reloads_ok : &m->reloads_failed, 1);
}

void metrics_set_draining(struct metrics *m, int draining)
{
    atomic_store(&m->draining, draining);
}

void metrics_set_log_dropped(struct metrics *m, uint64_t n)
{
    atomic_store(&m->log_dropped, n);
}

static uint64_t ld(const atomic_uint_fast64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Appends a label value escaped as the text format asks (backslash, quote, newline). */
static int label(struct buf *out, const char *s)
{
    int rc = 0;
    for (; rc == 0 && *s; s++) {
        if (*s == '\\' || *s == '"')
            rc = buf_printf(out, "\\%c", *s);
        else if (*s == '\n')
            rc = buf_appends(out, "\\n");
        else
            rc = buf_appendc(out, *s);
    }
    return rc;
}

static int render_hist(struct buf *out, const char *name, const char *labels,
                       const struct hist *sum)
{
    uint64_t cum = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < NBUCKETS; i++) {
        cum += ld(&sum->bucket[i]);
        rc = buf_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels,
                        (double)bucket_us[i] / 1e6, (unsigned long long)cum);
    }
    if (rc == 0)
        rc = buf_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n%s_sum{%s} %.6f\n%s_count{%s} %llu\n",
                        name, labels, (unsigned long long)ld(&sum->count), name, labels,
                        (double)ld(&sum->sum_us) / 1e6, name, labels,
                        (unsigned long long)ld(&sum->count));
    return rc;
}

static void hist_sum(struct hist *acc, const struct hist *h)
{
    for (size_t i = 0; i < NBUCKETS; i++)
        metrics_add(&acc->bucket[i], ld(&h->bucket[i]));
    metrics_add(&acc->count, ld(&h->count));
    metrics_add(&acc->sum_us, ld(&h->sum_us));
}

static int render_endpoint(struct metrics *m, struct buf *out, struct metrics_endpoint *e, int pass)
{
    struct buf lb = BUF_INIT;
    int rc = buf_appends(&lb, "endpoint=\"");
    if (rc == 0)
        rc = label(&lb, e->path);
    if (rc == 0)
        rc = buf_appendc(&lb, '"');
    if (rc == 0 && pass == 0) {
        for (size_t c = 0; rc == 0 && c <= NCODES; c++) {
            uint64_t n = 0;
            for (unsigned w = 0; w < m->nworkers; w++)
                n += ld(&e->w[w].by_code[c]);
            if (n == 0)
                continue;
            if (c < NCODES)
                rc = buf_printf(out, "gatherd_requests_total{%s,code=\"%d\"} %llu\n", lb.data,
                                codes[c], (unsigned long long)n);
            else
                rc = buf_printf(out, "gatherd_requests_total{%s,code=\"other\"} %llu\n", lb.data,
                                (unsigned long long)n);
        }
    } else if (rc == 0 && pass == 1) {
        struct hist h;
        memset(&h, 0, sizeof h);
        for (unsigned w = 0; w < m->nworkers; w++)
            hist_sum(&h, &e->w[w].latency);
        rc = render_hist(out, "gatherd_request_duration_seconds", lb.data, &h);
    } else if (rc == 0 && pass == 3) {
        static const char *const names[] = {"complete", "partial", "failed"};
        for (int o = 0; rc == 0 && e->refreshed && o < METRICS_REFRESH_NOUTCOMES; o++) {
            uint64_t n = 0;
            for (unsigned w = 0; w < m->nworkers; w++)
                n += ld(&e->w[w].refreshes[o]);
            rc = buf_printf(out, "gatherd_refreshes_total{%s,outcome=\"%s\"} %llu\n", lb.data,
                            names[o], (unsigned long long)n);
        }
    } else if (rc == 0 && pass == 4 && e->refreshed) {
        struct hist h;
        memset(&h, 0, sizeof h);
        for (unsigned w = 0; w < m->nworkers; w++)
            hist_sum(&h, &e->w[w].refresh_latency);
        rc = render_hist(out, "gatherd_refresh_duration_seconds", lb.data, &h);
    } else if (rc == 0 && pass == 5 && e->refreshed) {
        uint64_t at = ld(&e->refresh_stored_us), now = clock_us();
        if (at != 0)
            rc = buf_printf(out, "gatherd_refresh_age_seconds{%s} %.3f\n", lb.data,
                            (double)(now > at ? now - at : 0) / 1e6);
    } else if (rc == 0 && pass == 2) {
        /* Only endpoints a configuration cached: the others would add four series each,
         * always 0. */
        static const char *const names[] = {"hit", "stale", "miss", "collapsed"};
        for (int r = 0; rc == 0 && e->cached && r < METRICS_CACHE_NRESULTS; r++) {
            uint64_t n = 0;
            for (unsigned w = 0; w < m->nworkers; w++)
                n += ld(&e->w[w].cache[r]);
            rc = buf_printf(out, "gatherd_cache_lookups_total{%s,result=\"%s\"} %llu\n", lb.data,
                            names[r], (unsigned long long)n);
        }
    } else if (rc == 0 && pass == 6 && e->notifies) {
        static const char *const results[] = {"sent", "failed", "dropped"};
        for (int r = 0; rc == 0 && r < METRICS_NOTIFY_COUNT; r++) {
            uint64_t n = 0;
            for (unsigned w = 0; w < m->nworkers; w++)
                n += ld(&e->w[w].notify[r]);
            rc = buf_printf(out, "gatherd_notify_total{%s,result=\"%s\"} %llu\n", lb.data,
                            results[r], (unsigned long long)n);
        }
    }
    buf_finish(&lb);
    return rc;
}

static int render_backend(struct metrics *m, struct buf *out, struct metrics_backend *b, int pass)
{
    struct buf lb = BUF_INIT;
    int rc = buf_appends(&lb, "endpoint=\"");
    if (rc == 0)
        rc = label(&lb, b->endpoint);
    if (rc == 0)
        rc = buf_appends(&lb, "\",backend=\"");
    if (rc == 0)
        rc = label(&lb, b->name);
    if (rc == 0)
        rc = buf_appendc(&lb, '"');
    if (rc == 0 && pass == 0) {
        for (int k = 1; rc == 0 && k < ERRKIND_COUNT; k++) {
            uint64_t n = 0;
            for (unsigned w = 0; w < m->nworkers; w++)
                n += ld(&b->w[w].errors[k]);
            rc = buf_printf(out, "gatherd_upstream_errors_total{%s,kind=\"%s\"} %llu\n", lb.data,
                            errkind_name((enum errkind)k), (unsigned long long)n);
        }
    } else if (rc == 0 && pass == 1) {
        struct hist h;
        memset(&h, 0, sizeof h);
        for (unsigned w = 0; w < m->nworkers; w++)
            hist_sum(&h, &b->w[w].latency);
        rc = render_hist(out, "gatherd_upstream_duration_seconds", lb.data, &h);
    } else if (rc == 0 && pass == 2) {
        uint64_t n = 0;
        for (unsigned w = 0; w < m->nworkers; w++)
            n += ld(&b->w[w].joined);
        rc = buf_printf(out, "gatherd_upstream_joined_total{%s} %llu\n", lb.data,
                        (unsigned long long)n);
    } else if (rc == 0 && pass == 4) {
        /* Only backends that speak TLS can fail in it: the others would add a series per
         * reason each, always 0. */
        for (int r = 1; rc == 0 && b->https && r < TLSFAIL_COUNT; r++) {
            uint64_t n = 0;
            for (unsigned w = 0; w < m->nworkers; w++)
                n += ld(&b->w[w].tls_failures[r]);
            rc = buf_printf(out, "gatherd_upstream_tls_failures_total{%s,reason=\"%s\"} %llu\n",
                            lb.data, tlsfail_name((enum tlsfail)r), (unsigned long long)n);
        }
    } else if (rc == 0) {
        /* Only backends of endpoints with a concurrency limit observe it: the others would
         * add 17 empty series each. */
        struct hist h;
        memset(&h, 0, sizeof h);
        for (unsigned w = 0; w < m->nworkers; w++)
            hist_sum(&h, &b->w[w].slot_wait);
        if (ld(&h.count) > 0)
            rc = render_hist(out, "gatherd_upstream_slot_wait_seconds", lb.data, &h);
    }
    buf_finish(&lb);
    return rc;
}

static int64_t sum_gauge(struct metrics *m, size_t offset)
{
    int64_t n = 0;
    for (unsigned w = 0; w < m->nworkers; w++)
        n += atomic_load_explicit((atomic_int_fast64_t *)((char *)&m->workers[w] + offset),
                                  memory_order_relaxed);
    return n;
}

/* The families render_endpoint() and render_backend() write, by their `pass`. */
#define NFAMILIES(a) (sizeof(a) / sizeof((a)[0]))
static const char *const endpoint_families[] = {
    "# HELP gatherd_requests_total HTTP requests answered, by endpoint and status code.\n"
    "# TYPE gatherd_requests_total counter\n",
    "# HELP gatherd_request_duration_seconds Time from request to answer, by endpoint.\n"
    "# TYPE gatherd_request_duration_seconds histogram\n",
    "# HELP gatherd_cache_lookups_total Lookups in the response cache, by endpoint and result.\n"
    "# TYPE gatherd_cache_lookups_total counter\n",
    "# HELP gatherd_refreshes_total Background refreshes (refresh_ms), by endpoint and outcome.\n"
    "# TYPE gatherd_refreshes_total counter\n",
    "# HELP gatherd_refresh_duration_seconds Duration of background refreshes, by endpoint.\n"
    "# TYPE gatherd_refresh_duration_seconds histogram\n",
    "# HELP gatherd_refresh_age_seconds Age of a refreshed endpoint's stored answer.\n"
    "# TYPE gatherd_refresh_age_seconds gauge\n",
    "# HELP gatherd_notify_total Notifications of answered requests, by endpoint and result "
    "(sent, failed, dropped).\n# TYPE gatherd_notify_total counter\n",
};
static const char *const backend_families[] = {
    "# HELP gatherd_upstream_errors_total Failed upstream calls, by endpoint, backend and error "
    "kind.\n# TYPE gatherd_upstream_errors_total counter\n",
    "# HELP gatherd_upstream_duration_seconds Duration of upstream calls, by endpoint and "
    "backend.\n# TYPE gatherd_upstream_duration_seconds histogram\n",
    "# HELP gatherd_upstream_joined_total Backend calls answered by a transfer another request "
    "had started (coalesce), by endpoint and backend.\n"
    "# TYPE gatherd_upstream_joined_total counter\n",
    "# HELP gatherd_upstream_slot_wait_seconds Time calls waited for a concurrency slot of their "
    "request, by endpoint and backend.\n# TYPE gatherd_upstream_slot_wait_seconds histogram\n",
    "# HELP gatherd_upstream_tls_failures_total Upstream calls that failed in TLS, by endpoint, "
    "backend and reason (a certificate verdict or the handshake).\n"
    "# TYPE gatherd_upstream_tls_failures_total counter\n",
};

static const char *const reject_names[METRICS_REJECT_COUNT] = {
    "bad_request", "payload_too_large", "uri_too_long",   "header_too_large", "version",
    "closed",      "unparsed",          "header_timeout", "framing"};

const char *metrics_reject_name(enum metrics_reject r)
{
    return r < METRICS_REJECT_COUNT ? reject_names[r] : "other";
}

/* Every reason is shown, 0 included, so that a rate over it needs no absent-series care. */
static int render_rejected(struct metrics *m, struct buf *out)
{
    int rc = buf_appends(out, "# HELP gatherd_http_rejected_total Requests refused from their head "
                              "or before it, which reached no endpoint, by reason.\n"
                              "# TYPE gatherd_http_rejected_total counter\n");
    for (int r = 0; rc == 0 && r < METRICS_REJECT_COUNT; r++) {
        uint64_t n = 0;
        for (unsigned w = 0; w < m->nworkers; w++)
            n += ld(&m->workers[w].http_rejected[r]);
        rc = buf_printf(out, "gatherd_http_rejected_total{reason=\"%s\"} %llu\n", reject_names[r],
                        (unsigned long long)n);
    }
    return rc;
}

int metrics_render(struct metrics *m, struct buf *out)
{
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    struct metrics_endpoint *lists[2] = {m->endpoints, m->builtins};
    for (int pass = 0; rc == 0 && pass < (int)NFAMILIES(endpoint_families); pass++) {
        rc = buf_appends(out, endpoint_families[pass]);
        for (int l = 0; l < 2; l++)
            for (struct metrics_endpoint *e = lists[l]; rc == 0 && e != NULL; e = e->next)
                rc = render_endpoint(m, out, e, pass);
    }
    for (int pass = 0; rc == 0 && pass < (int)NFAMILIES(backend_families); pass++) {
        rc = buf_appends(out, backend_families[pass]);
        for (struct metrics_backend *b = m->backends; rc == 0 && b != NULL; b = b->next)
            rc = render_backend(m, out, b, pass);
    }
    pthread_mutex_unlock(&m->mu);

    uint64_t opened = 0, up_opened = 0;
    for (unsigned w = 0; w < m->nworkers; w++) {
        opened += ld(&m->workers[w].http_connections_opened);
        up_opened += ld(&m->workers[w].upstream_connections_opened);
    }
    if (rc == 0)
        rc = buf_printf(
            out,
            "# HELP gatherd_requests_in_flight Requests received and not yet answered.\n"
            "# TYPE gatherd_requests_in_flight gauge\ngatherd_requests_in_flight %lld\n"
            "# HELP gatherd_http_connections_open Client connections open.\n"
            "# TYPE gatherd_http_connections_open gauge\ngatherd_http_connections_open %lld\n"
            "# HELP gatherd_http_connections_opened_total Client connections accepted.\n"
            "# TYPE gatherd_http_connections_opened_total counter\n"
            "gatherd_http_connections_opened_total %llu\n"
            "# HELP gatherd_upstream_connections_open Upstream connections open, busy or idle.\n"
            "# TYPE gatherd_upstream_connections_open gauge\n"
            "gatherd_upstream_connections_open %lld\n"
            "# HELP gatherd_upstream_connections_opened_total Upstream connections opened.\n"
            "# TYPE gatherd_upstream_connections_opened_total counter\n"
            "gatherd_upstream_connections_opened_total %llu\n"
            "# HELP gatherd_config_reloads_total Configuration reloads, by result.\n"
            "# TYPE gatherd_config_reloads_total counter\n"
            "gatherd_config_reloads_total{result=\"success\"} %llu\n"
            "gatherd_config_reloads_total{result=\"failure\"} %llu\n"
            "# HELP gatherd_log_lines_dropped_total Log lines dropped because the reader was "
            "slow.\n# TYPE gatherd_log_lines_dropped_total counter\n"
            "gatherd_log_lines_dropped_total %llu\n"
            "# HELP gatherd_draining 1 while a drain is under way.\n"
            "# TYPE gatherd_draining gauge\ngatherd_draining %d\n"
            "# HELP gatherd_cache_bytes Bytes the response cache holds.\n"
            "# TYPE gatherd_cache_bytes gauge\ngatherd_cache_bytes %lld\n"
            "# HELP gatherd_cache_entries Answers the response cache holds.\n"
            "# TYPE gatherd_cache_entries gauge\ngatherd_cache_entries %lld\n"
            "# HELP gatherd_cache_evictions_total Answers evicted from the response cache to "
            "stay under cache_max_bytes.\n"
            "# TYPE gatherd_cache_evictions_total counter\ngatherd_cache_evictions_total %llu\n"
            "# HELP gatherd_workers Event loops serving requests.\n"
            "# TYPE gatherd_workers gauge\ngatherd_workers %u\n"
            "# HELP process_start_time_seconds Start time of the process since the epoch.\n"
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n"
            "# HELP gatherd_build_info Build and library versions.\n"
            "# TYPE gatherd_build_info gauge\ngatherd_build_info{%s} 1\n",
            (long long)sum_gauge(m, offsetof(struct metrics_worker, requests_in_flight)),
            (long long)sum_gauge(m, offsetof(struct metrics_worker, http_connections_open)),
            (unsigned long long)opened,
            (long long)sum_gauge(m, offsetof(struct metrics_worker, upstream_connections_open)),
            (unsigned long long)up_opened, (unsigned long long)ld(&m->reloads_ok),
            (unsigned long long)ld(&m->reloads_failed), (unsigned long long)ld(&m->log_dropped),
            atomic_load(&m->draining),
            (long long)atomic_load_explicit(&m->cache.bytes, memory_order_relaxed),
            (long long)atomic_load_explicit(&m->cache.entries, memory_order_relaxed),
            (unsigned long long)ld(&m->cache.evictions), m->nworkers, m->start_time,
            m->build_labels);
    if (rc == 0)
        rc = render_rejected(m, out);
    return rc;
}
