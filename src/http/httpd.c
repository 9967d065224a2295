#include "httpd.h"

#include "buf.h"
#include "clock.h"
#include "jsonv.h"
#include "log.h"
#include "metrics.h"
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
    PH_NEW,      /* headers seen, not yet served */
    PH_WAITING,  /* parked: suspended until the hooks answer */
    PH_READY,    /* answered while parked; resumed, queued on the next handler call */
    PH_ANSWERED, /* a response is queued */
    PH_GONE,     /* the client left while parked, or before it could be parked */
};

struct httpd {
    struct httpd_env env;
    struct MHD_Daemon *daemon;
    struct event *io;   /* the daemon's epoll descriptor, level-triggered */
    struct event *tick; /* the daemon's own timeout; activated by hand to make it run */
    size_t in_flight;
    struct httpd_req *waiting; /* parked requests, for shutdown */
    uint64_t rid_state;
};

/* One per client connection, registered with the loop for the connection's whole life:
 * registering only while a request is parked cost an epoll_ctl ADD and DEL and an event
 * allocation per request. Created and freed in on_connection(). */
struct conn_watch {
    struct event *ev;
    struct httpd_req *parked; /* the request parked on this connection, if any */
    bool gone;                /* a hang-up was seen while nothing was parked */
};

/* An answer given while parked, sent once the daemon runs the connection again. */
struct pending {
    int status;
    const char *ctype;
    char *body;
    size_t len;
    enum httpd_mem mem;
    struct MHD_Response *resp; /* built at once, so that extra headers need not be kept */
};

/* Everything one request owns in httpd; freed in on_completed() only. */
struct httpd_req {
    struct httpd *h;
    struct MHD_Connection *conn;
    void *ctx; /* the hooks' */
    enum phase phase;
    bool head;
    bool body_too_large;
    bool close_after; /* the connection cannot be trusted for another request */
    bool served;      /* the serve hook ran */
    bool begun;       /* the begin hook ran: the request is the hooks' too */
    char *target;     /* the request target as sent: path and query, not decoded */
    bool streaming;   /* the answer is a stream of pieces (httpd_stream_begin()) */
    bool stream_ended;
    bool stream_parked; /* suspended in the content reader until a piece comes */
    struct buf stream;  /* pieces not yet handed to libmicrohttpd */
    size_t stream_off;  /* how much of them was */
    int status;
    size_t body_seen;
    size_t bytes_out;
    struct conn_watch *watch;   /* its connection's, while parked */
    struct MHD_Response *ready; /* PH_READY: the answer to queue */
    uint64_t t0;
    struct httpd_req *prev, *next; /* in h->waiting while PH_WAITING */
    char method[8];
    char path[201];
    char rid[REQID_MAX + 1];
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

static void resume(struct httpd_req *r, enum phase phase)
{
    if (r->watch != NULL) {
        r->watch->parked = NULL;
        r->watch = NULL;
    }
    unlink_waiting(r);
    r->phase = phase;
    r->stream_parked = false;
    MHD_resume_connection(r->conn);
    httpd_wake(r->h);
}

/* The connection's socket is watched edge-triggered for hang-up (EV_CLOSED: a FIN, whether
 * the client closed or half-closed) and for EV_WRITE, which is how libevent delivers a reset
 * (EPOLLHUP|EPOLLERR) to an event that does not ask for EV_READ. Not asking for EV_READ keeps
 * a request's own bytes, and pipelined ones, from waking us: the daemon reads those.
 *
 * While a request is parked, a hang-up means the client left (nginx treats a half-close the
 * same way), so its work is stopped at once; a bare EV_WRITE is either a reset or the send
 * buffer draining after an earlier answer, and a peek tells which. Otherwise the daemon sees a
 * reset itself, and a half-close is remembered so that a request parked after it (the edge
 * does not come again) counts as abandoned. */
static void on_client_event(evutil_socket_t fd, short what, void *arg)
{
    struct conn_watch *cw = arg;
    struct httpd_req *r = cw->parked;
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
    struct httpd *h = r->h;
    h->env.hooks->gone(h->env.arg, r);
    resume(r, PH_GONE);
}

/* libmicrohttpd hands the access handler a decoded path and split, decoded arguments; routing
 * on raw segments and reading a query strictly need the target as sent, which only this
 * callback sees. Its result becomes the request's *req_cls. NULL (out of memory) makes
 * request_new() start without one. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct httpd_req *r = calloc(1, sizeof *r);
    (void)conn;
    if (r == NULL)
        return NULL;
    r->h = cls;
    if ((r->target = strdup(uri)) == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

static void request_free(struct httpd_req *r)
{
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

/* Builds the MHD response for an answer, with gatherd's headers. NULL when out of memory (an
 * owned body is freed then). */
/* gatherd's headers on every answer, then the extra ones; an extra Cache-Control replaces the
 * default. */
static void add_headers(struct httpd_req *r, struct MHD_Response *resp, const char *ctype,
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
    add_headers(r, resp, ctype, extra, nextra);
    return resp;
}

static enum MHD_Result queue(struct httpd_req *r, int status, struct MHD_Response *resp, size_t len)
{
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->bytes_out = r->head ? 0 : len;
    r->phase = PH_ANSWERED;
    return ok;
}

/* What the serve hook returned with, as the access handler's answer to libmicrohttpd. */
static enum MHD_Result after_serve(struct httpd_req *r)
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
        return queue(r, status, resp, len) == MHD_YES ? 0 : -ENOMEM;
    }
    /* Parked: queued from on_request() once the daemon runs the connection again. */
    r->ready = resp;
    r->status = status;
    r->bytes_out = len;
    resume(r, PH_READY);
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
    return deliver(r, status, make_response(r, ctype, body, len, mem, extra, nextra), len);
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
        add_headers(r, resp, ctype, extra, nextra);
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
            resume(r, PH_READY);
        }
        return -ENOMEM;
    }
    size_t len;
    char *body = buf_steal(&b, &len);
    return httpd_respond(r, status, "application/json", body, len, HTTPD_MEM_OWNED, extra, nextra);
}

