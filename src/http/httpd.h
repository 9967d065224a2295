/* The HTTP side of a worker: a libmicrohttpd daemon in external-polling epoll mode, driven by
 * the worker's event_base. It knows nothing of what gatherd serves: it reads a request's head
 * (with the checks of reqhead.h), hands the request to a table of hooks, watches a parked
 * request's client for leaving, and sends the answer the hooks give through the response
 * writer below. Requests whose answer comes later are suspended in the daemon meanwhile.
 *
 * A request's life, as the hooks see it:
 *   begin   the head has arrived: attach state (httpd_req_set_ctx), choose what serves it
 *   serve   head and body are in: answer now (httpd_respond), or park it (httpd_park) and
 *           answer later from the loop
 *   gone    a parked request's client left (or a stream's, also while it was being
 *           written): stop its work; it will not be answered further
 *   done    it is over (answered and sent, abandoned, or refused by httpd itself): record it
 *           and free the state; the request is freed when this returns
 * begin and done come once each for every request; serve at most once, gone at most once and
 * only while parked or streaming. Every hook runs on the loop, from inside the daemon's run or
 * (gone) from a socket event, never from inside a call into httpd. */
#ifndef GATHERD_HTTPD_H
#define GATHERD_HTTPD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct httpd;
struct httpd_req;
struct log_sink;
struct metrics_worker;
struct netacl;

/* What a request ended as, for the done hook. */
struct httpd_outcome {
    int status;       /* as sent, or 499 when the client left before its answer went out */
    size_t bytes;     /* body bytes sent */
    uint64_t usec;    /* from its head to its end */
    bool client_gone; /* it left while parked, or had half-closed before it was served */
};

struct httpd_hooks {
    void (*begin)(void *arg, struct httpd_req *r, const char *url);
    void (*serve)(void *arg, struct httpd_req *r);
    void (*gone)(void *arg, struct httpd_req *r);
    void (*done)(void *arg, struct httpd_req *r, const struct httpd_outcome *o);
    /* A request whose request line was read but which never reached begin: libmicrohttpd
     * refused it (its 400, 413, 414, 431, 505, or a close without an answer), or its head did
     * not arrive in time (408). For its access line: the accessors below work (its method is
     * "-", which libmicrohttpd does not tell, its path the target as sent) during the call. */
    void (*refused)(void *arg, struct httpd_req *r, const struct httpd_outcome *o);
};

/* Everything the daemon takes from the worker. Borrowed; outlives the daemon. */
struct httpd_env {
    struct event_base *base;
    struct log_sink *log;
    struct metrics_worker *metrics; /* connection and in-flight gauges */
    const atomic_int *closing;      /* once set, answers carry Connection: close */
    unsigned connection_limit;      /* connections this daemon holds at most */
    unsigned idle_timeout_s;        /* idle connections are closed after this */
    unsigned header_timeout_ms;     /* a request head must be in this long after its first byte */
    unsigned send_timeout_s;        /* an answer that makes no progress this long is dropped */
    atomic_size_t *unsent;          /* shared by every daemon: see httpd_unsent_bytes() */
    uint64_t rid_seed;              /* seeds the request ids it makes up */
    const struct httpd_hooks *hooks;
    void *arg; /* passed to every hook */
};

/* Starts the daemon on env->base with no listening socket of its own: connections come through
 * httpd_add_connection(). NULL on failure, with the reason in err. */
struct httpd *httpd_create(const struct httpd_env *env, char *err, size_t errlen);

/* Hands the daemon an accepted socket, which it owns from then on (it closes it on failure:
 * its connection limit, out of memory). */
void httpd_add_connection(struct httpd *h, int fd, const struct sockaddr *addr, socklen_t len);

/* Makes the daemon run on the next loop iteration. */
void httpd_wake(struct httpd *h);

/* The bytes of whole answers given to httpd_respond() and not yet sent (or abandoned), summed
 * over every daemon that shares env->unsent: a client that never reads holds its answer until
 * send_timeout_s passes. */
