#include "httpd.h"

#include "acceptor.h"
#include "access.h"
#include "agg.h"
#include "buf.h"
#include "clock.h"
#include "config.h"
#include "fanout.h"
#include "jsonv.h"
#include "log.h"
#include "metrics.h"
#include "netacl.h"
#include "reqhead.h"
#include "worker.h"

#include <errno.h>
#include <event2/event.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A GET that carries a body larger than this is refused; smaller ones are read and ignored. */
#define MAX_REQUEST_BODY (64u << 10)
/* libmicrohttpd 0.9.75 cannot queue an answer in the middle of an upload, so an over-long
 * chunked body is read and discarded up to this much before the 413; past it, the connection
 * is closed instead. */
#define MAX_DISCARD_BODY (1u << 20)
/* Request targets (path and query) longer than this get 414, as nginx's default buffers do. */
#define MAX_TARGET 8192
/* libmicrohttpd's per-connection memory: request line, headers and the reply's headers. MHD
 * touches most of it, so it is most of a connection's footprint: 32 KiB (the default) measured
 * 94 MB peak RSS with 1,000 requests in flight, 16 KiB 77 MB. Headers past it get 431. */
#define CONNECTION_MEMORY (16u << 10)

enum phase {
    PH_NEW,      /* headers seen, routed, not yet dispatched */
    PH_WAITING,  /* suspended while the fan-out runs */
    PH_READY,    /* the join is ready; resumed, to be queued on the next handler call */
    PH_ANSWERED, /* a response is queued */
    PH_GONE,     /* the client left while suspended */
};

enum route { RT_ENDPOINT, RT_HEALTHZ, RT_READYZ, RT_METRICS, RT_NOT_FOUND };

struct httpd {
    struct worker *w;
    struct MHD_Daemon *daemon;
    struct event *io;        /* the daemon's epoll descriptor, level-triggered */
    struct event *tick;      /* the daemon's own timeout; activated by hand to make it run */
    struct acceptor *accept; /* new connections off the shared socket; the daemon has none */
    size_t in_flight;
    struct request *waiting; /* suspended requests, for the drain limit and shutdown */
    struct metrics_endpoint *m_unmatched, *m_healthz, *m_readyz, *m_metrics;
};

/* One per client connection, registered with the loop for the connection's whole life:
 * registering only while a request is suspended cost an epoll_ctl ADD and DEL and an event
 * allocation per request. Created and freed in on_connection(). */
struct conn_watch {
    struct event *ev;
    struct request *parked; /* the request suspended on this connection, if any */
    bool gone;              /* a hang-up was seen while nothing was suspended */
};

/* Everything one request owns; freed in on_completed() only. */
struct request {
    struct httpd *h;
    struct MHD_Connection *conn;
    struct config *cfg; /* reference held for the request's lifetime */
    const struct config_endpoint *ep;
    struct metrics_endpoint *stats;
    enum route route;
    enum phase phase;
    bool head;
    bool body_too_large;
    bool close_after; /* the connection cannot be trusted for another request */
    int status;
    size_t body_seen;
    size_t bytes_out;
    struct fanout *fanout;
    struct conn_watch *watch; /* its connection's, while suspended */
    int answer_status;
    char *answer;
    size_t answer_len;
    uint64_t t0;
    struct request *prev, *next; /* in h->waiting while PH_WAITING */
    char method[8];
    char path[201];
    char rid[ACCESS_RID_MAX + 1];
    char client[NETACL_ADDRSTRLEN];
};

static void run_daemon(struct httpd *h)
{
    MHD_run(h->daemon);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->daemon, &ms) == MHD_YES) {
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
        evtimer_add(h->tick, &tv); /* 0 included: the daemon has buffered work to do */
    } else {
        evtimer_del(h->tick);
    }
}

static void on_daemon_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_daemon(arg);
}

/* Without an internal thread, MHD_resume_connection() only sets a flag: nothing wakes the
 * loop. So after resuming, make the daemon run on the next loop iteration. */
