/* The daemon on the worker's loop and the requests it reads (httpd.h). The defences against
 * hostile clients are guard.c's, streamed answers httpd_stream.c's; what the three share is in
 * httpd_int.h. */
#include "httpd_int.h"

#include "buf.h"
#include "clock.h"
#include "jsonv.h"
#include "log.h"
#include "metrics.h"
#include "reqcheck.h"
#include "reqhead.h"
#include "reqid.h"

#include <errno.h>
#include <event2/event.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* A GET whose Content-Length is larger than this is refused from its head; smaller bodies are
 * read and ignored. (A chunked body is refused at once: reqcheck.h.) */
#define MAX_REQUEST_BODY (64u << 10)
/* Request targets (path and query) longer than this get 414, as nginx's default buffers do. */
#define MAX_TARGET 8192

/* Runs of the daemon in a row while it asks for a 0 timeout. After sending a kept-alive answer
 * libmicrohttpd 0.9.75 takes three runs to be ready for the next request (send, finish, read
 * again); through a 0 timer each extra run cost a loop iteration, so an epoll_wait of the loop's
 * own. Bounded, so that a daemon with work left still lets the loop poll everything else. */
#define DAEMON_RUNS 3

static void run_daemon(struct httpd *h)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    /* A resumed connection is out of the daemon's epoll set until the run that finds its socket
     * drained adds it back; the socket is writable, so that add makes the daemon's descriptor
     * readable at once, which woke the loop (an epoll_wait) only to run the daemon for that
     * one event. One more run takes it now. */
    bool settle = h->resumed;
    h->resumed = false;
    for (int i = 0; i < DAEMON_RUNS + 1 && (ms == 0 || settle); i++) {
        settle &= ms == 0;
        MHD_run(h->daemon);
        if (MHD_get_timeout(h->daemon, &ms) != MHD_YES) {
            evtimer_del(h->tick);
            return;
        }
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(h->tick, &tv); /* 0 included: the daemon has buffered work to do */
}

static void on_daemon_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_daemon(arg);
}

/* Without an internal thread, MHD_resume_connection() only sets a flag: nothing wakes the
 * loop. So after resuming, make the daemon run on the next loop iteration. */
void httpd_wake(struct httpd *h)
{
    event_active(h->tick, EV_TIMEOUT, 0);
}

static void unlink_waiting(struct httpd_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else if (r->h->waiting == r)
        r->h->waiting = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

void httpd__resume(struct httpd_req *r, enum phase phase)
{
    if (r->watch != NULL) {
        r->watch->parked = NULL;
        r->watch = NULL;
    }
    unlink_waiting(r);
    r->phase = phase;
    r->stream_parked = false;
    MHD_resume_connection(r->conn);
    r->h->resumed = true;
    httpd_wake(r->h);
}

/* libmicrohttpd hands the access handler a decoded path and split, decoded arguments; routing
 * on raw segments and reading a query strictly need the target as sent, which only this
 * callback sees. Its result becomes the request's *req_cls. NULL (out of memory) makes
 * request_new() start without one. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct httpd_req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->h = cls;
    r->conn = conn;
    r->t0 = clock_us();
    if ((r->target = strdup(uri)) == NULL) {
        free(r);
        return NULL;
    }
    struct conn_watch *cw = httpd__guard_watch_of(conn);
    if (cw != NULL)
        cw->req = r;
    return r;
}

static void request_free(struct httpd_req *r)
{
    if (r->held > 0 && r->h->env.unsent != NULL)
        atomic_fetch_sub_explicit(r->h->env.unsent, r->held, memory_order_relaxed);
    buf_finish(&r->stream);
    free(r->target);
    free(r);
}

static struct httpd_req *request_new(struct httpd *h, struct httpd_req *r,
                                     struct MHD_Connection *conn, const char *url,
                                     const char *method)
{
    if (r == NULL && (r = calloc(1, sizeof *r)) == NULL)
        return NULL;
    r->begun = true;
    r->h = h;
    r->conn = conn;
    r->t0 = clock_us();
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", url);
    r->head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (reqid_valid(rid))
        snprintf(r->rid, sizeof r->rid, "%s", rid);
    else
        reqid_generate(&h->rid_state, r->rid);
    h->in_flight++;
    metrics_gauge_add(&h->env.metrics->requests_in_flight, 1);
    h->env.hooks->begin(h->env.arg, r, url);
    return r;
}

/* gatherd's headers on every answer, then the extra ones; an extra Cache-Control replaces the
 * default. */
void httpd__add_headers(struct httpd_req *r, struct MHD_Response *resp, const char *ctype,
                        const struct httpd_header *extra, size_t nextra)
{
    bool cache_control = false;
    for (size_t i = 0; i < nextra; i++)
        cache_control |= strcasecmp(extra[i].name, MHD_HTTP_HEADER_CACHE_CONTROL) == 0;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Request-Id", r->rid);
    if (!cache_control)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (size_t i = 0; i < nextra; i++)
        MHD_add_response_header(resp, extra[i].name, extra[i].value);
    if (r->close_after || atomic_load_explicit(r->h->env.closing, memory_order_relaxed))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

/* Builds the MHD response for an answer, with gatherd's headers. NULL when out of memory (an
 * owned body is freed then). */
static struct MHD_Response *make_response(struct httpd_req *r, const char *ctype, char *body,
                                          size_t len, enum httpd_mem mem,
                                          const struct httpd_header *extra, size_t nextra)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, mem == HTTPD_MEM_OWNED ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        if (mem == HTTPD_MEM_OWNED)
            free(body);
        return NULL;
    }
    httpd__add_headers(r, resp, ctype, extra, nextra);
    return resp;
}