size_t httpd_unsent_bytes(const struct httpd_req *r);

/* Requests received and not yet done. */
size_t httpd_in_flight(const struct httpd *h);

/* Parks what still waits (the gone hook runs for each), lets the daemon finish every request
 * (the done hook runs for each), stops the daemon; accepts NULL. The hooks' owner must still be
 * alive. */
void httpd_destroy(struct httpd *h);

/* The request, during its hooks and while parked. */
void httpd_req_set_ctx(struct httpd_req *r, void *ctx);
void *httpd_req_ctx(const struct httpd_req *r);
const char *httpd_req_method(const struct httpd_req *r);
bool httpd_req_is_head(const struct httpd_req *r);
/* The decoded path, cut to 200 bytes: for logs and messages, not for routing. */
const char *httpd_req_path(const struct httpd_req *r);
/* The request target as the client sent it (path and query, not decoded); NULL when it could
 * not be kept (out of memory). */
const char *httpd_req_target(const struct httpd_req *r);
/* The request id: the client's X-Request-Id when valid (reqid.h), else one made up. */
const char *httpd_req_id(const struct httpd_req *r);
/* Writes the client's address (reqhead_client()); only during begin. */
void httpd_req_client(struct httpd_req *r, const struct netacl *trusted, char *out, size_t outlen);

/* The response writer. */

/* An extra response header; both strings are copied. */
struct httpd_header {
    const char *name, *value;
};

enum httpd_mem {
    HTTPD_MEM_STATIC, /* the body outlives the request (a string literal) */
    HTTPD_MEM_OWNED,  /* malloc'd, handed over: freed by httpd, also when this fails */
};

/* Answers r with a whole body: during serve, queued at once; for a parked request, from the
 * loop, which resumes it and sends on the daemon's next run. Once per request; not after gone.
 * Every answer carries Content-Type, X-Request-Id and Cache-Control: no-store, then the extra
 * headers. 0, or -ENOMEM (the connection is then closed without an answer). */
int httpd_respond(struct httpd_req *r, int status, const char *ctype, char *body, size_t len,
                  enum httpd_mem mem, const struct httpd_header *extra, size_t nextra);

/* As httpd_respond(), with a body r only borrows: release(arg) runs once when libmicrohttpd
 * is done with it (the answer was sent or dropped), also when this fails. So an answer shared
 * by many requests (a cached one) goes out without a copy. */
int httpd_respond_borrowed(struct httpd_req *r, int status, const char *ctype, const char *body,
                           size_t len, void (*release)(void *arg), void *arg,
                           const struct httpd_header *extra, size_t nextra);

/* A JSON error answer {"error": code, "message": message}. As httpd_respond(). */
int httpd_respond_error(struct httpd_req *r, int status, const char *code, const char *message,
                        const struct httpd_header *extra, size_t nextra);

/* A streamed answer: status and headers go out at once, then each piece as it is written
 * (chunked for HTTP/1.1), then the end. Begin only during serve, instead of httpd_respond();
 * the request is not parked but waits in the same way between pieces, so a client that leaves
 * is noticed (the gone hook runs) and shutdown resumes it. Pieces are copied and held until
 * libmicrohttpd takes them: never more than what was written and not yet sent. Each returns 0,
 * -ENOMEM, -EALREADY (not a stream, or already ended), or (write) -EPIPE when the client has
 * left. */
int httpd_stream_begin(struct httpd_req *r, int status, const char *ctype,
                       const struct httpd_header *extra, size_t nextra);
int httpd_stream_write(struct httpd_req *r, const char *data, size_t len);
int httpd_stream_end(struct httpd_req *r);

/* The value of request header `name` (the first of them), or NULL. During the hooks. */
const char *httpd_req_header(const struct httpd_req *r, const char *name);

/* The answer will come later: suspends r and watches its client. Only during serve. 0, or
 * -EPIPE when the client has already gone (nothing was parked; r ends as 499). */
int httpd_park(struct httpd_req *r);

#endif
