/* A worker: one thread, one event_base, and everything that runs on it (the HTTP daemon and
 * the upstream client). Workers share nothing on the request path; the control thread talks to
 * a worker only through its mailbox (atomics plus event_active, which libevent makes safe
 * across threads). */
#ifndef GATHERD_WORKER_H
#define GATHERD_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct acceptor;
struct cache;
struct event;
struct event_base;
struct flights;
struct httpd;
struct log_sink;
struct log_writer;
struct metrics;
struct metrics_worker;
struct notifier;
struct router;
struct site;
struct upstream;

/* What the control thread provides every worker. Borrowed; outlives the workers. */
struct worker_shared {
    int listen_fd;
    unsigned nworkers;          /* how many share listen_fd */
    const atomic_int *draining; /* /readyz answers 503 once set */
    atomic_size_t *unsent;      /* bytes held, process-wide, for answers not yet sent */
    struct metrics *metrics;
    struct log_writer *logger;
    struct cache *cache; /* the response cache, shared by every worker */
    struct event
        *on_quiesced;      /* activated (in the control loop) when this worker stopped accepting */
    struct event *on_idle; /* activated when a draining worker has nothing in flight */
    struct event *on_applied; /* activated when a worker has taken a posted configuration */
    struct event *on_exit;    /* activated when this worker's loop has ended */
};

struct worker {
    /* Set at creation, read-only afterwards. */
    unsigned id;
    const struct worker_shared *shared;
    struct metrics_worker *metrics;

    /* Loop-thread only. */
    struct event_base *base;
    struct upstream *upstream;
    struct flights *flights;   /* over upstream: every leg starts through it */
    struct notifier *notifier; /* over upstream: the POSTs of endpoints with a notify */
    struct router *router;     /* what the daemon's requests are served by */
    struct httpd *httpd;
    struct acceptor *acceptor; /* new connections off the shared socket, for httpd */
    struct log_sink *log;
    struct site *site; /* current configuration; requests take their own reference */
    bool draining;
    bool stopping; /* the control thread said the drain is over */
    bool drain_expired;
    struct event *drain_timer;

    /* Mailbox, written by the control thread. */
    struct event *mail;
    _Atomic(struct site *) next_site;
    atomic_uint posted_gen;  /* generation of the newest configuration posted */
    atomic_uint applied_gen; /* a generation at most as new as the one this worker serves */
    atomic_bool drain_requested;
    atomic_bool stop_requested;
    atomic_bool quiesced; /* read by the control thread */
    atomic_bool exited;   /* the loop ended and the thread tore its parts down */
    /* Notifications the drain could not send; written before `exited` is set, read after. */
    size_t notify_dropped;

    pthread_t thread;
    bool joinable; /* worker_start() succeeded: only then does thread name a thread */
};

/* Builds the worker's loop, daemon and upstream client in the calling thread (so start-up
 * failures are reported before anything runs) with a reference to site. 0 or a negative errno,
 * with the reason in err (the caller names the worker). */
int worker_init(struct worker *w, unsigned id, const struct worker_shared *shared,
                struct site *site, char *err, size_t errlen);

/* Runs the loop on a new thread. 0, or a negative errno when the thread cannot be created (the
 * worker is then still only initialised: worker_finish() frees it without a join). */
int worker_start(struct worker *w);

/* From the control thread: hand over a new configuration (a site: a reference is taken)
 * numbered gen, which the worker stores in applied_gen, activating shared->on_applied, once it
 * serves it; or ask the worker to drain: stop accepting, finish what is in flight, and keep serving
 * the connections already open (answers carry Connection: close) until worker_post_stop(). A
 * draining worker activates shared->on_idle whenever nothing is left in flight, so the control
 * thread can tell when the whole process has drained; then worker_post_stop() ends the loop (at
 * once, or when what arrived meanwhile on open connections is done), which closes those
 * connections. */
void worker_post_config(struct worker *w, struct site *site, unsigned gen);
void worker_post_drain(struct worker *w);
void worker_post_stop(struct worker *w);

/* Joins the thread (if started) and frees what worker_init built. */
void worker_finish(struct worker *w);

#endif
