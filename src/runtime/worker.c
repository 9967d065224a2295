#include "worker.h"

#include "acceptor.h"
#include "config.h"
#include "flight.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "router.h"
#include "site.h"
#include "upstream.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* After the drain limit, answers cut short still need time to reach slow clients. */
#define DRAIN_GRACE_MS 2000

static void stop_loop(struct worker *w)
{
    event_base_loopbreak(w->base);
}

static void on_request_finished(void *arg);

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    /* A worker with nothing in flight is only waiting for the others: nothing to report. */
    bool busy = httpd_in_flight(w->httpd) > 0;
    if (w->drain_expired) {
        if (busy)
            log_event(w->log, LOGLEVEL_WARN, "drain_forced", NULL);
        stop_loop(w);
        return;
    }
    w->drain_expired = true;
    if (busy)
        log_event(w->log, LOGLEVEL_WARN, "drain_limit", NULL);
    router_expire(w->router, "drain limit reached");
    /* Notifications still waiting are dropped (app.c logs how many once every worker ended);
     * so are those of the answers cut off just now. */
    notify_expire(w->notifier);
    struct timeval tv = {DRAIN_GRACE_MS / 1000, (DRAIN_GRACE_MS % 1000) * 1000};
    evtimer_add(w->drain_timer, &tv);
    on_request_finished(w);
}

/* A request finished; when draining and nothing is left, reports it to the control thread or,
 * once it said stop, ends the loop. */
static void on_request_finished(void *arg)
{
    struct worker *w = arg;
    if (!w->draining || httpd_in_flight(w->httpd) != 0)
        return;
    /* Idle connections stay open until every worker is done, so that a client holding one can
     * still see /readyz answer 503 whichever worker it landed on. */
    /* Notifications still queued keep the loop, not the drain of requests: they are sent after
     * the other workers are done too, within the drain limit (on_drain_timer()). */
    if (w->stopping) {
        if (notify_pending(w->notifier) == 0)
            stop_loop(w);
    } else {
        event_active(w->shared->on_idle, EV_READ, 0);
    }
}

static void begin_drain(struct worker *w)
{
    w->draining = true;
    /* The listening socket is shared by every worker and closed by the control thread once
     * all have let go of it. */
    acceptor_stop(w->acceptor);
    router_drain(w->router);
    httpd_wake(w->httpd);
    atomic_store(&w->quiesced, true);
    event_active(w->shared->on_quiesced, EV_READ, 0);
    long ms = w->site->cfg->drain_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(w->drain_timer, &tv);
    on_request_finished(w);
}

static void on_mail(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    /* The generation is read before the configuration: worker_post_config() stores them the
     * other way round, so what this worker serves after the exchange is at least that new,
     * whether the exchange took it now or (NULL) an earlier wakeup already did. */
    unsigned gen = atomic_load(&w->posted_gen);
    struct site *site = atomic_exchange(&w->next_site, NULL);
    if (site != NULL) {
        site_unref(w->site);
        w->site = site;
        router_set_site(w->router, site);
        /* Pools of origins it no longer names go once idle (out of memory: the last set holds). */
        upstream_keep_origins(w->upstream, site->urls, site->nurls);
    }
    if (gen > atomic_load(&w->applied_gen)) {
        atomic_store(&w->applied_gen, gen);
        event_active(w->shared->on_applied, EV_READ, 0);
    }
    if (atomic_load(&w->drain_requested) && !w->draining)
        begin_drain(w);
    if (atomic_load(&w->stop_requested) && !w->stopping) {
        w->stopping = true;
        on_request_finished(w);
    }
}

/* A connection the acceptor took goes to the daemon. */
static void on_accepted(void *arg, int fd, const struct sockaddr *addr, socklen_t len)
{
    struct worker *w = arg;
    httpd_add_connection(w->httpd, fd, addr, len);
}

