#include "worker.h"

#include "config.h"
#include "flight.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
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

static void on_drain_timer(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    /* A worker with nothing in flight is only waiting for the others: nothing to report. */
    bool busy = httpd_in_flight(w->httpd) > 0;
    if (w->drain_expired) {
        if (busy)
            log_event(w->log, LOG_WARN, "drain_forced", NULL);
        stop_loop(w);
        return;
    }
    w->drain_expired = true;
    if (busy)
        log_event(w->log, LOG_WARN, "drain_limit", NULL);
    httpd_expire_all(w->httpd, "drain limit reached");
    struct timeval tv = {DRAIN_GRACE_MS / 1000, (DRAIN_GRACE_MS % 1000) * 1000};
    evtimer_add(w->drain_timer, &tv);
}

static void begin_drain(struct worker *w)
{
    w->draining = true;
    httpd_quiesce(w->httpd);
    atomic_store(&w->quiesced, true);
    event_active(w->shared->on_quiesced, EV_READ, 0);
    long ms = w->cfg->drain_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(w->drain_timer, &tv);
    worker_request_finished(w);
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
    struct config *cfg = atomic_exchange(&w->next_cfg, NULL);
    if (cfg != NULL) {
        config_unref(w->cfg);
        w->cfg = cfg;
    }
    if (gen > atomic_load(&w->applied_gen)) {
        atomic_store(&w->applied_gen, gen);
        event_active(w->shared->on_applied, EV_READ, 0);
    }
    if (atomic_load(&w->drain_requested) && !w->draining)
        begin_drain(w);
    if (atomic_load(&w->stop_requested) && !w->stopping) {
        w->stopping = true;
        worker_request_finished(w);
    }
}

void worker_request_finished(struct worker *w)
{
    if (!w->draining || httpd_in_flight(w->httpd) != 0)
        return;
    /* Idle connections stay open until every worker is done, so that a client holding one can
     * still see /readyz answer 503 whichever worker it landed on. */
    if (w->stopping)
        stop_loop(w);
    else
        event_active(w->shared->on_idle, EV_READ, 0);
}

int worker_init(struct worker *w, unsigned id, const struct worker_shared *shared,
                struct config *cfg, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    w->shared = shared;
    w->metrics = metrics_worker(shared->metrics, id);
    w->cfg = config_ref(cfg);
    atomic_init(&w->next_cfg, NULL);
    atomic_init(&w->posted_gen, 0);
    atomic_init(&w->applied_gen, 0);
    atomic_init(&w->drain_requested, false);
    atomic_init(&w->stop_requested, false);
    atomic_init(&w->quiesced, false);
    atomic_init(&w->exited, false);
    if (getrandom(&w->rid_state, sizeof w->rid_state, GRND_NONBLOCK) != sizeof w->rid_state)
        w->rid_state = (uint64_t)time(NULL) * 2654435761u ^ id;

    /* EV_CLOSED is how a suspended request notices its client leaving; insist on a backend
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
    w->log = logger_sink(shared->logger);
    struct upstream_opts uo = {cfg->upstream_max_host_connections, cfg->upstream_idle_connections,
                               w->metrics};
    w->upstream = upstream_create(w->base, &uo);
    w->flights = w->upstream ? flights_create(w->upstream) : NULL;
    w->mail = event_new(w->base, -1, 0, on_mail, w);
    w->drain_timer = evtimer_new(w->base, on_drain_timer, w);
    if (w->log == NULL || w->upstream == NULL || w->flights == NULL || w->mail == NULL ||
        w->drain_timer == NULL) {
        snprintf(err, errlen, "out of memory setting up worker %u", id);
        return -ENOMEM;
    }
    if ((w->httpd = httpd_create(w, err, errlen)) == NULL)
        return -EIO;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    httpd_destroy(w->httpd); /* before the upstream client: it cancels transfers */
    w->httpd = NULL;
    flights_destroy(w->flights);
    w->flights = NULL;
    upstream_destroy(w->upstream);
    w->upstream = NULL;
    atomic_store(&w->exited, true);
    event_active(w->shared->on_exit, EV_READ, 0);
    return NULL;
}

int worker_start(struct worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        return -rc;
    return 0;
}

void worker_post_config(struct worker *w, struct config *cfg, unsigned gen)
{
    config_unref(atomic_exchange(&w->next_cfg, config_ref(cfg)));
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
    if (w->thread)
        pthread_join(w->thread, NULL);
    httpd_destroy(w->httpd);
    flights_destroy(w->flights);
    upstream_destroy(w->upstream);
    if (w->mail != NULL)
        event_free(w->mail);
    if (w->drain_timer != NULL)
        event_free(w->drain_timer);
    if (w->base != NULL)
        event_base_free(w->base);
    config_unref(atomic_exchange(&w->next_cfg, NULL));
    config_unref(w->cfg);
    memset(w, 0, sizeof *w);
}
