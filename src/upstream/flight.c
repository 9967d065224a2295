#include "flight.h"

#include "config_tls.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct flight {
    struct flights *g;
    uint64_t hash;
    char *key; /* the request it makes, serialised (make_key()); owned */
    size_t keylen;
    char **headers;             /* into key: the request's own copy, which the transfer borrows */
    struct upstream_xfer *xfer; /* NULL once finished */
    struct flight_wait *head, *tail;
    struct flight *hnext;
    bool delivering; /* in on_flight_done: legs that leave must not free it */
};

/* Chained hash table on the key. Few flights run at once (one per distinct coalescing call),
 * so it starts small and grows only with them. */
struct flights {
    const struct upstream_ops *ops;
    void *ctx;
    struct flight **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;
};

#define FIRST_BUCKETS 16

/* What a shared call is matched on, as one byte string: timeout, body cap and connection
 * profile (two backends with different client certificates may get different answers from one
 * URL), then the URL and each header line, each NUL-terminated, so that no two different
 * requests serialise alike. Malloc'd; NULL when out of memory. */
static char *make_key(const struct upstream_req *req, size_t *len)
{
    char head[48 + sizeof req->tls->id];
    int n = snprintf(head, sizeof head, "%ld %zu %s", req->timeout_ms, req->max_body,
                     req->tls != NULL ? req->tls->id : "");
    size_t total = (size_t)n + 1 + strlen(req->url) + 1;
    for (size_t i = 0; i < req->nheaders; i++)
        total += strlen(req->headers[i]) + 1;
    char *key = malloc(total);
    if (key == NULL)
        return NULL;
    char *p = key;
    p = stpcpy(p, head) + 1;
    p = stpcpy(p, req->url) + 1;
    for (size_t i = 0; i < req->nheaders; i++)
        p = stpcpy(p, req->headers[i]) + 1;
    *len = total;
    return key;
}

static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    return h;
}

static size_t bucket_of(const struct flights *g, uint64_t hash)
{
    return (size_t)(hash >> 32) & (g->nbuckets - 1);
}

static struct flight **find(struct flights *g, uint64_t hash, const char *key, size_t len)
{
    struct flight **p = &g->buckets[bucket_of(g, hash)];
    while (*p != NULL &&
           !((*p)->hash == hash && (*p)->keylen == len && memcmp((*p)->key, key, len) == 0))
        p = &(*p)->hnext;
    return p;
}

static void forget(struct flight *fl)
{
    struct flights *g = fl->g;
    struct flight **p = &g->buckets[bucket_of(g, fl->hash)];
    while (*p != NULL && *p != fl)
        p = &(*p)->hnext;
    if (*p == fl) {
        *p = fl->hnext;
        g->n--;
    }
}

static void flight_free(struct flight *fl)
{
    free(fl->headers);
    free(fl->key);
    free(fl);
}

/* A failed grow only makes chains longer. */
static void grow(struct flights *g)
{
    size_t n = g->nbuckets * 2;
    struct flight **b = calloc(n, sizeof *b);
    if (b == NULL)
        return;
    struct flight **old = g->buckets;
    size_t oldn = g->nbuckets;
    g->buckets = b;
    g->nbuckets = n;
    for (size_t i = 0; i < oldn; i++)
        for (struct flight *fl = old[i], *next; fl != NULL; fl = next) {
            next = fl->hnext;
            size_t k = bucket_of(g, fl->hash);
            fl->hnext = b[k];
            b[k] = fl;
        }
    free(old);
}

static void unlink_wait(struct flight_wait *w)
{
    struct flight *fl = w->fl;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        fl->head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        fl->tail = w->prev;
    w->prev = w->next = NULL;
}

/* Every leg gets the outcome; each but the last gets its own copy of the body, since a leg's
 * body passes to the aggregation it belongs to. Legs are taken off the flight one at a time, so
 * a callback that makes another leg leave (nothing in gatherd does) finds a consistent list. */
static void on_flight_done(void *arg, struct upstream_result *res)
{
    struct flight *fl = arg;
    fl->xfer = NULL;
    forget(fl); /* a leg that starts from here on gets a transfer of its own */
    fl->delivering = true;
    while (fl->head != NULL) {
        struct flight_wait *w = fl->head;
        unlink_wait(w);
        w->fl = NULL;
        w->active = false;
        struct upstream_result r = *res;
        if (fl->head == NULL) {
            res->body = NULL; /* the last leg takes the original */
        } else {
            r.body = NULL;
            if (res->error == ERRKIND_NONE && res->len > 0) {
                r.body = malloc(res->len);
                if (r.body != NULL) {
                    memcpy(r.body, res->body, res->len);
                } else {
                    r.error = ERRKIND_TRANSFER;
                    r.len = 0;
                    r.message = "out of memory copying a shared upstream answer";
                }
            }
        }
        w->done(w->arg, &r);
    }
    free(res->body); /* set when no leg was left to take it */
    flight_free(fl);
}