enum MHD_Result httpd__queue(struct httpd_req *r, int status, struct MHD_Response *resp, size_t len)
{
    httpd__guard_send_timeout(r, true);
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->bytes_out = r->head ? 0 : len;
    r->phase = PH_ANSWERED;
    return ok;
}

/* What the serve hook returned with, as the access handler's answer to libmicrohttpd. */
enum MHD_Result httpd__after_serve(struct httpd_req *r)
{
    switch (r->phase) {
    case PH_ANSWERED:
    case PH_WAITING:
        return MHD_YES;
    case PH_NEW: /* the hooks gave no answer: a bug, or out of memory */
    default:
        return MHD_NO;
    }
}

/* Queues resp (NULL: out of memory) as r's answer, now or, for a parked request, once the
 * daemon runs the connection again. */
static int deliver(struct httpd_req *r, int status, struct MHD_Response *resp, size_t len)
{
    if (r->phase == PH_NEW) {
        if (resp == NULL)
            return -ENOMEM;
        return httpd__queue(r, status, resp, len) == MHD_YES ? 0 : -ENOMEM;
    }
    /* Parked: queued from on_request() once the daemon runs the connection again. */
    r->ready = resp;
    r->status = status;
    r->bytes_out = len;
    httpd__resume(r, PH_READY);
    return resp != NULL ? 0 : -ENOMEM;
}

int httpd_respond(struct httpd_req *r, int status, const char *ctype, char *body, size_t len,
                  enum httpd_mem mem, const struct httpd_header *extra, size_t nextra)
{
    if (r->phase != PH_NEW && r->phase != PH_WAITING) {
        if (mem == HTTPD_MEM_OWNED)
            free(body);
        return -EALREADY;
    }
    struct MHD_Response *resp = make_response(r, ctype, body, len, mem, extra, nextra);
    /* A body handed over is held until its client takes it; a borrowed one (a cache entry) is
     * bounded where it lives. */
    if (resp != NULL && mem == HTTPD_MEM_OWNED && r->h->env.unsent != NULL) {
        r->held += len;
        atomic_fetch_add_explicit(r->h->env.unsent, len, memory_order_relaxed);
    }
    return deliver(r, status, resp, len);
}

int httpd_respond_borrowed(struct httpd_req *r, int status, const char *ctype, const char *body,
                           size_t len, void (*release)(void *arg), void *arg,
                           const struct httpd_header *extra, size_t nextra)
{
    if (r->phase != PH_NEW && r->phase != PH_WAITING) {
        release(arg);
        return -EALREADY;
    }
    /* libmicrohttpd only reads the buffer; the release hook runs when the response is
     * destroyed, after its last byte went out. */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)body, release, arg);
    if (resp == NULL)
        release(arg);
    else
        httpd__add_headers(r, resp, ctype, extra, nextra);
    return deliver(r, status, resp, len);
}

int httpd_respond_error(struct httpd_req *r, int status, const char *code, const char *message,
                        const struct httpd_header *extra, size_t nextra)
{
    struct buf b = BUF_INIT;
    if (buf_printf(&b, "{\"error\":\"%s\",\"message\":", code) < 0 ||
        jsonv_append_string(&b, message, strlen(message)) < 0 || buf_appendc(&b, '}') < 0) {
        buf_finish(&b);
        if (r->phase == PH_WAITING) { /* resumed all the same: it must not stay parked */
            r->ready = NULL;
            httpd__resume(r, PH_READY);
        }
        return -ENOMEM;
    }
    size_t len;
    char *body = buf_steal(&b, &len);
    return httpd_respond(r, status, "application/json", body, len, HTTPD_MEM_OWNED, extra, nextra);
}

