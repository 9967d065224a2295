/* The registry: one series per endpoint and backend ever configured, one block of counters
 * per worker in each, bound to a configuration by name and counted on the request path
 * without locks. metrics_render.c writes them out. */
#include "metrics_int.h"

#include "config.h"
#include "config_tls.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
