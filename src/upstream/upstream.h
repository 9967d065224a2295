/* The upstream client: curl multi handles (one per upstream origin) driven by a worker's
 * event_base through the multi-socket API. Each keeps its own connection cache (keep-alive,
 * reused across requests) and DNS cache, and none blocks the loop: name lookups run on curl's
 * resolver threads, and a transfer cancelled mid-lookup detaches its resolver thread instead of
 * joining it. */
#ifndef GATHERD_UPSTREAM_H
#define GATHERD_UPSTREAM_H

#include <stddef.h>

#include "errkind.h"
#include "tlsfail.h"

struct config_tls;
struct event_base;
struct metrics_worker;
struct upstream;
struct upstream_xfer;

struct upstream_opts {
    long max_host_connections; /* 0: unlimited */
    long idle_connections;     /* idle connections kept in the cache */
    struct metrics_worker *metrics;
};

struct upstream_req {
    const char *url;
    long timeout_ms;
    size_t max_body;
    char *const *headers; /* "Name: value" lines, borrowed until completion or cancel */
    size_t nheaders;
    const char *request_id; /* sent as X-Request-Id; copied */
    /* How to connect (config_tls.h); NULL: plain HTTP/1.1. Read only by upstream_start():
     * transfers with profiles of different ids never share a connection or a TLS session. */
    const struct config_tls *tls;
    /* NULL: a GET. Otherwise a POST of body[0, body_len) as application/json, borrowed until
     * completion or cancel (notifications, handler/notify.h). */
    const char *body;
    size_t body_len;
};

/* What a finished transfer yields. error is ERRKIND_NONE when an HTTP answer arrived (any
 * status); then body/len hold it and belong to the callee, which must free(body). */
struct upstream_result {
    enum errkind error;
    long status;
    char *body;
    size_t len;
    const char *message; /* valid during the callback only */
    enum tlsfail tls;    /* why TLS failed, when error is connect or timeout because of it */
};

/* Called from the loop (never from inside a curl callback), so it may start or cancel other
 * transfers. The xfer is gone once it returns. */
typedef void (*upstream_done_fn)(void *arg, struct upstream_result *res);

/* What the layers above need of an upstream client: the seam through which flight.c (and so
 * fanout.c) is driven by curl in the service and by a fake in unit tests. `ctx` is the client.
 * start: as upstream_start(); cancel: as upstream_cancel(). */
struct upstream_ops {
    struct upstream_xfer *(*start)(void *ctx, const struct upstream_req *req, upstream_done_fn done,
                                   void *arg);
    void (*cancel)(void *ctx, struct upstream_xfer *x);
};

/* curl's: ctx is a struct upstream. */
extern const struct upstream_ops upstream_curl_ops;

/* NULL when curl cannot be set up. The base is borrowed. */
/* curl_global_init() with curl's allocations routed through upstream_mem.c: once, before any
 * other curl call and before threads start. 0, or -1. */
int upstream_global_init(void);

struct upstream *upstream_create(struct event_base *base, const struct upstream_opts *opts);

/* Cancels every transfer without calling back and frees everything; accepts NULL. */
void upstream_destroy(struct upstream *u);

/* Says which origins (scheme and authority) the configuration in use needs: those of urls[0,
 * n), which are only read during the call. The pool of any other origin (its multi, its idle
 * connections, its timers) is released once no transfer runs or waits on it, at once if none
 * does; a transfer to such an origin still works, on a pool made for it and released after.
 * Until the first call every origin is kept. 0, or -ENOMEM and nothing changes. From the loop,
 * not from an upstream callback. */
int upstream_keep_origins(struct upstream *u, const char *const *urls, size_t n);

/* Starts a GET, or a POST when req->body is set. NULL when it cannot start (out of memory, curl
 * refused): no callback then. req->timeout_ms counts from now, also while the transfer waits for a
 * connection under max_host_connections; one whose time is up while it waits fails as
 * ERRKIND_TIMEOUT. */
struct upstream_xfer *upstream_start(struct upstream *u, const struct upstream_req *req,
                                     upstream_done_fn done, void *arg);

/* Stops the transfer at once, closing its connection if it was mid-answer; the callback is not
 * called. Must not be called from inside a curl callback (nothing in gatherd is). */
void upstream_cancel(struct upstream_xfer *x);

#endif