int httpd__suspend(struct httpd_req *r)
{
    struct conn_watch *cw = httpd__guard_watch_of(r->conn);
    if (cw != NULL && cw->gone)
        return -EPIPE;
    struct httpd *h = r->h;
    MHD_suspend_connection(r->conn);
    if (cw != NULL) {
        cw->parked = r;
        r->watch = cw;
    }
    r->next = h->waiting;
    if (h->waiting != NULL)
        h->waiting->prev = r;
    h->waiting = r;
    return 0;
}

int httpd_park(struct httpd_req *r)
{
    int rc = httpd__suspend(r);
    r->phase = rc == 0 ? PH_WAITING : PH_GONE; /* gone: ends as 499 when the daemon closes */
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct httpd *h = cls;
    struct httpd_req *r = *req_cls;
    (void)upload_data;

    if (r == NULL || !r->begun) {
        httpd__guard_head_in(conn);
        if ((r = request_new(h, r, conn, url, method)) == NULL)
            return MHD_NO;
        *req_cls = r;
        if (httpd__guard_head_too_large(r))
            return MHD_NO;
        struct reqcheck_verdict v;
        int rc = reqhead_check(conn, method, url, version, r->target, &v);
        if (rc == -ENOMEM)
            return MHD_NO;
        if (rc < 0) {
            /* The connection is closed after the answer: what follows this head is never
             * read as a request, however a proxy in front framed it. */
            r->close_after = true;
            httpd__guard_reject(h, METRICS_REJECT_FRAMING);
            return httpd__guard_refuse(
                r, v.status, v.status == 501 ? "not_implemented" : "bad_request", v.message);
        }
        if (reqhead_target_len(conn, url) > MAX_TARGET)
            return httpd__guard_refuse(r, 414, "uri_too_long", "request target too long");
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > MAX_REQUEST_BODY)
            return httpd__guard_refuse(r, 413, "payload_too_large", "request body too large");
        return MHD_YES;
    }
    switch (r->phase) {
    case PH_NEW:
        if (*upload_data_size > 0) { /* at most MAX_REQUEST_BODY, as Content-Length said */
            *upload_data_size = 0;
            return MHD_YES;
        }
        r->served = true;
        h->env.hooks->serve(h->env.arg, r);
        return httpd__after_serve(r);
    case PH_READY: {
        struct MHD_Response *resp = r->ready;
        r->ready = NULL;
        if (resp == NULL) { /* out of memory building it */
            r->phase = PH_NEW;
            return httpd__guard_refuse(r, 500, "internal", "out of memory");
        }
        return httpd__queue(r, r->status, resp, r->bytes_out);
    }
    case PH_ANSWERED:
        *upload_data_size = 0; /* the rest of a refused body: discard */
        return MHD_YES;
    case PH_GONE:
    case PH_WAITING:
    default:
        return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct httpd *h = cls;
    struct httpd_req *r = *req_cls;
    (void)conn;
    if (r == NULL)
        return;
    *req_cls = NULL;
    struct conn_watch *cw = httpd__guard_watch_of(conn);
    if (cw != NULL) {
        cw->busy = false;
        cw->req = NULL;
    }
    if (!r->begun) { /* refused by libmicrohttpd, or timed out, before the handler saw it */
        httpd__guard_refused(h, r, cw != NULL && cw->timed_out);
        request_free(r);
        return;
    }
    if (cw != NULL && cw->send_timeout)
        httpd__guard_send_timeout(r, false);

    if (r->raw_answered) {
        r->bytes_out = 0;
    } else if (r->phase != PH_ANSWERED || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* nginx's convention: 499 for a client that closed before its answer was sent. */
        if (r->phase != PH_ANSWERED || toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ||
            toe == MHD_REQUEST_TERMINATED_READ_ERROR)
            r->status = 499;
        r->bytes_out = 0;
    }
    struct httpd_outcome o = {r->status, r->bytes_out, clock_us() - r->t0, r->phase == PH_GONE};
    unlink_waiting(r);
    if (r->watch != NULL)
        r->watch->parked = NULL;
    if (r->ready != NULL)
        MHD_destroy_response(r->ready);
    h->in_flight--;
    metrics_gauge_add(&h->env.metrics->requests_in_flight, -1);
    h->env.hooks->done(h->env.arg, r, &o);
    request_free(r);
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
        metrics_gauge_add(&h->env.metrics->http_connections_open, 1);
        metrics_add(&h->env.metrics->http_connections_opened, 1);
        if ((cw = httpd__guard_watch_open(h, conn)) != NULL)
            *socket_ctx = cw;
    } else {
        metrics_gauge_add(&h->env.metrics->http_connections_open, -1);
        if (cw != NULL) {
            httpd__guard_watch_close(cw);
            *socket_ctx = NULL;
        }
    }
}