int worker_init(struct worker *w, unsigned id, const struct worker_shared *shared,
                struct site *site, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->shared = shared;
    w->metrics = metrics_worker(shared->metrics, id);
    w->site = site_ref(site);
    const struct config *cfg = site->cfg;
    atomic_init(&w->next_site, NULL);
    atomic_init(&w->posted_gen, 0);
    atomic_init(&w->applied_gen, 0);
    atomic_init(&w->drain_requested, false);
    atomic_init(&w->stop_requested, false);
    atomic_init(&w->quiesced, false);
    atomic_init(&w->exited, false);
    uint64_t rid_seed;
    if (getrandom(&rid_seed, sizeof rid_seed, GRND_NONBLOCK) != sizeof rid_seed)
        rid_seed = (uint64_t)time(NULL) * 2654435761u ^ id;

    /* EV_CLOSED is how a parked request notices its client leaving; insist on a backend
     * (epoll) that reports it. */
    struct event_config *ec = event_config_new();
    if (ec != NULL)
        event_config_require_features(ec, EV_FEATURE_EARLY_CLOSE);
    w->base = ec ? event_base_new_with_config(ec) : NULL;
    event_config_free(ec);
    if (w->base == NULL) {
        snprintf(err, errlen, "cannot create an event loop with early-close support");
        return -ENOSYS;
    }
    w->log = log_sink_new(shared->logger);
    struct upstream_opts uo = {cfg->upstream_max_host_connections, cfg->upstream_idle_connections,
                               w->metrics};
    w->upstream = upstream_create(w->base, &uo);
    w->flights = w->upstream ? flights_create(&upstream_curl_ops, w->upstream) : NULL;
    struct notify_env ne = {&upstream_curl_ops, w->upstream, id, on_request_finished, w};
    w->notifier = w->upstream ? notify_create(&ne) : NULL;
    w->mail = event_new(w->base, -1, 0, on_mail, w);
    w->drain_timer = evtimer_new(w->base, on_drain_timer, w);
    struct router_env re = {
        .base = w->base,
        .worker = id,
        .log = w->log,
        .metrics = shared->metrics,
        .logw = shared->logger,
        .draining = shared->draining,
        .flights = w->flights,
        .cache = shared->cache,
        .notifier = w->notifier,
        .finished = on_request_finished,
        .arg = w,
    };
    w->router = w->log && w->flights ? router_create(&re, site) : NULL;
    if (w->log == NULL || w->upstream == NULL || w->flights == NULL || w->notifier == NULL ||
        w->mail == NULL || w->drain_timer == NULL || w->router == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct httpd_env he = {
        .base = w->base,
        .log = w->log,
        .metrics = w->metrics,
        .closing = shared->draining,
        .connection_limit = cfg->worker_connections,
        .idle_timeout_s = (unsigned)((cfg->idle_timeout_ms + 999) / 1000),
        .header_timeout_ms = (unsigned)cfg->header_timeout_ms,
        .send_timeout_s = (unsigned)((cfg->send_timeout_ms + 999) / 1000),
        .unsent = shared->unsent,
        .rid_seed = rid_seed,
        .hooks = &router_hooks,
        .arg = w->router,
    };
    if ((w->httpd = httpd_create(&he, err, errlen)) == NULL)
        return -EIO;
    struct acceptor_opts ao = {
        .base = w->base,
        .listen_fd = shared->listen_fd,
        .worker = id,
        .nworkers = shared->nworkers,
        .metrics = shared->metrics,
        .max_connections = (long)cfg->worker_connections,
        .log = w->log,
        .take = on_accepted,
        .arg = w,
    };
    if ((w->acceptor = acceptor_create(&ao)) == NULL) {
        snprintf(err, errlen, "cannot register the listening socket with its loop");
        return -EIO;
    }
    return 0;
}

/* Tears down what runs on the loop, in dependency order: the acceptor feeds the daemon, the
 * daemon's requests hold fan-outs (httpd_destroy() finishes them through the router), and
 * fan-outs hold flights, and the notifier its POSTs, over the upstream client. */
static void teardown(struct worker *w)
{
    /* Requests httpd_destroy() still finishes report nothing: the loop no longer runs. */
    if (w->notifier != NULL)
        notify_expire(w->notifier);
    acceptor_destroy(w->acceptor);
    w->acceptor = NULL;
    httpd_destroy(w->httpd);
    w->httpd = NULL;
    router_destroy(w->router);
    w->router = NULL;
    if (w->notifier != NULL)
        w->notify_dropped = notify_drain_dropped(w->notifier);
    notify_destroy(w->notifier); /* before the upstream client its POSTs ran on */
    w->notifier = NULL;
    flights_destroy(w->flights);
    w->flights = NULL;
    upstream_destroy(w->upstream);
    w->upstream = NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    teardown(w);
    atomic_store(&w->exited, true);
    event_active(w->shared->on_exit, EV_READ, 0);
    return NULL;
}

int worker_start(struct worker *w)
{
    /* On failure glibc has already stored a descriptor in w->thread and freed it again, so
     * whether there is a thread to join is recorded apart. */
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        return -rc;
    w->joinable = true;
    return 0;
}

void worker_post_config(struct worker *w, struct site *site, unsigned gen)
{
    site_unref(atomic_exchange(&w->next_site, site_ref(site)));
    atomic_store(&w->posted_gen, gen);
    event_active(w->mail, EV_READ, 0);
}

void worker_post_drain(struct worker *w)
{
    atomic_store(&w->drain_requested, true);
    event_active(w->mail, EV_READ, 0);
}

void worker_post_stop(struct worker *w)
{
    atomic_store(&w->stop_requested, true);
    event_active(w->mail, EV_READ, 0);
}

void worker_finish(struct worker *w)
{
    if (w->joinable)
        pthread_join(w->thread, NULL);
    teardown(w);
    if (w->mail != NULL)
        event_free(w->mail);
    if (w->drain_timer != NULL)
        event_free(w->drain_timer);
    if (w->base != NULL)
        event_base_free(w->base);
    site_unref(atomic_exchange(&w->next_site, NULL));
    site_unref(w->site);
    memset(w, 0, sizeof *w);
}
