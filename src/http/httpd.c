#include "httpd.h"

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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* A GET whose Content-Length is larger than this is refused from its head; smaller bodies are
 * read and ignored. (A chunked body is refused at once: reqcheck.h.) */
#define MAX_REQUEST_BODY (64u << 10)
/* Request targets (path and query) longer than this get 414, as nginx's default buffers do. */
#define MAX_TARGET 8192
/* libmicrohttpd's per-connection memory: request line, headers and the reply's headers. MHD
 * touches most of it, so it is most of a connection's footprint: 32 KiB (the default) measured
 * 94 MB peak RSS with 1,000 requests in flight, 16 KiB 77 MB. Headers past it get 431. */
#define CONNECTION_MEMORY (16u << 10)
/* What an answer's headers take of that memory at most (status line, Date, gatherd's headers
 * with a 128-byte request id, an extra one or two), and what libmicrohttpd keeps per header,
 * argument and cookie (its record, aligned), over-estimated: a head that leaves less than the
 * former could be read but not answered, and libmicrohttpd would close it without a word. */
#define ANSWER_ROOM 1024u
#define VALUE_RECORD 80u

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
    bool resumed;       /* a connection was resumed since the daemon last ran */
    size_t in_flight;
    struct httpd_req *waiting; /* parked requests, for shutdown */
    uint64_t rid_state;
};

/* One per client connection, registered with the loop for the connection's whole life:
 * registering only while a request is parked cost an epoll_ctl ADD and DEL and an event
 * allocation per request. Created and freed in on_connection(). */
struct conn_watch {
    struct httpd *h;
    struct MHD_Connection *conn;
    int fd;
    struct event *ev;
    struct event *head;       /* the deadline of a head in progress (header_timeout_ms) */
    struct httpd_req *parked; /* the request parked on this connection, if any */
    struct httpd_req *req;    /* the request whose request line was read, until it is done */
    bool gone;                /* a hang-up was seen while nothing was parked */
    bool busy;                /* a request's head is in and it is not yet done */
    bool head_armed;          /* bytes came while idle: a head is in progress */
    bool timed_out;           /* its head was answered 408 */
    uint64_t heads;           /* heads completed on it so far */
    uint64_t armed_heads;     /* heads, when the deadline was armed */
    uint64_t armed_us;        /* when it was */
    bool send_timeout;        /* its daemon timeout is send_timeout_s, not the idle one */
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
    size_t bytes_out;
    struct conn_watch *watch;   /* its connection's, while parked */
    struct MHD_Response *ready; /* PH_READY: the answer to queue */
    uint64_t t0;
    size_t held;                   /* counted in env.unsent until it is done */
    bool raw_answered;             /* answered by answer_raw(): status is what was sent */
    struct httpd_req *prev, *next; /* in h->waiting while PH_WAITING */
    char method[8];
    char path[201];
    char rid[REQID_MAX + 1];
};

static struct conn_watch *watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

static void reject(struct httpd *h, enum metrics_reject why)
{
    metrics_add(&h->env.metrics->http_rejected[why], 1);
}

/* Writes a whole answer straight to the socket and shuts it down, so that libmicrohttpd (which
 * has no call to close a connection) closes it when it next reads. Only for the two answers
 * libmicrohttpd 0.9.75 cannot give: to a head that never completes (it queues an answer only
 * once the head is in) and to a head that filled the connection's memory (no room is left to
 * build an answer). Both come before any byte of an answer to the request was queued, and
 * libmicrohttpd reads a head only once the previous answer on the connection was handed to the
 * kernel, so these bytes follow it in order; the send buffer takes them in one call unless the
 * client stopped reading that earlier answer too, and then the connection closes without. */
static void answer_raw(int fd, int status, const char *code, const char *message, const char *rid)
{
    char body[256], out[768];
    int blen = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}", code, message);
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                     "%s%s%sCache-Control: no-store\r\nContent-Length: %d\r\n\r\n%s",
                     status, MHD_get_reason_phrase_for((unsigned)status),
                     rid ? "X-Request-Id: " : "", rid ? rid : "", rid ? "\r\n" : "", blen, body);
    if (n > 0 && (size_t)n < sizeof out)
        (void)send(fd, out, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(fd, SHUT_RDWR);
}

/* Whether any byte came on the connection since `since_us`. The bytes that armed a deadline
 * may have been a whole request the daemon read and answered before the watch saw them (both
 * wake in the same loop iteration, in either order): then the connection is merely idle, and
 * the idle timeout is what applies. Not knowable on a unix socket: taken as no. */
