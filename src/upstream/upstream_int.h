/* Internal to the upstream client: what upstream.c (transfers), upstream_pool.c (a curl multi
 * per origin) and upstream_sock.c (the socket registry) share. Names that cross these files start
 * with upstream__; nothing outside them includes this header. */
#ifndef GATHERD_UPSTREAM_INT_H
#define GATHERD_UPSTREAM_INT_H

#include "upstream.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct config_tls;
struct event;
struct upstream__qclass;
struct upstream__sock;
struct upstream__tls;

/* Easy handles kept for reuse, per receive buffer size: creating one costs more than reusing
 * it (bench/RESULTS.md). Up to as many as transfers ran at once lately (the larger of this
 * window's peak and the last one's), within these bounds: fewer than ran at once, and a burst
 * of answers that lands in one loop iteration closes handles that the next requests then make
 * again, each a 5 KiB allocation and free that also has glibc merge its free chunks. */
#define UPSTREAM__SPARE_MIN 256
#define UPSTREAM__SPARE_MAX 4096
#define UPSTREAM__PEAK_WINDOW_US 10000000u

/* curl's receive buffer, allocated once per easy handle: 16 KiB by default, which is most of a
 * transfer's memory when thousands wait on slow upstreams. A URL gets a handle with a buffer
 * of UPSTREAM__SMALL_BUFFER until one of its answers (head and body) has been larger; a larger
 * answer takes a few more reads into it. */
#define UPSTREAM__SMALL_BUFFER 2048L
enum { UPSTREAM__BUF_SMALL, UPSTREAM__BUF_DEFAULT, UPSTREAM__BUF_CLASSES };

/* Queued transfers, oldest first, threaded through one of their links. */
struct upstream__qlist {
    struct upstream__queued *head, *tail;
};

/* A transfer's place in its pool's queue (upstream_queue.c); part of the transfer. */
struct upstream__queued {
    struct upstream_xfer *x;
    /* [UPSTREAM__BY_ARRIVAL]: the pool's queue; [UPSTREAM__BY_CLASS]: its class's. */
    struct {
        struct upstream__queued *prev, *next;
    } link[2];
    struct upstream__qclass *cls; /* transfers of the same timeout_ms; NULL while not queued */
    uint64_t deadline;            /* clock_us() at which its timeout_ms is up */
};
enum { UPSTREAM__BY_ARRIVAL, UPSTREAM__BY_CLASS };

/* Connections a shard of an HTTP/1.1 pool holds before another shard is made. */
#define UPSTREAM__SHARD_CONNECTIONS 16

/* A curl multi handle of a pool, with its own connection cache. curl 7.88 walks a multi's
 * cache twice per transfer: its busy connections until an idle one when it looks for one to
 * reuse, and the whole cache on every curl_multi_remove_handle(). One cache per origin held
 * 64 connections per origin at 64 clients of a K=20 endpoint, and those walks were most of
 * what made a request dearer the more transfers ran at once; shards of at most
 * UPSTREAM__SHARD_CONNECTIONS keep them short. */
struct upstream__shard {
    struct upstream__pool *pool;
    CURLM *multi;
    struct event *timer;
    bool in_timer;  /* in on_timer: a 0 timeout asked now waits for the next loop iteration */
    size_t running; /* transfers handed to this multi */
    size_t nsocks;  /* socket watches pointing at this shard (upstream_sock.c) */
};

/* The transfers of one upstream origin (scheme, authority) and connection profile: its caps,
 * its queue, and one or more curl multis (shards) whose caches only ever hold connections that
 * this origin's transfers can reuse. An HTTP/2 pool has one shard: its connections carry many
 * transfers each. */
struct upstream__pool {
    struct upstream *u;
    struct upstream__shard **shards;
    size_t nshards, shards_cap;
    size_t max_shards; /* 1 for HTTP/2; else enough for the idle cap */
    uint64_t hash;
    char *origin;
    /* How its connections are made (upstream_tls.c). A pool is per origin and connection
     * profile: connections and TLS sessions of one profile never serve another. */
    struct upstream__tls *tls;
    const char *tls_id; /* the profile's id (config_tls.h); "" for plain HTTP/1.1 */
    /* Transfers handed to curl at most: the connection cap, times the streams one connection
     * carries once the origin is known to speak HTTP/2; 0 when unlimited. */
    long max_running;
    /* Transfers beyond the connection cap wait here, not in curl: curl 7.88 walks its whole
     * pending list every time a transfer ends, which with thousands queued stalled the loop for
     * seconds (tests/fault/test_c10k.py). Here a queued transfer costs nothing until its turn
     * or its deadline (upstream_queue.c). */
    size_t running;                    /* handed to curl, in all shards */
    struct upstream__qlist queue;      /* waiting for their turn */
    struct upstream__qclass **classes; /* one per timeout_ms that waits here */
    size_t nclasses, classes_cap;
    struct event *queue_timer; /* at or before the earliest deadline in the queue */
    uint64_t queue_timer_at;   /* clock_us() it is set for; 0 when it is not */
    /* Whether the configuration in use names this origin (upstream_keep_origins()): a pool
     * nobody needs is released once no transfer runs or waits on it. */
    bool needed;
    bool reaping; /* on u->reap, to be released by on_reap */
    struct upstream__pool *reap_next;
};