static void on_own_done(void *arg, struct upstream_result *res)
{
    struct flight_wait *w = arg;
    w->own = NULL;
    w->active = false;
    w->done(w->arg, res);
}

struct flights *flights_create(const struct upstream_ops *ops, void *ctx)
{
    struct flights *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->ops = ops;
    g->ctx = ctx;
    g->nbuckets = FIRST_BUCKETS;
    g->buckets = calloc(g->nbuckets, sizeof *g->buckets);
    if (g->buckets == NULL) {
        free(g);
        return NULL;
    }
    return g;
}

void flights_destroy(struct flights *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->nbuckets; i++)
        for (struct flight *fl = g->buckets[i], *next; fl != NULL; fl = next) {
            next = fl->hnext;
            g->ops->cancel(g->ctx, fl->xfer);
            for (struct flight_wait *w = fl->head; w != NULL; w = w->next) {
                w->active = false;
                w->fl = NULL;
            }
            flight_free(fl);
        }
    free(g->buckets);
    free(g);
}

/* A new flight for `req`, owning `key` (made by make_key(), len bytes) and, on success, started
 * and in the table at *slot. NULL when out of memory or the transfer cannot start; the key is
 * freed then. */
static struct flight *flight_start(struct flights *g, struct flight **slot, char *key, size_t len,
                                   uint64_t hash, const struct upstream_req *req)
{
    struct flight *fl = calloc(1, sizeof *fl);
    char **headers = calloc(req->nheaders + 1, sizeof *headers);
    if (fl == NULL || headers == NULL) {
        free(fl);
        free(headers);
        free(key);
        return NULL;
    }
    fl->g = g;
    fl->hash = hash;
    fl->key = key;
    fl->keylen = len;
    fl->headers = headers;
    /* The transfer borrows the flight's copy of the request, not the leg's. */
    char *p = key + strlen(key) + 1;
    struct upstream_req own = *req;
    own.url = p;
    p += strlen(p) + 1;
    for (size_t i = 0; i < req->nheaders; i++) {
        headers[i] = p;
        p += strlen(p) + 1;
    }
    own.headers = headers;
    fl->xfer = g->ops->start(g->ctx, &own, on_flight_done, fl);
    if (fl->xfer == NULL) {
        flight_free(fl);
        return NULL;
    }
    fl->hnext = *slot;
    *slot = fl;
    if (++g->n > g->nbuckets)
        grow(g);
    return fl;
}

int flight_join(struct flights *g, struct flight_wait *w, bool share,
                const struct upstream_req *req, upstream_done_fn done, void *arg, bool *joined)
{
    memset(w, 0, sizeof *w);
    w->done = done;
    w->arg = arg;
    *joined = false;
    if (!share) {
        w->own = g->ops->start(g->ctx, req, on_own_done, w);
        if (w->own == NULL)
            return -ENOMEM;
        w->g = g;
        w->active = true;
        return 0;
    }

    size_t len;
    char *key = make_key(req, &len);
    if (key == NULL)
        return -ENOMEM;
    uint64_t hash = hash_key(key, len);
    struct flight **slot = find(g, hash, key, len);
    struct flight *fl = *slot;
    if (fl != NULL) {
        free(key);
        *joined = true;
    } else if ((fl = flight_start(g, slot, key, len, hash, req)) == NULL) {
        return -ENOMEM;
    }
    w->g = g;
    w->fl = fl;
    w->prev = fl->tail;
    if (fl->tail != NULL)
        fl->tail->next = w;
    else
        fl->head = w;
    fl->tail = w;
    w->active = true;
    return 0;
}

size_t flights_count(const struct flights *g)
{
    return g->n;
}

void flight_leave(struct flight_wait *w)
{
    if (!w->active)
        return;
    w->active = false;
    if (w->fl == NULL) {
        w->g->ops->cancel(w->g->ctx, w->own);
        w->own = NULL;
        return;
    }
    struct flight *fl = w->fl;
    unlink_wait(w);
    w->fl = NULL;
    if (fl->head == NULL && !fl->delivering) {
        forget(fl);
        fl->g->ops->cancel(fl->g->ctx, fl->xfer);
        flight_free(fl);
    }
}
