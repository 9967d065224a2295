/* The defences against hostile clients, beside the daemon (httpd.c): each connection's watch
 * (a client that leaves while its request is parked, the deadline of a request head), the
 * answers libmicrohttpd 0.9.75 cannot give (408 to a head that never completes, 431 to one that
 * leaves no room for an answer's headers), the refusals and their counts, and the send timeout
 * while an answer goes out. */
#include "httpd_int.h"

#include "clock.h"
#include "metrics.h"
#include "reqid.h"

#include <errno.h>
#include <event2/event.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* What an answer's headers take of the connection's memory (HTTPD__CONNECTION_MEMORY) at most
 * (status line, Date, gatherd's headers with a 128-byte request id, an extra one or two), and
 * what libmicrohttpd keeps per header, argument and cookie (its record, aligned),
 * over-estimated: a head that leaves less than the former could be read but not answered, and
 * libmicrohttpd would close it without a word. */
#define ANSWER_ROOM 1024u
#define VALUE_RECORD 80u

struct conn_watch *httpd__guard_watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

void httpd__guard_reject(struct httpd *h, enum metrics_reject why)
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
        httpd__guard_reject(cw->h, METRICS_REJECT_HEADER_TIMEOUT);
    httpd_wake(cw->h);
}

/* The connection's socket is watched edge-triggered for hang-up (EV_CLOSED: a FIN, whether
 * the client closed or half-closed), EV_WRITE and EV_READ. Being edge-triggered, the watch
 * wakes once per arrival and reads nothing (the daemon reads the bytes): the first bytes of a
 * head arm its deadline. libevent 2.1 delivers a reset (EPOLLHUP|EPOLLERR) as EV_READ|EV_WRITE,
 * and an arrival as EV_READ|EV_WRITE too (an edge reports every ready condition).
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
    httpd__resume(r, PH_GONE);
}

static void watch_free(struct conn_watch *cw)
{
    if (cw->ev != NULL)
        event_free(cw->ev);
    if (cw->head != NULL)
        event_free(cw->head);
    free(cw);
}

struct conn_watch *httpd__guard_watch_open(struct httpd *h, struct MHD_Connection *conn)
{
    struct conn_watch *cw;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci == NULL || (cw = calloc(1, sizeof *cw)) == NULL)
        return NULL;
    cw->h = h;
    cw->conn = conn;
    cw->fd = ci->connect_fd;
    cw->ev = event_new(h->env.base, ci->connect_fd,
                       EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, on_client_event, cw);
    cw->head = evtimer_new(h->env.base, on_head_timeout, cw);
    if (cw->ev == NULL || cw->head == NULL || event_add(cw->ev, NULL) != 0) {
        watch_free(cw);
        return NULL;
    }
    return cw;
}

void httpd__guard_watch_close(struct conn_watch *cw)
{
    /* Bytes came and never made a request line (nor timed out). */
    if (cw->head_armed && cw->req == NULL && !cw->timed_out)
        httpd__guard_reject(cw->h, METRICS_REJECT_UNPARSED);
    if (cw->parked != NULL)
        cw->parked->watch = NULL;
    watch_free(cw);
}

void httpd__guard_head_in(struct MHD_Connection *conn)
{
    struct conn_watch *cw = httpd__guard_watch_of(conn);
    if (cw != NULL) {
        cw->busy = true;
        cw->heads++;
        if (cw->head_armed)
            evtimer_del(cw->head);
        cw->head_armed = false;
    }
}

/* While an answer goes out, the daemon's timeout for the connection is send_timeout_s: it
 * counts from the last byte the client took (libmicrohttpd 0.9.75 times a connection out on no
 * progress, whatever it is doing), as nginx's send_timeout does. */
void httpd__guard_send_timeout(struct httpd_req *r, bool sending)
{
    struct conn_watch *cw = httpd__guard_watch_of(r->conn);
    const struct httpd_env *env = &r->h->env;
    if (cw == NULL || env->send_timeout_s == env->idle_timeout_s || cw->send_timeout == sending)
        return;
    cw->send_timeout = sending;
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              sending ? env->send_timeout_s : env->idle_timeout_s);
}

enum MHD_Result httpd__guard_refuse(struct httpd_req *r, int status, const char *code,
                                    const char *message)
{
    httpd_respond_error(r, status, code, message, NULL, 0);
    return httpd__after_serve(r);
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
    return used + ANSWER_ROOM <= HTTPD__CONNECTION_MEMORY;
}

bool httpd__guard_head_too_large(struct httpd_req *r)
{
    if (head_leaves_room(r->conn))
        return false;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci != NULL)
        answer_raw(ci->connect_fd, 431, "header_too_large", "the request head is too large",
                   r->rid);
    r->raw_answered = true;
    r->status = 431;
    httpd__guard_reject(r->h, METRICS_REJECT_HEADER_TOO_LARGE);
    return true;
}

/* A request libmicrohttpd refused after its request line, or whose head timed out: counted by
 * why, and handed to the refused hook for its access line. */
void httpd__guard_refused(struct httpd *h, struct httpd_req *r, bool timed_out)
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
    httpd__guard_reject(h, why);
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
