#include "upstream_int.h"

#include "clock.h"
#include "metrics.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* One per socket curl asks us to watch; tied to it with curl_multi_assign, and found by
 * descriptor in upstream.socks while curl has forgotten it.
 *
 * curl 7.88 drops a kept-alive connection's socket from its watch list when a transfer ends
 * (CURL_POLL_REMOVE) and asks for it again when the next transfer reuses the connection: two
 * epoll_ctl calls and an event allocated and freed per transfer. Instead an established
 * socket stays registered while its connection idles in curl's cache ("parked"), until
 * close_cb. That is only safe for sockets whose closing we are told of: those opened through
 * open_cb and past their TCP connect. curl 7.88 closes a connect attempt that loses the
 * happy-eyeballs race or is cancelled without the close callback, but such a socket was only
 * ever watched for writing; when curl stops watching it, an fstat tells whether it is still
 * the socket open_cb made (sock_still_ours). */
struct upstream__sock {
    struct event *ev;
    struct upstream__shard *shard;
    short kind;         /* what ev watches; 0 when it is not added */
    bool established;   /* curl waited to read from it: connected, closed through close_cb */
    bool parked;        /* curl no longer watches it; its connection idles in the cache */
    uint64_t parked_at; /* clock_us() when it was parked */
};

/* A non-NULL slot of upstream.socks without a usock yet: opened by open_cb, not watched. */
static struct upstream__sock sock_opened;

static void on_socket_event(evutil_socket_t fd, short kind, void *arg)
{
    struct upstream__sock *us = arg;
    struct upstream__shard *sh = us->shard;
    if (us->parked) {
        /* An idle connection became readable: the upstream closed it or misbehaves. curl
         * finds out when it next tries to reuse or prune it; stop waking up for it. */
        event_del(us->ev);
        us->kind = 0;
        return;
    }
    int action =
        ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    upstream__poll_socket_action(sh, fd, action);
    upstream__check_done(sh);
}

static struct upstream__sock **sock_slot(struct upstream *u, curl_socket_t s)
{
    return s >= 0 && (size_t)s < u->nsocks ? &u->socks[s] : NULL;
}

/* Whether s is still the socket open_cb opened under that number. Asked only when curl may
 * have closed it without the close callback, which happens to connect attempts, not per
 * transfer. */
static bool sock_still_ours(struct upstream *u, curl_socket_t s)
{
    struct stat st;
    return fstat(s, &st) == 0 && st.st_ino == u->inos[s];
}

/* curl closed a socket of ours without the close callback: account for it. */
static void sock_lost(struct upstream *u, struct upstream__sock **slot)
{
    *slot = NULL;
    metrics_gauge_add(&u->metrics->upstream_connections_open, -1);
}

static void usock_free(struct upstream__sock *us)
{
    if (us != NULL && us != &sock_opened) {
        us->shard->nsocks--;
        event_free(us->ev);
        free(us);
    }
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct upstream__shard *sh = userp;
    struct upstream *u = sh->pool->u;
    struct upstream__sock *us = socketp;
    struct upstream__sock **slot = sock_slot(u, s);
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (us == NULL)
            return 0;
        if (slot != NULL && *slot == us && us->established) {
            us->parked = true; /* keep watching for reading: the usual next interest */
            us->parked_at = clock_us();
            return 0;
        }
        /* Not established: a connect attempt. curl may close one without the close callback
         * (a losing or cancelled attempt), so the descriptor is no longer treated as ours. */
        if (slot != NULL && *slot == us) {
            if (sock_still_ours(u, s))
                *slot = &sock_opened;
            else
                sock_lost(u, slot);
        }
        usock_free(us);
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (us == NULL && slot != NULL && *slot != NULL && *slot != &sock_opened) {
        if ((*slot)->shard == sh && (*slot)->parked) {
            us = *slot; /* the parked socket of a reused connection */
        } else {
            usock_free(*slot); /* cannot happen; never keep a watch we cannot account for */
            *slot = &sock_opened;
        }
    }
    if (us == NULL) {
        us = calloc(1, sizeof *us);
        if (us == NULL)
            return -1;
        us->shard = sh;
        us->ev = event_new(u->base, s, kind, on_socket_event, us);
        if (us->ev == NULL) {
            free(us);
            return -1;
        }
        sh->nsocks++;
        if (slot != NULL && *slot == &sock_opened) {
            if (sock_still_ours(u, s))
                *slot = us;
            else
                sock_lost(u, slot); /* this descriptor is now curl's resolver's, say */
        }
    }
    if (us->parked || socketp == NULL)
        curl_multi_assign(sh->multi, s, us);
    us->parked = false;
    us->established |= (what & CURL_POLL_IN) != 0;
    if (us->kind == kind)
        return 0; /* same interest: spare the epoll_ctl */
    if (us->kind != 0)
        event_del(us->ev);
    event_assign(us->ev, u->base, s, kind, on_socket_event, us);
    us->kind = kind;
    return event_add(us->ev, NULL) == 0 ? 0 : -1;
}

