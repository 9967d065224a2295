#include "flight.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct flight {
    struct flights *g;
    const void *key;
    struct upstream_xfer *xfer; /* NULL once finished */
    struct flight_wait *head, *tail;
    struct flight *hnext;
    bool delivering; /* in on_flight_done: legs that leave must not free it */
};

/* Chained hash table on the key's address. Few flights run at once (one per coalescing
 * backend at most), so it starts small and grows only with them. */
struct flights {
    struct upstream *u;
    struct flight **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;
};

#define FIRST_BUCKETS 16

static size_t bucket_of(const struct flights *g, const void *key)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (g->nbuckets - 1);
}

static struct flight **find(struct flights *g, const void *key)
{
    struct flight **p = &g->buckets[bucket_of(g, key)];
    while (*p != NULL && (*p)->key != key)
        p = &(*p)->hnext;
    return p;
}

static void forget(struct flight *fl)
{
    struct flights *g = fl->g;
    struct flight **p = find(g, fl->key);
    if (*p == fl) {
        *p = fl->hnext;
        g->n--;
    }
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
            size_t k = bucket_of(g, fl->key);
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
            if (res->error == AGG_E_NONE && res->len > 0) {
                r.body = malloc(res->len);
                if (r.body != NULL) {
                    memcpy(r.body, res->body, res->len);
                } else {
                    r.error = AGG_E_TRANSFER;
                    r.len = 0;
                    r.message = "out of memory copying a shared upstream answer";
                }
            }
        }
        w->done(w->arg, &r);
    }
    free(res->body); /* set when no leg was left to take it */
    free(fl);
}

static void on_own_done(void *arg, struct upstream_result *res)
{
    struct flight_wait *w = arg;
    w->own = NULL;
    w->active = false;
    w->done(w->arg, res);
}

struct flights *flights_create(struct upstream *u)
{
    struct flights *g = calloc(1, sizeof *g);
    if (g == NULL)
        return NULL;
    g->u = u;
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
            upstream_cancel(fl->xfer);
            for (struct flight_wait *w = fl->head; w != NULL; w = w->next) {
                w->active = false;
                w->fl = NULL;
            }
            free(fl);
        }
    free(g->buckets);
    free(g);
}

int flight_join(struct flights *g, struct flight_wait *w, const void *key,
                const struct upstream_req *req, upstream_done_fn done, void *arg, bool *joined)
{
    memset(w, 0, sizeof *w);
    w->done = done;
    w->arg = arg;
    *joined = false;
    if (key == NULL) {
        w->own = upstream_start(g->u, req, on_own_done, w);
        if (w->own == NULL)
            return -ENOMEM;
        w->active = true;
        return 0;
    }

    struct flight **slot = find(g, key);
    struct flight *fl = *slot;
    if (fl != NULL) {
        *joined = true;
    } else {
        fl = calloc(1, sizeof *fl);
        if (fl == NULL)
            return -ENOMEM;
        fl->g = g;
        fl->key = key;
        fl->xfer = upstream_start(g->u, req, on_flight_done, fl);
        if (fl->xfer == NULL) {
            free(fl);
            return -ENOMEM;
        }
        fl->hnext = *slot;
        *slot = fl;
        if (++g->n > g->nbuckets)
            grow(g);
    }
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

void flight_leave(struct flight_wait *w)
{
    if (!w->active)
        return;
    w->active = false;
    if (w->fl == NULL) {
        upstream_cancel(w->own);
        w->own = NULL;
        return;
    }
    struct flight *fl = w->fl;
    unlink_wait(w);
    w->fl = NULL;
    if (fl->head == NULL && !fl->delivering) {
        forget(fl);
        upstream_cancel(fl->xfer);
        free(fl);
    }
}
