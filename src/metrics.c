#include "metrics.h"

#include "buf.h"
#include "config.h"
#include "jsonv.h"

#include <errno.h>
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
static const int codes[] = {200, 400, 404, 405, 413, 414, 431, 499, 500, 502, 503};
#define NCODES (sizeof codes / sizeof codes[0])

struct hist {
    atomic_uint_fast64_t bucket[NBUCKETS]; /* non-cumulative; summed on render */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
};

struct ep_block {
    _Alignas(64) struct hist latency;
    atomic_uint_fast64_t by_code[NCODES + 1];
};

struct be_block {
    _Alignas(64) struct hist latency;
    atomic_uint_fast64_t errors[AGG_E_COUNT];
    atomic_uint_fast64_t joined;
};

struct metrics_endpoint {
    char *path;
    struct metrics_endpoint *next;
    struct ep_block *w; /* one per worker */
};

struct metrics_backend {
    char *endpoint, *name;
    struct metrics_backend *next;
    struct be_block *w;
};

struct metrics {
    unsigned nworkers;
    char *build_labels;
    pthread_mutex_t mu; /* guards the lists; never taken on the request path */
    struct metrics_endpoint *endpoints, *builtins;
    struct metrics_backend *backends;
    struct metrics_worker *workers;
    atomic_uint_fast64_t reloads_ok, reloads_failed, log_dropped;
    atomic_int draining;
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

static struct metrics_endpoint **tail_of(struct metrics_endpoint **head)
{
    while (*head != NULL)
        head = &(*head)->next;
    return head;
}

int metrics_bind(struct metrics *m, struct config *cfg)
{
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; rc == 0 && i < cfg->nendpoints; i++) {
        struct config_endpoint *ep = &cfg->endpoints[i];
        struct metrics_endpoint *e = m->endpoints;
        while (e != NULL && strcmp(e->path, ep->path) != 0)
            e = e->next;
        if (e == NULL) {
            if ((e = endpoint_new(m, ep->path)) == NULL) {
                rc = -ENOMEM;
                break;
            }
            *tail_of(&m->endpoints) = e; /* keep configuration order in the exposition */
        }
        ep->stats = e;
        for (size_t j = 0; j < ep->nbackends; j++) {
            struct config_backend *be = &ep->backends[j];
            struct metrics_backend **pb = &m->backends;
            while (*pb != NULL &&
                   (strcmp((*pb)->endpoint, ep->path) != 0 || strcmp((*pb)->name, be->name) != 0))
                pb = &(*pb)->next;
            if (*pb == NULL) {
                struct metrics_backend *b = calloc(1, sizeof *b);
                if (b == NULL || (b->endpoint = strdup(ep->path)) == NULL ||
                    (b->name = strdup(be->name)) == NULL ||
                    (b->w = alloc_blocks(m->nworkers, sizeof *b->w)) == NULL) {
                    if (b != NULL) {
                        free(b->endpoint);
                        free(b->name);
                    }
                    free(b);
                    rc = -ENOMEM;
                    break;
                }
                *pb = b;
            }
            be->stats = *pb;
        }
    }
    pthread_mutex_unlock(&m->mu);
    return rc;
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

void metrics_backend_done(struct metrics_backend *b, unsigned w, enum agg_error kind, uint64_t usec)
{
    if (kind != AGG_E_NONE && kind < AGG_E_COUNT)
        metrics_add(&b->w[w].errors[kind], 1);
    hist_observe(&b->w[w].latency, usec);
}

void metrics_backend_joined(struct metrics_backend *b, unsigned w)
{
    metrics_add(&b->w[w].joined, 1);
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
    } else if (rc == 0) {
        struct hist h;
        memset(&h, 0, sizeof h);
        for (unsigned w = 0; w < m->nworkers; w++)
            hist_sum(&h, &e->w[w].latency);
        rc = render_hist(out, "gatherd_request_duration_seconds", lb.data, &h);
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
        for (int k = 1; rc == 0 && k < AGG_E_COUNT; k++) {
            uint64_t n = 0;
            for (unsigned w = 0; w < m->nworkers; w++)
                n += ld(&b->w[w].errors[k]);
            rc = buf_printf(out, "gatherd_upstream_errors_total{%s,kind=\"%s\"} %llu\n", lb.data,
                            agg_error_name((enum agg_error)k), (unsigned long long)n);
        }
    } else if (rc == 0 && pass == 1) {
        struct hist h;
        memset(&h, 0, sizeof h);
        for (unsigned w = 0; w < m->nworkers; w++)
            hist_sum(&h, &b->w[w].latency);
        rc = render_hist(out, "gatherd_upstream_duration_seconds", lb.data, &h);
    } else if (rc == 0) {
        uint64_t n = 0;
        for (unsigned w = 0; w < m->nworkers; w++)
            n += ld(&b->w[w].joined);
        rc = buf_printf(out, "gatherd_upstream_joined_total{%s} %llu\n", lb.data,
                        (unsigned long long)n);
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
};
static const char *const backend_families[] = {
    "# HELP gatherd_upstream_errors_total Failed upstream calls, by endpoint, backend and error "
    "kind.\n# TYPE gatherd_upstream_errors_total counter\n",
    "# HELP gatherd_upstream_duration_seconds Duration of upstream calls, by endpoint and "
    "backend.\n# TYPE gatherd_upstream_duration_seconds histogram\n",
    "# HELP gatherd_upstream_joined_total Backend calls answered by a transfer another request "
    "had started (coalesce), by endpoint and backend.\n"
    "# TYPE gatherd_upstream_joined_total counter\n",
};

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
            atomic_load(&m->draining), m->nworkers, m->start_time, m->build_labels);
    return rc;
}