/* Sockets are opened and closed through us to count connections (the metric shows reuse at
 * work) and to know which descriptors are ours: only those may stay parked (above). */
static curl_socket_t open_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct upstream *u = arg;
    (void)purpose;
    curl_socket_t s = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (s == CURL_SOCKET_BAD)
        return s;
    if ((size_t)s >= u->nsocks) {
        size_t n = u->nsocks ? u->nsocks : 1024;
        while (n <= (size_t)s)
            n *= 2;
        struct upstream__sock **socks = realloc(u->socks, n * sizeof *socks);
        if (socks != NULL)
            u->socks = socks;
        ino_t *inos = socks ? realloc(u->inos, n * sizeof *inos) : NULL;
        if (inos == NULL) {
            close(s);
            return CURL_SOCKET_BAD;
        }
        u->inos = inos;
        memset(u->socks + u->nsocks, 0, (n - u->nsocks) * sizeof *u->socks);
        u->nsocks = n;
    }
    struct stat st;
    if (fstat(s, &st) != 0) {
        close(s);
        return CURL_SOCKET_BAD;
    }
    /* A slot still in use means curl closed that descriptor without telling us (an abandoned
     * connect attempt): its watch, if any, is stale, and it is no longer open. */
    if (u->socks[s] != NULL) {
        usock_free(u->socks[s]);
        sock_lost(u, &u->socks[s]);
    }
    u->socks[s] = &sock_opened;
    u->inos[s] = st.st_ino;
    metrics_gauge_add(&u->metrics->upstream_connections_open, 1);
    metrics_add(&u->metrics->upstream_connections_opened, 1);
    return s;
}

static int close_cb(void *arg, curl_socket_t s)
{
    struct upstream *u = arg;
    struct upstream__sock **slot = sock_slot(u, s);
    if (slot != NULL && *slot != NULL) {
        /* curl has said CURL_POLL_REMOVE first if it was watching the socket: a parked watch
         * ends here, before the descriptor can be reused. One curl still holds is stopped
         * now and freed by its CURL_POLL_REMOVE. */
        struct upstream__sock *us = *slot;
        if (us->parked) {
            usock_free(us);
        } else if (us != &sock_opened && us->kind != 0) {
            event_del(us->ev);
            us->kind = 0;
        }
        *slot = NULL;
    }
    metrics_gauge_add(&u->metrics->upstream_connections_open, -1);
    upstream__poll_forget(s);
    return close(s);
}

bool upstream__sock_quiet(const struct upstream *u, curl_socket_t s)
{
    const struct upstream__sock *us = s >= 0 && (size_t)s < u->nsocks ? u->socks[s] : NULL;
    /* A watch that saw anything was stopped (on_socket_event): kind is 0 from then on. */
    return us != NULL && us != &sock_opened && us->parked && (us->kind & EV_READ) &&
           clock_us() - us->parked_at < UPSTREAM__QUIET_TRUST_US;
}

void upstream__sock_attach_multi(struct upstream__shard *sh)
{
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
}

void upstream__sock_attach_easy(struct upstream *u, CURL *e)
{
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, u);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, u);
}

void upstream__sock_forget_shard(struct upstream__shard *sh)
{
    struct upstream *u = sh->pool->u;
    for (size_t i = 0; sh->nsocks > 0 && i < u->nsocks; i++)
        if (u->socks[i] != NULL && u->socks[i] != &sock_opened && u->socks[i]->shard == sh) {
            usock_free(u->socks[i]);
            u->socks[i] = &sock_opened; /* open, for all we know: no longer watched */
        }
}

void upstream__sock_finish(struct upstream *u)
{
    /* The pools are gone: usock_free() would count in them. */
    for (size_t i = 0; i < u->nsocks; i++)
        if (u->socks[i] != NULL && u->socks[i] != &sock_opened) {
            event_free(u->socks[i]->ev);
            free(u->socks[i]);
        }
    free(u->socks);
    free(u->inos);
}