/* An origin the configuration in use names: an entry of upstream.keep. */
struct upstream__keep {
    uint64_t hash;
    char *origin;
};

/* One per worker. upstream_sock.c keeps socks, inos and nsocks, upstream_pool.c pools, npools,
 * pools_cap, keep, keep_cap, reap and reap_ev, upstream.c the rest. */
struct upstream {
    struct event_base *base;
    bool destroying;
    bool proxy_env; /* a proxy variable was set at start: let curl read the environment */
    struct metrics_worker *metrics;
    long max_host_connections, idle_connections;
    size_t active;
    struct upstream_xfer *xfers;   /* every running transfer, for destroy */
    struct upstream__sock **socks; /* by descriptor: sockets opened through open_cb */
    ino_t *inos;                   /* by descriptor: which socket open_cb opened there */
    size_t nsocks;
    struct upstream__pool **pools; /* open addressing on the origin's hash; never shrinks */
    size_t npools, pools_cap;
    struct upstream__keep *keep; /* keep_cap slots, open addressing; NULL: keep every origin */
    size_t keep_cap;
    struct upstream__pool *reap; /* pools to release on the next turn of the loop */
    struct event *reap_ev;
    struct parsed_url *urls; /* URLS_CAP slots, open addressing on the URL's hash */
    size_t nurls;
    CURL **spare[UPSTREAM__BUF_CLASSES]; /* easy handles kept for reuse, by buffer size */
    size_t nspare[UPSTREAM__BUF_CLASSES], spare_cap[UPSTREAM__BUF_CLASSES];
    size_t peak, last_peak; /* most transfers at once in this window and in the last one */
    uint64_t window_at;     /* clock_us() when this window began */
};

/* 64-bit FNV-1a of s[0, n): the hash of the pools and parsed-URL tables. */
static inline uint64_t upstream__fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* upstream.c */

/* Drains sh's finished transfers, calling each one's done callback. Only from the loop, after
 * curl_multi_socket_action() on sh->multi returns: the callbacks may start or cancel transfers. */
void upstream__check_done(struct upstream__shard *sh);

/* Starts queued transfers of p while it has room. */
void upstream__pump(struct upstream__pool *p);

/* Fails x, whose deadline passed while it was queued, as a timeout, and calls its callback
 * (which may start or cancel transfers). From the pool's queue timer only. */
void upstream__queue_timed_out(struct upstream_xfer *x);

/* upstream_queue.c: transfers waiting for a connection */

/* Creates p's queue timer: 0, or -ENOMEM. */
int upstream__queue_init(struct upstream__pool *p);

/* Frees what the queue holds; only once it is empty. */
void upstream__queue_finish(struct upstream__pool *p);

/* Queues q (q->x set) behind every other: it may wait timeout_ms from now. 0, or -ENOMEM. */
int upstream__queue_push(struct upstream__pool *p, struct upstream__queued *q, long timeout_ms);

/* Takes q, which is queued, out of the queue: constant time. */
void upstream__queue_remove(struct upstream__pool *p, struct upstream__queued *q);

/* upstream_pool.c: the pools, by origin and connection profile */

/* The pool of url's origin and of profile tls (NULL: plain HTTP/1.1), made with its multi on
 * first use; owned by u. NULL when out of memory or curl cannot be set up. */
struct upstream__pool *upstream__pool_for(struct upstream *u, const char *url,
                                          const struct config_tls *tls);

/* The shard of p a transfer about to start goes to: the first that runs fewer than
 * UPSTREAM__SHARD_CONNECTIONS, else a new one, else the least busy. NULL only when a new shard
 * was needed and could not be made. */
struct upstream__shard *upstream__pool_pick(struct upstream__pool *p);

/* Called when a transfer of p ended or could not start: if none runs or waits on p any more
 * and its origin is not needed, p is released on the next turn of the loop (never now: a
 * callback of its multi may be running). */