static void kick(struct httpd *h)
{
    event_active(h->tick, EV_TIMEOUT, 0);
}

static void unlink_waiting(struct request *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else if (r->h->waiting == r)
        r->h->waiting = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void resume(struct request *r, enum phase phase)
{
    if (r->watch != NULL) {
        r->watch->parked = NULL;
        r->watch = NULL;
    }
    unlink_waiting(r);
    r->phase = phase;
    MHD_resume_connection(r->conn);
    kick(r->h);
}

static void on_join_ready(void *arg, int status, char *body, size_t len)
{
    struct request *r = arg;
    r->answer_status = status;
    r->answer = body;
    r->answer_len = len;
    resume(r, PH_READY);
}

/* The connection's socket is watched edge-triggered for hang-up (EV_CLOSED: a FIN, whether
 * the client closed or half-closed) and for EV_WRITE, which is how libevent delivers a reset
 * (EPOLLHUP|EPOLLERR) to an event that does not ask for EV_READ. Not asking for EV_READ keeps
 * a request's own bytes, and pipelined ones, from waking us: the daemon reads those.
 *
 * While a request is suspended, a hang-up means the client left (nginx treats a half-close
 * the same way), so its upstream transfers are cancelled at once; a bare EV_WRITE is either a
 * reset or the send buffer draining after an earlier answer, and a peek tells which.
 * Otherwise the daemon sees a reset itself, and a half-close is remembered so that a request
 * dispatched after it (the edge does not come again) counts as abandoned. */
static void on_client_event(evutil_socket_t fd, short what, void *arg)
{
    struct conn_watch *cw = arg;
    struct request *r = cw->parked;
    if (r == NULL) {
        cw->gone |= (what & EV_CLOSED) != 0;
        return;
    }
    if (!(what & EV_CLOSED)) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0 || (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
            return;
    }
    fanout_cancel(r->fanout);
    resume(r, PH_GONE);
}

static void generate_rid(struct worker *w, char *out)
{
    /* splitmix64 over a per-worker random seed: unique enough to correlate logs, no syscall. */
    uint64_t z = (w->rid_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    snprintf(out, ACCESS_RID_MAX + 1, "%016llx", (unsigned long long)z);
}

static struct request *request_new(struct httpd *h, struct MHD_Connection *conn, const char *url,
                                   const char *method)
{
    struct worker *w = h->w;
    struct request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->h = h;
    r->conn = conn;
    r->t0 = clock_us();
    r->cfg = config_ref(w->cfg);
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    r->head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (access_rid_valid(rid))
        snprintf(r->rid, sizeof r->rid, "%s", rid);
    else
        generate_rid(w, r->rid);
    if (r->cfg->access_log)
        reqhead_client(conn, r->cfg->trusted_proxies, r->client, sizeof r->client);

    if ((r->ep = config_find(r->cfg, url)) != NULL) {
        r->route = RT_ENDPOINT;
        r->stats = r->ep->stats;
    } else if (strcmp(url, "/healthz") == 0) {
        r->route = RT_HEALTHZ;
        r->stats = h->m_healthz;
    } else if (strcmp(url, "/readyz") == 0) {
        r->route = RT_READYZ;
        r->stats = h->m_readyz;
    } else if (strcmp(url, "/metrics") == 0) {
        r->route = RT_METRICS;
        r->stats = h->m_metrics;
    } else {
        r->route = RT_NOT_FOUND;
        r->stats = h->m_unmatched;
    }
    h->in_flight++;
    metrics_gauge_add(&w->metrics->requests_in_flight, 1);
    return r;
}

/* Queues an answer. `body` is malloc'd and handed over when `owned`, static otherwise. */
static enum MHD_Result answer(struct request *r, int status, const char *ctype, char *body,
                              size_t len, bool owned, const char *allow)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Request-Id", r->rid);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (r->close_after || *r->h->w->shared->draining)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->bytes_out = r->head ? 0 : len;
    r->phase = PH_ANSWERED;
    return ok;
}

#define JSON_TYPE "application/json"

static enum MHD_Result answer_error(struct request *r, int status, const char *code,
                                    const char *message, const char *allow)
{
    struct buf b = BUF_INIT;
    if (buf_printf(&b, "{\"error\":\"%s\",\"message\":", code) < 0 ||
        jsonv_append_string(&b, message, strlen(message)) < 0 || buf_appendc(&b, '}') < 0) {
        buf_finish(&b);
        return MHD_NO;
    }
    size_t len;
    char *body = buf_steal(&b, &len);
    return answer(r, status, JSON_TYPE, body, len, true, allow);
}

static enum MHD_Result answer_static(struct request *r, int status, const char *json)
{
    return answer(r, status, JSON_TYPE, (char *)json, strlen(json), false, NULL);
}

static enum MHD_Result serve_metrics(struct request *r)
{
    const struct worker_shared *s = r->h->w->shared;
    struct buf b = BUF_INIT;
    metrics_set_log_dropped(s->metrics, logger_dropped(s->logger));
    if (metrics_render(s->metrics, &b) < 0) {
        buf_finish(&b);
        return answer_static(r, 500, "{\"error\":\"internal\",\"message\":\"out of memory\"}");
    }
    size_t len;
    char *body = buf_steal(&b, &len);
    return answer(r, 200, "text/plain; version=0.0.4; charset=utf-8", body, len, true, NULL);
}

static enum MHD_Result dispatch(struct request *r)
{
    struct httpd *h = r->h;
    struct worker *w = h->w;

    if (r->route == RT_NOT_FOUND) {
        char msg[240];
        snprintf(msg, sizeof msg, "no endpoint at %s", r->path);
        return answer_error(r, 404, "not_found", msg, NULL);
    }
    if (strcmp(r->method, MHD_HTTP_METHOD_GET) != 0 && !r->head)
        return answer_error(r, 405, "method_not_allowed", "only GET and HEAD are allowed",
                            "GET, HEAD");
    switch (r->route) {
    case RT_HEALTHZ:
        return answer_static(r, 200, "{\"status\":\"ok\"}");
    case RT_READYZ:
        if (*w->shared->draining)
            return answer_static(r, 503, "{\"status\":\"draining\"}");
        return answer_static(r, 200, "{\"status\":\"ready\"}");
    case RT_METRICS:
        return serve_metrics(r);
    default:
        break;
    }
    if (w->drain_expired)
        return answer_error(r, 503, "draining", "the server is shutting down", NULL);

    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_watch *cw = ci != NULL ? ci->socket_context : NULL;
    if (cw != NULL && cw->gone) {
        r->phase = PH_GONE; /* answered 499 by on_completed() when the daemon closes */
        return MHD_NO;
    }
    struct fanout_env env = {w->base, w->flights, w->id};
    r->fanout = fanout_start(&env, r->ep, r->rid, on_join_ready, r);
    if (r->fanout == NULL)
        return answer_error(r, 500, "internal", "out of memory", NULL);
    MHD_suspend_connection(r->conn);
    if (cw != NULL) {
        cw->parked = r;
        r->watch = cw;
    }
    r->phase = PH_WAITING;
    r->next = h->waiting;
    if (h->waiting != NULL)
        h->waiting->prev = r;
    h->waiting = r;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct httpd *h = cls;
    struct request *r = *req_cls;
    (void)upload_data;

    if (r == NULL) {
        if ((r = request_new(h, conn, url, method)) == NULL)
            return MHD_NO;
        *req_cls = r;
        const char *bad = reqhead_framing_problem(conn, version);
        if (bad != NULL) {
            r->close_after = true;
            return answer_error(r, 400, "bad_request", bad, NULL);
        }
        if (reqhead_target_len(conn, url) > MAX_TARGET)
            return answer_error(r, 414, "uri_too_long", "request target too long", NULL);
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > MAX_REQUEST_BODY)
            return answer_error(r, 413, "payload_too_large", "request body too large", NULL);
        return MHD_YES;
    }
    switch (r->phase) {
    case PH_NEW:
        if (*upload_data_size > 0) {
            r->body_seen += *upload_data_size;
            *upload_data_size = 0;
            r->body_too_large = r->body_seen > MAX_REQUEST_BODY;
            return r->body_seen > MAX_DISCARD_BODY ? MHD_NO : MHD_YES;
        }
        if (r->body_too_large)
            return answer_error(r, 413, "payload_too_large", "request body too large", NULL);
        return dispatch(r);
    case PH_READY:
        if (r->answer == NULL)
            return answer_error(r, 500, "internal", "out of memory", NULL);
        char *body = r->answer;
        r->answer = NULL;
        return answer(r, r->answer_status, JSON_TYPE, body, r->answer_len, true, NULL);
    case PH_ANSWERED:
        *upload_data_size = 0; /* the rest of a refused body: discard */
        return MHD_YES;
    case PH_GONE:
    case PH_WAITING:
    default:
        return MHD_NO;
    }
}

