/* Request coalescing: legs of concurrent requests that make the same upstream call share one
 * transfer (a "flight") instead of each starting its own. One table per worker, so nothing is
 * shared across loops. Every leg, shared or not, starts through here, over the upstream
 * operations it was created with (upstream.h): curl's in the service, a fake in unit tests.
 *
 * Legs that may share are matched on their final upstream request: URL, headers, timeout and
 * body cap, everything that goes upstream but X-Request-Id, compared by value. So two calls
 * share only when they would have sent the same request, whatever configuration generation or
 * plan they come from; the flight keeps its own copy of that request, so the leg that started
 * it may leave first. The first leg's X-Request-Id goes upstream; later legs join while it runs
 * and receive the same outcome, so a joined leg can time out sooner than its own timeout_ms
 * would have. A finished flight is forgotten at once: nothing is cached. The transfer is
 * cancelled when its last leg leaves. */
#ifndef GATHERD_FLIGHT_H
#define GATHERD_FLIGHT_H

#include <stdbool.h>

#include "upstream.h"

struct flights;
struct flight;

/* A leg's place in a flight. The caller owns the storage; it must stay put from flight_join()
 * until the callback runs or flight_leave() returns. The caller may read `active`; the other
 * fields are private. */
struct flight_wait {
    struct flights *g;
    struct flight *fl;         /* NULL when the leg has a transfer of its own */
    struct upstream_xfer *own; /* that transfer */
    upstream_done_fn done;
    void *arg;
    struct flight_wait *prev, *next;
    bool active; /* between join and the callback or leave */
};

/* NULL when out of memory. `ops` and `ctx` (the upstream client) are borrowed and must outlive
 * the table. */
struct flights *flights_create(const struct upstream_ops *ops, void *ctx);

/* Cancels every flight without calling back and frees the table; accepts NULL. */
void flights_destroy(struct flights *g);

/* Starts `req`, or, when `share`, joins the flight already running for an identical request.
 * The callback is called once, from the loop, with a result whose body this leg owns; it is not
 * called after flight_leave(). An unshared leg's `req` (its strings and headers) is borrowed
 * until the callback or flight_leave(); a shared one is copied. 0, or -ENOMEM when the
 * transfer could not start (no callback then). *joined tells whether the leg joined a flight
 * another leg started. */
int flight_join(struct flights *g, struct flight_wait *w, bool share,
                const struct upstream_req *req, upstream_done_fn done, void *arg, bool *joined);

/* Flights running: for tests, which end by asserting nothing is left. */
size_t flights_count(const struct flights *g);

/* The leg no longer wants the answer; the transfer is cancelled if no other leg does. Accepts a
 * wait that is not active. */
void flight_leave(struct flight_wait *w);

#endif