void upstream__pool_idle(struct upstream__pool *p);

/* Destroys every pool and the table; their multis close cached connections through close_cb.
 * Only once no transfer remains. */
void upstream__pool_finish(struct upstream *u);

/* upstream_tls.c: how a pool's connections are made */

/* Sets p up for profile t (NULL: plain HTTP/1.1): its own references to t's certificates and
 * keys, a TLS session cache of its own, and p->tls, tls_id, max_running and max_shards. 0, or -1
 * when out of memory (p->tls may then be set: the finish frees it). */
int upstream__tls_pool_init(struct upstream__pool *p, const struct config_tls *t);

/* Frees p->tls; only once p's multis are cleaned up and no easy handle still names its session
 * cache (the spares are cleaned up first). Accepts a pool whose init failed. */
void upstream__tls_pool_finish(struct upstream__pool *p);

/* Sets a new multi of p up for p's profile (HTTP/2 streams per connection). */
void upstream__tls_multi_setup(const struct upstream__pool *p, CURLM *multi);

/* The id of profile t, "" for NULL. */
const char *upstream__tls_id(const struct config_tls *t);

/* Options every easy handle gets once. */
void upstream__tls_easy_defaults(CURL *e);

/* Gives e, about to run a transfer of p, p's HTTP version and TLS settings. Every transfer
 * sets them, since a reused handle may come from another pool. */
void upstream__tls_apply(const struct upstream__pool *p, CURL *e);

/* After a transfer of p on e got an answer: learns whether the origin speaks HTTP/2, which
 * sets how many transfers p may hand to curl. */
void upstream__tls_learn(struct upstream__pool *p, CURL *e);

/* Whether a transfer of p that ended with rc failed in TLS, and why; TLSFAIL_NONE when it did
 * not. Then *kind is its error kind (connect, or timeout for a stalled handshake) and msg a
 * message that names the reason; `detail` is curl's message. */
enum tlsfail upstream__tls_failure(const struct upstream__pool *p, CURL *e, CURLcode rc,
                                   const char *detail, enum errkind *kind, char *msg, size_t len);

/* upstream_poll.c: curl's repeated readability checks */

/* curl_multi_socket_action(sh->multi, s, action): while it runs, curl's 0-timeout checks
 * whether a socket is readable are answered without a system call where the loop knows. */
void upstream__poll_socket_action(struct upstream__shard *sh, curl_socket_t s, int action);

/* s is being closed (and its number may be reused): no answer of the running call is kept for
 * it. */
void upstream__poll_forget(curl_socket_t s);

/* How long a parked connection's watch is trusted to tell that it is alive, in microseconds
 * (upstream__sock_quiet()). */
#define UPSTREAM__QUIET_TRUST_US 1000000u

/* upstream_mem.c: curl's allocator */

/* The calling thread runs an upstream client's loop: from now on it keeps a few freed chunks
 * of curl's per-transfer sizes for reuse. */
void upstream__mem_keep(void);

/* Gives the calling thread's kept chunks back to glibc and stops keeping any. */
void upstream__mem_drain(void);

/* curl's malloc, calloc and free (upstream_global_init()); tests call them directly. */
void *upstream__mem_malloc(size_t size);
void *upstream__mem_calloc(size_t n, size_t size);
void upstream__mem_free(void *p);

/* upstream_sock.c: the socket registry */

/* Has sh's multi tell the registry which sockets to watch. The registry watches them on the
 * loop and, on an event, drives sh->multi and calls upstream__check_done(sh). */
void upstream__sock_attach_multi(struct upstream__shard *sh);

/* Has e open and close its sockets through the registry, which counts them in u->metrics. */
void upstream__sock_attach_easy(struct upstream *u, CURL *e);

/* After sh's multi is cleaned up: frees any watch still pointing at sh. None is expected (the
 * multi closes each idle connection through close_cb, which frees its watch); this makes sure
 * no event can reach the freed shard. */
void upstream__sock_forget_shard(struct upstream__shard *sh);

/* Whether s is the socket of an idle connection of u that its watch has seen no byte, close or
 * error on since it went idle, less than UPSTREAM__QUIET_TRUST_US ago: as far as the last
 * epoll_wait knew, the connection is alive. */
bool upstream__sock_quiet(const struct upstream *u, curl_socket_t s);

/* Frees every socket watch and the registry. Only once every multi is cleaned up: until then
 * curl may still hold them. */
void upstream__sock_finish(struct upstream *u);

#endif