static void log_access_line(struct request *r, uint64_t usec)
{
    struct access_entry e = {
        .request_id = r->rid,
        .method = r->method,
        .path = r->path,
        .status = r->status,
        .worker = r->h->w->id,
        .usec = usec,
        .bytes = r->bytes_out,
        .client = r->client,
        .ep = r->ep,
        .fanout = r->fanout,
        .client_gone = r->phase == PH_GONE,
    };
    struct buf b = BUF_INIT;
    if (access_format(&b, &e) == 0)
        log_access(r->h->w->log, b.data, b.len);
    buf_finish(&b);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct httpd *h = cls;
    struct request *r = *req_cls;
    (void)conn;
    if (r == NULL)
        return;
    *req_cls = NULL;

    if (r->phase != PH_ANSWERED || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* nginx's convention: 499 for a client that closed before its answer was sent. */
        if (r->phase != PH_ANSWERED || toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ||
            toe == MHD_REQUEST_TERMINATED_READ_ERROR)
            r->status = 499;
        r->bytes_out = 0;
    }
    uint64_t usec = clock_us() - r->t0;
    metrics_request_done(r->stats, h->w->id, r->status, usec);
    if (r->cfg->access_log)
        log_access_line(r, usec);

    unlink_waiting(r);
    if (r->watch != NULL)
        r->watch->parked = NULL;
    fanout_destroy(r->fanout);
    free(r->answer);
    config_unref(r->cfg);
    free(r);

    h->in_flight--;
    metrics_gauge_add(&h->w->metrics->requests_in_flight, -1);
    worker_request_finished(h->w);
}

