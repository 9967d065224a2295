/* The queue of transfers waiting for a connection: those a pool holds back while
 * max_host_connections of its transfers run (upstream_int.h says why not in curl). They start
 * in arrival order, and a transfer's timeout_ms counts from upstream_start(), queue time
 * included, so one that waits too long fails while it waits.
 *
 * One timer per pool serves every deadline, not one per transfer (thousands may queue). The
 * transfers queued with the same timeout_ms form a class, kept in arrival order, so their
 * deadlines come in that order too: the earliest deadline of the queue is the earliest among
 * the heads of the classes. A pool has as many classes as distinct timeouts wait on it, which
 * is at most the number of distinct backend timeouts on that origin. The timer is kept at or
 * before the earliest deadline: a push may bring it forward, a removal never moves it, so that
 * removing (a transfer's turn, or a cancel) is constant time; the timer may then fire with
 * nothing due, and is set again for what is. */
#include "upstream_int.h"

#include "clock.h"

#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>

struct upstream__qclass {
    long timeout_ms;
    size_t index; /* in pool.classes */
    struct upstream__qlist list;
};

static void append(struct upstream__qlist *l, struct upstream__queued *q, int by)
{
    q->link[by].prev = l->tail;
    q->link[by].next = NULL;
    if (l->tail != NULL)
        l->tail->link[by].next = q;
    else
        l->head = q;
    l->tail = q;
}

static void unlink_from(struct upstream__qlist *l, struct upstream__queued *q, int by)
{
    struct upstream__queued *prev = q->link[by].prev, *next = q->link[by].next;
    if (prev != NULL)
        prev->link[by].next = next;
    else
        l->head = next;
    if (next != NULL)
        next->link[by].prev = prev;
    else
        l->tail = prev;
    q->link[by].prev = q->link[by].next = NULL;
}

/* Has the timer fire at `at` at the latest. */
static void arm(struct upstream__pool *p, uint64_t at, uint64_t now)
{
    if (p->queue_timer_at != 0 && p->queue_timer_at <= at)
        return;
    uint64_t us = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    if (evtimer_add(p->queue_timer, &tv) == 0)
        p->queue_timer_at = at;
}

/* A queued transfer whose deadline is not after now, or NULL; when there is none, sets the
 * timer for the earliest deadline. */
static struct upstream__queued *due(struct upstream__pool *p, uint64_t now)
{
    uint64_t earliest = UINT64_MAX;
    for (size_t i = 0; i < p->nclasses; i++) {
        struct upstream__queued *q = p->classes[i]->list.head;
        if (q->deadline <= now)
            return q;
        if (q->deadline < earliest)
            earliest = q->deadline;
    }
    if (p->nclasses > 0)
        arm(p, earliest, now);
    return NULL;
}

static void on_queue_timer(evutil_socket_t fd, short what, void *arg)
{
    struct upstream__pool *p = arg;
    (void)fd;
    (void)what;
    p->queue_timer_at = 0;
    /* Each callback may queue or cancel transfers of this pool: look again after each. Pools
     * are only released from an event of their own (upstream__pool_idle), so p stays. */
    struct upstream__queued *q;
    while ((q = due(p, clock_us())) != NULL)
        upstream__queue_timed_out(q->x);
    /* upstream__pump() stops at a first transfer that is due, leaving it to this timer. */
    upstream__pump(p);
}

int upstream__queue_init(struct upstream__pool *p)
{
    p->queue_timer = evtimer_new(p->u->base, on_queue_timer, p);
    return p->queue_timer != NULL ? 0 : -ENOMEM;
}

void upstream__queue_finish(struct upstream__pool *p)
{
    if (p->queue_timer != NULL)
        event_free(p->queue_timer);
    p->queue_timer = NULL;
    for (size_t i = 0; i < p->nclasses; i++)
        free(p->classes[i]);
    free(p->classes);
    p->classes = NULL;
    p->nclasses = p->classes_cap = 0;
}

/* The class of timeout_ms, made when none waits yet; NULL when out of memory. */
static struct upstream__qclass *class_of(struct upstream__pool *p, long timeout_ms)
{
    for (size_t i = 0; i < p->nclasses; i++)
        if (p->classes[i]->timeout_ms == timeout_ms)
            return p->classes[i];
    if (p->nclasses == p->classes_cap) {
        size_t cap = p->classes_cap ? p->classes_cap * 2 : 4;
        struct upstream__qclass **grown = realloc(p->classes, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        p->classes = grown;
        p->classes_cap = cap;
    }
    struct upstream__qclass *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->timeout_ms = timeout_ms;
    c->index = p->nclasses;
    p->classes[p->nclasses++] = c;
    return c;
}

int upstream__queue_push(struct upstream__pool *p, struct upstream__queued *q, long timeout_ms)
{
    struct upstream__qclass *c = class_of(p, timeout_ms);
    if (c == NULL)
        return -ENOMEM;
    uint64_t now = clock_us();
    q->cls = c;
    q->deadline = now + (uint64_t)timeout_ms * 1000;
    append(&p->queue, q, UPSTREAM__BY_ARRIVAL);
    append(&c->list, q, UPSTREAM__BY_CLASS);
    arm(p, q->deadline, now);
    return 0;
}

void upstream__queue_remove(struct upstream__pool *p, struct upstream__queued *q)
{
    struct upstream__qclass *c = q->cls;
    unlink_from(&p->queue, q, UPSTREAM__BY_ARRIVAL);
    unlink_from(&c->list, q, UPSTREAM__BY_CLASS);
    q->cls = NULL;
    if (c->list.head == NULL) {
        struct upstream__qclass *last = p->classes[--p->nclasses];
        p->classes[c->index] = last;
        last->index = c->index;
        free(c);
    }
    if (p->queue.head == NULL && p->queue_timer_at != 0) {
        event_del(p->queue_timer); /* nothing left to fire for */
        p->queue_timer_at = 0;
    }
}