static bool bytes_since(int fd, uint64_t since_us)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1)
        return false;
    uint64_t quiet_us = (uint64_t)ti.tcpi_last_data_recv * 1000;
    return quiet_us + 50000 < clock_us() - since_us; /* 50 ms: the kernel counts in jiffies */
}

/* A head still incomplete header_timeout_ms after its first byte (slowloris: the idle timeout
 * restarts on every byte). Nothing is answered when libmicrohttpd has an answer of its own
 * under way (it refused the head), when a head was completed since the deadline was armed (the
 * bytes were that request's), or when no request line was read and no byte came since (an
 * idle connection: the idle timeout closes it). */
static void on_head_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn_watch *cw = arg;
    (void)fd;
    (void)what;
    cw->head_armed = false;
    if (cw->busy || cw->heads != cw->armed_heads ||
        MHD_get_connection_info(cw->conn, MHD_CONNECTION_INFO_HTTP_STATUS) != NULL)
        return;
    if (cw->req == NULL && !bytes_since(cw->fd, cw->armed_us))
        return;
    cw->timed_out = true;
    answer_raw(cw->fd, 408, "request_timeout", "the request head did not arrive in time", NULL);
    if (cw->req == NULL) /* no request line: nothing else will count it */
        reject(cw->h, METRICS_REJECT_HEADER_TIMEOUT);
    httpd_wake(cw->h);
}

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
    r->h->resumed = true;
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
    /* The first bytes of a head: its deadline starts. Bytes that come while a request is in
     * hand are the next one's, read ahead; its deadline starts when more come after. */
    if ((what & EV_READ) && !(what & EV_CLOSED) && !cw->busy && !cw->head_armed) {
        struct timeval tv = {cw->h->env.header_timeout_ms / 1000,
                             (cw->h->env.header_timeout_ms % 1000) * 1000};
        cw->head_armed = evtimer_add(cw->head, &tv) == 0;
        cw->armed_heads = cw->heads;
        cw->armed_us = clock_us();
    }
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
    if (r == NULL)
        return NULL;
    r->h = cls;
    r->conn = conn;
    r->t0 = clock_us();
    if ((r->target = strdup(uri)) == NULL) {
        free(r);
        return NULL;
    }
    struct conn_watch *cw = watch_of(conn);
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

/* While an answer goes out, the daemon's timeout for the connection is send_timeout_s: it
 * counts from the last byte the client took (libmicrohttpd 0.9.75 times a connection out on no
 * progress, whatever it is doing), as nginx's send_timeout does. */
static void set_send_timeout(struct httpd_req *r, bool sending)
{
    struct conn_watch *cw = watch_of(r->conn);
    const struct httpd_env *env = &r->h->env;
    if (cw == NULL || env->send_timeout_s == env->idle_timeout_s || cw->send_timeout == sending)
        return;
    cw->send_timeout = sending;
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              sending ? env->send_timeout_s : env->idle_timeout_s);
}

static enum MHD_Result queue(struct httpd_req *r, int status, struct MHD_Response *resp, size_t len)
{
    set_send_timeout(r, true);
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
    struct conn_watch *cw = watch_of(r->conn);
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
    struct conn_watch *cw = watch_of(r->conn);
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

static enum MHD_Result count_cookie(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    (void)key;
    *(size_t *)cls += value != NULL ? strlen(value) + 1 : 0;
    return MHD_YES;
}

/* Whether the head left libmicrohttpd the memory to build an answer's headers: the head stays
 * in the connection's buffer while the request lasts, beside a record per header, argument
 * and cookie, and a copy of the Cookie header. A head a little under the buffer's size was
 * read whole and then closed unanswered. */
static bool head_leaves_room(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t cookies = 0;
    int n = MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, NULL, NULL);
    int nc = MHD_get_connection_values(conn, MHD_COOKIE_KIND, count_cookie, &cookies);
    size_t used = (ci != NULL ? ci->header_size : 0) + (size_t)(n + nc) * VALUE_RECORD + cookies;
    return used + ANSWER_ROOM <= CONNECTION_MEMORY;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct httpd *h = cls;
    struct httpd_req *r = *req_cls;
    (void)upload_data;

