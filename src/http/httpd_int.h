/* Internal to the HTTP server: what httpd.c (the daemon on the loop and its requests), guard.c
 * (the defences against hostile clients: the connection's watch, the head deadline, refusals,
 * the send timeout) and httpd_stream.c (streamed answers) share. Names that cross these files
 * start with httpd__, httpd__guard_ for guard.c's; nothing outside them includes this header. */
#ifndef GATHERD_HTTPD_INT_H
#define GATHERD_HTTPD_INT_H

#include "httpd.h"

#include "buf.h"
#include "metrics.h"
#include "reqid.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;

/* libmicrohttpd's per-connection memory: request line, headers and the reply's headers. MHD
 * touches most of it, so it is most of a connection's footprint: 32 KiB (the default) measured
 * 94 MB peak RSS with 1,000 requests in flight, 16 KiB 77 MB. Headers past it get 431. */
#define HTTPD__CONNECTION_MEMORY (16u << 10)

enum phase {
    PH_NEW,      /* headers seen, not yet served */
    PH_WAITING,  /* parked: suspended until the hooks answer */
    PH_READY,    /* answered while parked; resumed, queued on the next handler call */
    PH_ANSWERED, /* a response is queued */
    PH_GONE,     /* the client left while parked, or before it could be parked */
};

/* One per worker; made and freed by httpd_create() and httpd_destroy(). */
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
 * allocation per request. Created and freed by guard.c (httpd__guard_watch_open() and
 * httpd__guard_watch_close(), from httpd.c's on_connection()). */
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

/* Everything one request owns in httpd; freed in on_completed() (httpd.c) only. */
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
    bool raw_answered;             /* answered by answer_raw() (guard.c): status is what was sent */
    struct httpd_req *prev, *next; /* in h->waiting while PH_WAITING */
    char method[8];
    char path[201];
    char rid[REQID_MAX + 1];
};

/* httpd.c: the daemon and its requests */

/* Suspends r's connection until httpd__resume(): on its watch, which then reports the client
 * leaving, and on h->waiting, for shutdown. -EPIPE, and nothing done, when the client is known
 * to have left already. */
int httpd__suspend(struct httpd_req *r);

/* Resumes r, parked or a stream waiting for a piece, in `phase`: takes it off its watch and
 * off h->waiting, and makes the daemon run. */
void httpd__resume(struct httpd_req *r, enum phase phase);

/* gatherd's headers on every answer, then the extra ones; an extra Cache-Control replaces the
 * default. */
void httpd__add_headers(struct httpd_req *r, struct MHD_Response *resp, const char *ctype,
                        const struct httpd_header *extra, size_t nextra);

/* Queues resp as r's answer from the access handler (during serve, or once a parked request
 * was resumed), with the send timeout on; releases resp (the daemon keeps its own reference). */
enum MHD_Result httpd__queue(struct httpd_req *r, int status, struct MHD_Response *resp,
                             size_t len);

/* The access handler's answer to libmicrohttpd once r was served or refused: MHD_YES when it
 * was answered or parked, MHD_NO (close the connection) when it was not. */
enum MHD_Result httpd__after_serve(struct httpd_req *r);

/* guard.c: the defences against hostile clients */

/* The watch of conn, or NULL when it has none (it could not be made). Borrowed. */
struct conn_watch *httpd__guard_watch_of(struct MHD_Connection *conn);

/* Makes conn's watch, registered with the loop; NULL when that fails (out of memory, or no
 * descriptor): the connection is then served without one. The caller keeps it as the
 * connection's socket context and hands it to httpd__guard_watch_close(). */
struct conn_watch *httpd__guard_watch_open(struct httpd *h, struct MHD_Connection *conn);

/* libmicrohttpd lets go of cw's connection, before it closes the descriptor: counts bytes that
 * never made a request line, forgets the parked request and frees cw. */
void httpd__guard_watch_close(struct conn_watch *cw);

/* A head is in on conn: its deadline stops, and its watch counts it. */
void httpd__guard_head_in(struct MHD_Connection *conn);

/* Whether r's head leaves libmicrohttpd no room to build an answer's headers. If so, r was
 * answered 431 straight on the socket and counted, and the access handler returns MHD_NO. */
bool httpd__guard_head_too_large(struct httpd_req *r);

/* Counts a request turned away, by why. */
void httpd__guard_reject(struct httpd *h, enum metrics_reject why);

/* Answers r, not yet answered, with a JSON error from the access handler: what the handler
 * returns to libmicrohttpd. */
enum MHD_Result httpd__guard_refuse(struct httpd_req *r, int status, const char *code,
                                    const char *message);

/* For on_completed() (httpd.c), when r never reached begin; timed_out: its head was answered
 * 408. r stays the caller's to free. */
void httpd__guard_refused(struct httpd *h, struct httpd_req *r, bool timed_out);

/* Switches r's connection between the send timeout (sending) and the idle timeout. */
void httpd__guard_send_timeout(struct httpd_req *r, bool sending);

#endif
