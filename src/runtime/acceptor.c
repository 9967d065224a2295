#include "acceptor.h"

#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How many connections more than the least busy worker a worker may hold before it yields,
 * and for how long it yields. */
#define SPREAD_SLACK 1
#define SPREAD_YIELD_MS 1
/* Connections taken per wakeup: one at a time while there are several workers, so that a
 * burst is shared; more for one worker, which has nobody to share with. */
#define BATCH_ALONE 64
/* After EMFILE and the like, the socket stays readable: wait instead of spinning. */
#define PAUSE_MS 100
/* At max_connections, new connections wait in the backlog (as with nginx) rather than being
 * accepted and closed; look again this often. */
#define FULL_MS 10

struct acceptor {
    struct acceptor_opts o;
    struct metrics_worker *mine;
    struct event *listen;   /* the shared socket, level-triggered */
    struct event *deferred; /* accept again after yielding, after EMFILE, or when full */
    bool stopped;
};

static bool over_share(const struct acceptor *a)
{
    int_fast64_t mine = atomic_load(&a->mine->http_connections_open), least = mine;
    for (unsigned i = 0; i < a->o.nworkers; i++) {
        int_fast64_t n = atomic_load(&metrics_worker(a->o.metrics, i)->http_connections_open);
        if (n < least)
            least = n;
    }
    return mine > least + SPREAD_SLACK;
}

static void pause_for(struct acceptor *a, long ms)
{
    event_del(a->listen);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(a->deferred, &tv);
}

static void accept_some(struct acceptor *a, bool may_yield)
{
    if (a->stopped)
        return;
    if (may_yield && a->o.nworkers > 1 && over_share(a)) {
        pause_for(a, SPREAD_YIELD_MS);
        return;
    }
    int batch = a->o.nworkers > 1 ? 1 : BATCH_ALONE;
    for (int i = 0; i < batch; i++) {
        if (atomic_load(&a->mine->http_connections_open) >= a->o.max_connections) {
            pause_for(a, FULL_MS);
            return;
        }
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr;
        int fd =
            accept4(a->o.listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                char f[96];
                snprintf(f, sizeof f, "\"error\":\"accept: %s\"", strerror(errno));
                log_event(a->o.log, LOGLEVEL_WARN, "accept_paused", f);
                pause_for(a, PAUSE_MS);
            }
            return; /* EAGAIN: another worker took it; ECONNABORTED and the like: gone */
        }
        a->o.take(a->o.arg, fd, (struct sockaddr *)&addr, len);
    }
}

static void on_listen(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    accept_some(arg, true);
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct acceptor *a = arg;
    (void)fd;
    (void)what;
    if (a->stopped)
        return;
    event_add(a->listen, NULL);
    accept_some(a, false);
}

struct acceptor *acceptor_create(const struct acceptor_opts *opts)
{
    struct acceptor *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->o = *opts;
    a->mine = metrics_worker(opts->metrics, opts->worker);
    a->listen = event_new(opts->base, opts->listen_fd, EV_READ | EV_PERSIST, on_listen, a);
    a->deferred = evtimer_new(opts->base, on_deferred, a);
    if (a->listen == NULL || a->deferred == NULL || event_add(a->listen, NULL) != 0) {
        acceptor_destroy(a);
        return NULL;
    }
    return a;
}

void acceptor_stop(struct acceptor *a)
{
    a->stopped = true;
    event_del(a->listen);
    event_del(a->deferred);
}

void acceptor_destroy(struct acceptor *a)
{
    if (a == NULL)
        return;
    if (a->listen != NULL)
        event_free(a->listen);
    if (a->deferred != NULL)
        event_free(a->deferred);
    free(a);
}