    if (r == NULL || !r->begun) {
        struct conn_watch *cw = watch_of(conn);
        if (cw != NULL) {
            cw->busy = true;
            cw->heads++;
            if (cw->head_armed)
                evtimer_del(cw->head);
            cw->head_armed = false;
        }
        if ((r = request_new(h, r, conn, url, method)) == NULL)
            return MHD_NO;
        *req_cls = r;
        if (!head_leaves_room(conn)) {
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            if (ci != NULL)
                answer_raw(ci->connect_fd, 431, "header_too_large", "the request head is too large",
                           r->rid);
            r->raw_answered = true;
            r->status = 431;
            reject(h, METRICS_REJECT_HEADER_TOO_LARGE);
            return MHD_NO;
        }
        struct reqcheck_verdict v;
        int rc = reqhead_check(conn, method, url, version, r->target, &v);
        if (rc == -ENOMEM)
            return MHD_NO;
        if (rc < 0) {
            /* The connection is closed after the answer: what follows this head is never
             * read as a request, however a proxy in front framed it. */
            r->close_after = true;
            reject(h, METRICS_REJECT_FRAMING);
            return refuse(r, v.status, v.status == 501 ? "not_implemented" : "bad_request",
                          v.message);
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
        if (*upload_data_size > 0) { /* at most MAX_REQUEST_BODY, as Content-Length said */
            *upload_data_size = 0;
            return MHD_YES;
        }
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

/* A request libmicrohttpd refused after its request line, or whose head timed out: counted by
 * why, and handed to the refused hook for its access line. */
static void refused(struct httpd *h, struct httpd_req *r, bool timed_out)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_HTTP_STATUS);
    enum metrics_reject why = METRICS_REJECT_CLOSED;
    int status = 0;
    if (timed_out) {
        why = METRICS_REJECT_HEADER_TIMEOUT;
        status = 408;
    } else if (ci != NULL) {
        status = (int)ci->http_status;
        why = status == 413   ? METRICS_REJECT_PAYLOAD_TOO_LARGE
              : status == 414 ? METRICS_REJECT_URI_TOO_LONG
              : status == 431 ? METRICS_REJECT_HEADER_TOO_LARGE
              : status == 505 ? METRICS_REJECT_VERSION
                              : METRICS_REJECT_BAD_REQUEST;
    }
    reject(h, why);
    /* Without an answer this is most often a client that left in the middle of its head:
     * counted, but it has no access line, like any request the client abandoned unanswered. */
    if (why == METRICS_REJECT_CLOSED)
        return;
    snprintf(r->method, sizeof r->method, "-");
    snprintf(r->path, sizeof r->path, "%.*s", (int)strcspn(r->target ? r->target : "", "?"),
             r->target ? r->target : "");
    const char *rid = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (reqid_valid(rid))
        snprintf(r->rid, sizeof r->rid, "%s", rid);
    else
        reqid_generate(&h->rid_state, r->rid);
    struct httpd_outcome o = {status, 0, clock_us() - r->t0, false};
    if (h->env.hooks->refused != NULL)
        h->env.hooks->refused(h->env.arg, r, &o);
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
    struct conn_watch *cw = watch_of(conn);
    if (cw != NULL) {
        cw->busy = false;
        cw->req = NULL;
    }
    if (!r->begun) { /* refused by libmicrohttpd, or timed out, before the handler saw it */
        refused(h, r, cw != NULL && cw->timed_out);
        request_free(r);
        return;
    }
    if (cw != NULL && cw->send_timeout)
        set_send_timeout(r, false);

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

static void watch_free(struct conn_watch *cw)
{
    if (cw->ev != NULL)
        event_free(cw->ev);
    if (cw->head != NULL)
        event_free(cw->head);
    free(cw);
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
        cw->h = h;
        cw->conn = conn;
        cw->fd = ci->connect_fd;
        cw->ev =
            event_new(h->env.base, ci->connect_fd,
                      EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, on_client_event, cw);
        cw->head = evtimer_new(h->env.base, on_head_timeout, cw);
        if (cw->ev == NULL || cw->head == NULL || event_add(cw->ev, NULL) != 0) {
            watch_free(cw);
            return;
        }
        *socket_ctx = cw;
    } else {
        metrics_gauge_add(&h->env.metrics->http_connections_open, -1);
        if (cw != NULL) {
            /* Bytes came and never made a request line (nor timed out). */
            if (cw->head_armed && cw->req == NULL && !cw->timed_out)
                reject(h, METRICS_REJECT_UNPARSED);
            if (cw->parked != NULL)
                cw->parked->watch = NULL;
            watch_free(cw);
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
