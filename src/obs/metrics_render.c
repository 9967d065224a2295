/* The Prometheus text exposition of the registry (metrics.c): per-worker blocks summed at
 * render time, families in a fixed order, every series of a configured endpoint or backend
 * shown, zeros included. */
#include "metrics_int.h"

#include "buf.h"
#include "clock.h"
#include "errkind.h"
#include "tlsfail.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