/* Creates the connection's watch (without one, a client leaving is only noticed when its
 * answer is sent) and frees it when libmicrohttpd lets go of the connection, before it closes
 * the descriptor. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct httpd *h = cls;
    struct conn_watch *cw = *socket_ctx;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        metrics_gauge_add(&h->w->metrics->http_connections_open, 1);
        metrics_add(&h->w->metrics->http_connections_opened, 1);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL || (cw = calloc(1, sizeof *cw)) == NULL)
            return;
        cw->ev = event_new(h->w->base, ci->connect_fd, EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST,
                           on_client_event, cw);
        if (cw->ev == NULL || event_add(cw->ev, NULL) != 0) {
            if (cw->ev != NULL)
                event_free(cw->ev);
            free(cw);
            return;
        }
        *socket_ctx = cw;
    } else {
        metrics_gauge_add(&h->w->metrics->http_connections_open, -1);
        if (cw != NULL) {
            if (cw->parked != NULL)
                cw->parked->watch = NULL;
            event_free(cw->ev);
            free(cw);
            *socket_ctx = NULL;
        }
    }
}

/* A connection the acceptor took goes to the daemon, which closes it on failure (its
 * connection limit, out of memory); it is read on the daemon's next run. */
static void on_accepted(void *arg, int fd, const struct sockaddr *addr, socklen_t len)
{
    struct httpd *h = arg;
    MHD_add_connection(h->daemon, fd, addr, len);
    kick(h);
}

