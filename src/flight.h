/* Request coalescing: legs of concurrent requests that ask the same backend the same thing
 * share one upstream transfer (a "flight") instead of each starting its own. One table per
 * worker, so nothing is shared across loops.
 *
 * A leg names what it asks for with a key: the configured backend (one per configuration
 * generation), since everything that goes upstream but X-Request-Id comes from it. A leg with
 * no key always gets a transfer of its own. The first leg of a flight starts the transfer with
 * its request (its X-Request-Id goes upstream); later legs join while it runs and receive the
 * same outcome, so a joined leg can time out sooner than its own timeout_ms would have. A
 * finished flight is forgotten at once: nothing is cached. The transfer is cancelled when its
 * last leg leaves. */
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
    struct flight *fl;         /* NULL when the leg has a transfer of its own */
    struct upstream_xfer *own; /* that transfer */
    upstream_done_fn done;
    void *arg;
    struct flight_wait *prev, *next;
    bool active; /* between join and the callback or leave */
};

/* NULL when out of memory. The upstream is borrowed and must outlive the table. */
struct flights *flights_create(struct upstream *u);

/* Cancels every flight without calling back and frees the table; accepts NULL. */
void flights_destroy(struct flights *g);

/* Starts `req`, or joins the flight already running under `key` (NULL: never shared). The
 * callback is called once, from the loop, with a result whose body this leg owns; it is not
 * called after flight_leave(). `req` is only read when a transfer starts: its headers are then
 * borrowed until the flight ends, which the key's owner must outlast. 0, or -ENOMEM when the
 * transfer could not start (no callback then). *joined tells whether the leg joined a flight
 * another leg started. */
int flight_join(struct flights *g, struct flight_wait *w, const void *key,
                const struct upstream_req *req, upstream_done_fn done, void *arg, bool *joined);

/* The leg no longer wants the answer; the transfer is cancelled if no other leg does. Accepts a
 * wait that is not active. */
void flight_leave(struct flight_wait *w);

#endif