/* Parks a stream that has nothing to send, or wakes it; the same watch and list as a parked
 * request, so a client that leaves meanwhile is noticed and shutdown resumes it. -EPIPE, and
 * nothing parked, when the client hung up while the stream was being written: the watch saw
 * that edge with nothing parked, and it does not come again. */
static int stream_park(struct httpd_req *r)
{
    struct httpd *h = r->h;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_watch *cw = ci != NULL ? ci->socket_context : NULL;
    if (cw != NULL && cw->gone)
        return -EPIPE;
    MHD_suspend_connection(r->conn);
    r->stream_parked = true;
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

static void stream_wake(struct httpd_req *r)
{
    if (!r->stream_parked)
        return;
    r->stream_parked = false;
    resume(r, r->phase);
}

/* libmicrohttpd asks for the next bytes of a stream: what is queued, the end, or nothing yet,
 * in which case the connection is suspended until httpd_stream_write() or _end(): returning 0
 * alone would have it ask again on every run of the daemon. */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct httpd_req *r = cls;
    (void)pos;
    if (r->phase == PH_GONE)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t avail = r->stream.len - r->stream_off;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(out, r->stream.data + r->stream_off, n);
        r->stream_off += n;
        if (r->stream_off == r->stream.len) /* all handed over: reuse the buffer */
            r->stream.len = r->stream_off = 0;
        return (ssize_t)n;
    }
    if (r->stream_ended)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (stream_park(r) < 0) { /* it left as a parked request would have: stop its work */
        r->phase = PH_GONE;
        r->h->env.hooks->gone(r->h->env.arg, r);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    return 0;
}

int httpd_stream_begin(struct httpd_req *r, int status, const char *ctype,
                       const struct httpd_header *extra, size_t nextra)
{
    if (r->phase != PH_NEW)
        return -EALREADY;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, r, NULL);
    if (resp == NULL)
        return -ENOMEM;
    add_headers(r, resp, ctype, extra, nextra);
    r->streaming = true;
    return queue(r, status, resp, 0) == MHD_YES ? 0 : -ENOMEM;
}

int httpd_stream_write(struct httpd_req *r, const char *data, size_t len)
{
    if (!r->streaming || r->stream_ended)
        return -EALREADY;
    if (r->phase == PH_GONE)
        return -EPIPE;
    if (buf_append(&r->stream, data, len) < 0)
        return -ENOMEM;
    r->bytes_out += len;
    stream_wake(r);
    return 0;
}

int httpd_stream_end(struct httpd_req *r)
{
    if (!r->streaming || r->stream_ended)
        return -EALREADY;
    r->stream_ended = true;
    stream_wake(r);
    return 0;
}

int httpd_park(struct httpd_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn_watch *cw = ci != NULL ? ci->socket_context : NULL;
    if (cw != NULL && cw->gone) {
        r->phase = PH_GONE; /* ends as 499 when the daemon closes */
        return -EPIPE;
    }
    struct httpd *h = r->h;
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
    return 0;
}

static enum MHD_Result refuse(struct httpd_req *r, int status, const char *code,
                              const char *message)
{
    httpd_respond_error(r, status, code, message, NULL, 0);
    return after_serve(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct httpd *h = cls;
    struct httpd_req *r = *req_cls;
    (void)upload_data;

    if (r == NULL || !r->begun) {
        if ((r = request_new(h, r, conn, url, method)) == NULL)
            return MHD_NO;
        *req_cls = r;
        const char *bad = reqhead_framing_problem(conn, version);
        if (bad != NULL) {
            r->close_after = true;
            return refuse(r, 400, "bad_request", bad);
        }
        if (reqhead_target_len(conn, url) > MAX_TARGET)
            return refuse(r, 414, "uri_too_long", "request target too long");
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > MAX_REQUEST_BODY)
            return refuse(r, 413, "payload_too_large", "request body too large");
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
            return refuse(r, 413, "payload_too_large", "request body too large");
        r->served = true;
        h->env.hooks->serve(h->env.arg, r);
        return after_serve(r);
    case PH_READY: {
        struct MHD_Response *resp = r->ready;
        r->ready = NULL;
        if (resp == NULL) { /* out of memory building it */
            r->phase = PH_NEW;
            return refuse(r, 500, "internal", "out of memory");
        }
        return queue(r, r->status, resp, r->bytes_out);
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
    if (!r->begun) { /* refused by libmicrohttpd before the handler saw it */
        request_free(r);
        return;
    }

    if (r->phase != PH_ANSWERED || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) {
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
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci == NULL || (cw = calloc(1, sizeof *cw)) == NULL)
            return;
        cw->ev = event_new(h->env.base, ci->connect_fd, EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST,
                           on_client_event, cw);
        if (cw->ev == NULL || event_add(cw->ev, NULL) != 0) {
            if (cw->ev != NULL)
                event_free(cw->ev);
            free(cw);
            return;
        }
        *socket_ctx = cw;
    } else {
        metrics_gauge_add(&h->env.metrics->http_connections_open, -1);
        if (cw != NULL) {
            if (cw->parked != NULL)
                cw->parked->watch = NULL;
            event_free(cw->ev);
            free(cw);
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
    static const char *const server_side[] = {"accept", "limit", "epoll", "Failed to", NULL};
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
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY, MHD_OPTION_END);
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
            resume(r, PH_GONE);
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