void httpd_add_connection(struct httpd *h, int fd, const struct sockaddr *addr, socklen_t len)
{
    MHD_add_connection(h->daemon, fd, addr, len);
    httpd_wake(h);
}

/* libmicrohttpd reports both what clients did wrong (malformed requests: noise an attacker can
 * generate at will, so debug) and what went wrong in the server (accept failures such as
 * EMFILE, the connection limit, epoll errors: warnings an operator must see). Its messages
 * are free text; these are the server-side ones in 0.9.75. */
static enum loglevel mhd_level(const char *fmt)
{
    /* A malformed Content-Length, or a client gone while its answer was sent: one per bad
     * request, counted in gatherd_http_rejected_total instead. */
    static const char *const client_side[] = {"Failed to parse", "Failed to send", "Failed to push",
                                              NULL};
    static const char *const server_side[] = {"accept", "limit", "epoll", "Failed to", NULL};
    for (const char *const *w = client_side; *w != NULL; w++)
        if (strstr(fmt, *w) != NULL)
            return LOGLEVEL_DEBUG;
    for (const char *const *w = server_side; *w != NULL; w++)
        if (strstr(fmt, *w) != NULL)
            return LOGLEVEL_WARN;
    return LOGLEVEL_DEBUG;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct httpd *h = cls;
    char msg[512];
    enum loglevel level = mhd_level(fmt);
    if (!log_enabled(h->env.log, level))
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    struct buf f = BUF_INIT;
    if (buf_appends(&f, "\"source\":\"libmicrohttpd\",\"detail\":") == 0 &&
        jsonv_append_string(&f, msg, n) == 0)
        log_event(h->env.log, level, "http", f.data);
    buf_finish(&f);
}

struct httpd *httpd_create(const struct httpd_env *env, char *err, size_t errlen)
{
    struct httpd *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->env = *env;
    h->rid_state = env->rid_seed;

    /* The logger goes first: options before it would report through MHD's own stderr logger. */
    h->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET, 0,
        NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_CONNECTION_LIMIT,
        env->connection_limit, MHD_OPTION_CONNECTION_TIMEOUT, env->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTPD__CONNECTION_MEMORY, MHD_OPTION_END);
    if (h->daemon == NULL) {
        snprintf(err, errlen, "libmicrohttpd could not start a daemon");
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    h->io = event_new(env->base, di->epoll_fd, EV_READ | EV_PERSIST, on_daemon_event, h);
    h->tick = evtimer_new(env->base, on_daemon_event, h);
    if (h->io == NULL || h->tick == NULL || event_add(h->io, NULL) != 0) {
        snprintf(err, errlen, "cannot register the daemon with the event loop");
        httpd_destroy(h);
        return NULL;
    }
    httpd_wake(h);
    return h;
}

size_t httpd_unsent_bytes(const struct httpd_req *r)
{
    return r->h->env.unsent != NULL ? atomic_load_explicit(r->h->env.unsent, memory_order_relaxed)
                                    : 0;
}

size_t httpd_in_flight(const struct httpd *h)
{
    return h->in_flight;
}

void httpd_destroy(struct httpd *h)
{
    if (h == NULL)
        return;
    if (h->daemon != NULL) {
        /* MHD_stop_daemon() aborts on a suspended connection, and a resumed one counts until
         * the daemon has run once more. */
        while (h->waiting != NULL) {
            struct httpd_req *r = h->waiting;
            h->env.hooks->gone(h->env.arg, r);
            httpd__resume(r, PH_GONE);
        }
        MHD_run(h->daemon);
        MHD_stop_daemon(h->daemon);
    }
    if (h->io != NULL)
        event_free(h->io);
    if (h->tick != NULL)
        event_free(h->tick);
    free(h);
}

void httpd_req_set_ctx(struct httpd_req *r, void *ctx)
{
    r->ctx = ctx;
}

void *httpd_req_ctx(const struct httpd_req *r)
{
    return r->ctx;
}

const char *httpd_req_method(const struct httpd_req *r)
{
    return r->method;
}

bool httpd_req_is_head(const struct httpd_req *r)
{
    return r->head;
}

const char *httpd_req_path(const struct httpd_req *r)
{
    return r->path;
}

const char *httpd_req_id(const struct httpd_req *r)
{
    return r->rid;
}

const char *httpd_req_header(const struct httpd_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *httpd_req_target(const struct httpd_req *r)
{
    return r->target;
}

void httpd_req_client(struct httpd_req *r, const struct netacl *trusted, char *out, size_t outlen)
{
    reqhead_client(r->conn, trusted, out, outlen);
}