/* libmicrohttpd reports both what clients did wrong (malformed requests: noise an attacker can
 * generate at will, so debug) and what went wrong in the server (accept failures such as
 * EMFILE, the connection limit, epoll errors: warnings an operator must see). Its messages
 * are free text; these are the server-side ones in 0.9.75. */
static enum log_level mhd_level(const char *fmt)
{
    static const char *const server_side[] = {"accept", "limit", "epoll", "Failed to", NULL};
    for (const char *const *w = server_side; *w != NULL; w++)
        if (strstr(fmt, *w) != NULL)
            return LOG_WARN;
    return LOG_DEBUG;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct httpd *h = cls;
    char msg[512];
    enum log_level level = mhd_level(fmt);
    if (!log_enabled(h->w->log, level))
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    struct buf f = BUF_INIT;
    if (buf_appends(&f, "\"source\":\"libmicrohttpd\",\"detail\":") == 0 &&
        jsonv_append_string(&f, msg, n) == 0)
        log_event(h->w->log, level, "http", f.data);
    buf_finish(&f);
}

struct httpd *httpd_create(struct worker *w, char *err, size_t errlen)
{
    struct httpd *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->w = w;
    struct metrics *m = w->shared->metrics;
    h->m_unmatched = metrics_builtin(m, "(unmatched)");
    h->m_healthz = metrics_builtin(m, "/healthz");
    h->m_readyz = metrics_builtin(m, "/readyz");
    h->m_metrics = metrics_builtin(m, "/metrics");
    unsigned idle_s = (unsigned)((w->cfg->idle_timeout_ms + 999) / 1000);

    /* The logger goes first: options before it would report through MHD's own stderr logger. */
    h->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET, 0,
        NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        h, MHD_OPTION_CONNECTION_LIMIT, w->cfg->worker_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        idle_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY, MHD_OPTION_END);
    if (h->daemon == NULL) {
        snprintf(err, errlen, "libmicrohttpd could not start a daemon");
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    h->io = event_new(w->base, di->epoll_fd, EV_READ | EV_PERSIST, on_daemon_event, h);
    h->tick = evtimer_new(w->base, on_daemon_event, h);
    struct acceptor_opts ao = {
        .base = w->base,
        .listen_fd = w->shared->listen_fd,
        .worker = w->id,
        .nworkers = w->shared->nworkers,
        .metrics = w->shared->metrics,
        .max_connections = (long)w->cfg->worker_connections,
        .log = w->log,
        .take = on_accepted,
        .arg = h,
    };
    h->accept = acceptor_create(&ao);
    if (h->io == NULL || h->tick == NULL || h->accept == NULL || event_add(h->io, NULL) != 0) {
        snprintf(err, errlen, "cannot register the daemon with the event loop");
        httpd_destroy(h);
        return NULL;
    }
    kick(h);
    return h;
}

void httpd_quiesce(struct httpd *h)
{
    /* The listening socket is shared by every worker and closed by the control thread once
     * all have let go of it. */
    acceptor_stop(h->accept);
    kick(h);
}

size_t httpd_in_flight(const struct httpd *h)
{
    return h->in_flight;
}

void httpd_expire_all(struct httpd *h, const char *why)
{
    for (struct request *r = h->waiting; r != NULL; r = r->next)
        fanout_expire(r->fanout, why);
}

void httpd_destroy(struct httpd *h)
{
    if (h == NULL)
        return;
    if (h->daemon != NULL) {
        /* MHD_stop_daemon() aborts on a suspended connection, and a resumed one counts until
         * the daemon has run once more. */
        while (h->waiting != NULL) {
            struct request *r = h->waiting;
            fanout_cancel(r->fanout);
            resume(r, PH_GONE);
        }
        MHD_run(h->daemon);
        MHD_stop_daemon(h->daemon);
    }
    acceptor_destroy(h->accept);
    if (h->io != NULL)
        event_free(h->io);
    if (h->tick != NULL)
        event_free(h->tick);
    free(h);
}
