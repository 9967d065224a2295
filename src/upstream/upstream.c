#include "upstream.h"
#include "upstream_int.h"

#include "buf.h"
#include "clock.h"
#include "reqid.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parsed URLs kept per worker (a power of two). A transfer's easy handle points at its entry
 * until it ends (curl parses again from it on a retry), so the table only starts over, once
 * half full, at a moment no transfer runs; until then new URLs are parsed by curl. */
#define URLS_CAP 1024

/* curl 7.88 parses a transfer's URL string on every transfer (about 6 % of a K=3 request's
 * instructions); handed a parsed CURLU (CURLOPT_CURLU) it only copies it. */
struct parsed_url {
    uint64_t hash;
    char *url;
    CURLU *h;
    size_t largest; /* largest answer seen, head and body */
};

/* One per transfer; tied to its easy handle through CURLOPT_PRIVATE. */
struct upstream_xfer {
    struct upstream *u;
    struct upstream__pool *pool;
    struct upstream__shard *shard; /* while handed to curl */
    CURL *easy;
    int buf_class;
    struct parsed_url *url; /* NULL when curl parses the URL string */
    int requests;           /* times curl was about to send the request: 2 or more on a retry */
    bool reusable;          /* the handle may serve another transfer as it is */
    bool post;              /* a POST: its handle is never reused (see release()) */
    upstream_done_fn done;
    void *arg;
    struct buf body;
    long timeout_ms;
    struct upstream__queued q; /* q.cls is set while waiting in the pool's queue */
    size_t max_body;
    size_t seen;  /* body bytes received, kept or not */
    bool discard; /* a non-2xx answer: its body is counted, not kept */
    bool too_large;
    struct upstream_xfer *prev, *next;
    char errbuf[CURL_ERROR_SIZE];
    char rid_header[sizeof "X-Request-Id: " + REQID_MAX];
    size_t nnodes;
    struct curl_slist nodes[]; /* configured headers, then X-Request-Id; no allocation each */
};

static const char user_agent[] = "User-Agent: gatherd/" GATHERD_VERSION;
/* A POST's body is JSON; "Expect:" stops curl from asking for 100-continue on a body over
 * 1 KiB, which costs a round trip (or a second's wait on a server that ignores it). */
static const char post_type[] = "Content-Type: application/json";
static const char post_expect[] = "Expect:";

static void urls_clear(struct upstream *u);

static bool is_success(long status)
{
    return status >= 200 && status <= 299;
}

/* The body of a non-2xx answer is never used, so it is only counted: it still may not exceed
 * the cap, so a huge error page cannot hold the transfer open. */
static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
    struct upstream_xfer *x = arg;
    size_t len = size * n;
    if (x->seen + len > x->max_body) {
        x->too_large = true;
        return CURL_WRITEFUNC_ERROR;
    }
    if (x->seen == 0) {
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        x->discard = !is_success(status);
    }
    x->seen += len;
    if (!x->discard && buf_append(&x->body, data, len) < 0)
        return CURL_WRITEFUNC_ERROR;
    return len;
}

static void unlink_xfer(struct upstream_xfer *x)
{
    struct upstream *u = x->u;
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        u->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    u->active--;
}

/* Hands x to curl with timeout_ms of its own left. */
static int submit(struct upstream_xfer *x, long timeout_ms)
{
    struct upstream__shard *sh = upstream__pool_pick(x->pool);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (sh == NULL || curl_multi_add_handle(sh->multi, x->easy) != CURLM_OK)
        return -1;
    x->shard = sh;
    sh->running++;
    x->pool->running++;
    return 0;
}

static bool pool_full(const struct upstream__pool *p)
{
    return p->max_running > 0 && p->running >= (size_t)p->max_running;
}

/* The time spent queued counts against a transfer's timeout, as it would in curl's own queue:
 * curl gets what is left of it. One whose time is up is not started but left to the queue's
 * timer, which fails it as having waited for a connection (its callback cannot run here, in
 * the middle of another transfer's release). */
void upstream__pump(struct upstream__pool *p)
{
    uint64_t now = 0;
    while (p->queue.head != NULL && !pool_full(p) && !p->u->destroying) {
        struct upstream__queued *q = p->queue.head;
        if (now == 0)
            now = clock_us();
        if (q->deadline <= now)
            return;
        if (submit(q->x, (long)((q->deadline - now + 999) / 1000)) < 0)
            return; /* out of memory in curl: it stays first, retried when another ends */
        upstream__queue_remove(p, q);
    }
}

/* How many spare handles a class may keep now (UPSTREAM__SPARE_MIN). */
static size_t spare_limit(struct upstream *u)
{
    uint64_t now = clock_us();
    if (now - u->window_at >= UPSTREAM__PEAK_WINDOW_US) {
        u->last_peak = u->peak;
        u->peak = u->active;
        u->window_at = now;
    }
    size_t want = u->peak > u->last_peak ? u->peak : u->last_peak;
    return want < UPSTREAM__SPARE_MIN   ? UPSTREAM__SPARE_MIN
           : want > UPSTREAM__SPARE_MAX ? UPSTREAM__SPARE_MAX
                                        : want;
}

/* Keeps e, a handle of buffer class c, for reuse if the class has room: true if it did. */
static bool spare_keep(struct upstream *u, int c, CURL *e)
{
    size_t limit = spare_limit(u);
    while (u->nspare[c] > limit) /* the load fell: one handle fewer per release */
        curl_easy_cleanup(u->spare[c][--u->nspare[c]]);
    if (u->nspare[c] >= limit)
        return false;
    if (u->nspare[c] == u->spare_cap[c]) {
        size_t cap = u->spare_cap[c] ? 2 * u->spare_cap[c] : 64;
        CURL **grown = realloc(u->spare[c], cap * sizeof *grown);
        if (grown == NULL)
            return false;
        u->spare[c] = grown;
        u->spare_cap[c] = cap;
    }
    u->spare[c][u->nspare[c]++] = e;
    return true;
}

/* Takes x out of curl (or of the queue), returns its easy handle to the spares, frees x, and
 * lets the next queued transfer of its pool start. */
static void release(struct upstream_xfer *x)
{
    struct upstream *u = x->u;
    struct upstream__pool *p = x->pool;
    if (x->q.cls != NULL) {
        upstream__queue_remove(p, &x->q);
    } else {
        curl_multi_remove_handle(x->shard->multi, x->easy);
        x->shard->running--;
        p->running--;
    }
    /* A handle is reused as it is, without curl_easy_reset() (which would put its buffer size
     * back to 16 KiB over a smaller buffer, and costs 4 % of a request), only after a plain
     * success or when it never ran: curl keeps per-handle state such as the count of retries
     * on dead reused connections (after five in a handle's life, a sixth stale connection
     * would fail), so a handle that retried, failed or was cancelled is closed instead. */
    /* A POST's handle is closed too: reused, it would need its method and body reset, a cost
     * every GET would then pay; notifications are rare enough to make a handle each. */
    if ((x->reusable || x->requests == 0) && !x->post && !u->destroying) {
        curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, NULL); /* x->errbuf goes with x */
        /* A spare may outlive its pool, and curl_share_cleanup() refuses (and leaks) a share a
         * handle still holds; the next start attaches its own pool's share before it runs. */
        curl_easy_setopt(x->easy, CURLOPT_SHARE, NULL);
        if (!spare_keep(u, x->buf_class, x->easy))
            curl_easy_cleanup(x->easy);
    } else {
        curl_easy_cleanup(x->easy);
    }
    unlink_xfer(x);
    buf_finish(&x->body);
    free(x);
    upstream__pump(p);
    upstream__pool_idle(p);
}

void upstream__queue_timed_out(struct upstream_xfer *x)
{
    char message[160];
    snprintf(message, sizeof message,
             "timed out after %ld ms waiting for a connection to this origin (at its limit of %ld)",
             x->timeout_ms, x->u->max_host_connections);
    struct upstream_result res = {ERRKIND_TIMEOUT, 0, NULL, 0, message, TLSFAIL_NONE};
    upstream_done_fn done = x->done;
    void *arg = x->arg;
    release(x);
    done(arg, &res);
}

static enum errkind classify(CURLcode rc, bool too_large)
{
    if (too_large || rc == CURLE_FILESIZE_EXCEEDED)
        return ERRKIND_TOO_LARGE;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return ERRKIND_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
        return ERRKIND_CONNECT;
    default:
        return ERRKIND_TRANSFER;
    }
}

/* Drains finished transfers. Each callback may start or cancel others; curl drops the pending
 * message of a handle removed meanwhile, so the loop stays valid. */
void upstream__check_done(struct upstream__shard *sh)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(sh->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result; /* copy before remove_handle invalidates msg */
        struct upstream_xfer *x;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);

        struct upstream_result res = {ERRKIND_NONE, 0, NULL, 0, NULL, TLSFAIL_NONE};
        char message[CURL_ERROR_SIZE + 160];
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res.status);
        if (res.status != 0)
            upstream__tls_learn(x->pool, easy);
        x->reusable = rc == CURLE_OK && x->requests == 1;
        if (res.status != 0 && !is_success(res.status)) {
            /* The status line decides: a 503 stays a 503 even if its body then ran over the
             * cap or was cut short. */
        } else if (rc == CURLE_OK) {
            res.len = x->body.len;
            res.body = buf_steal(&x->body, NULL);
            if (x->url != NULL) {
                long head = 0;
                curl_easy_getinfo(easy, CURLINFO_HEADER_SIZE, &head);
                size_t size = x->seen + (size_t)head;
                if (size > x->url->largest)
                    x->url->largest = size;
            }
        } else {
            res.status = 0;
            res.error = classify(rc, x->too_large);
            const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
            if (res.error == ERRKIND_TOO_LARGE)
                snprintf(message, sizeof message, "upstream body exceeds max_body_bytes (%zu)",
                         x->max_body);
            else if ((res.tls = upstream__tls_failure(x->pool, easy, rc, detail, &res.error,
                                                      message, sizeof message)) == TLSFAIL_NONE)
                snprintf(message, sizeof message, "%s", detail);
            res.message = message;
        }
        upstream_done_fn done = x->done;
        void *arg = x->arg;
        release(x);
        done(arg, &res);
    }
}

struct upstream *upstream_create(struct event_base *base, const struct upstream_opts *opts)
{
    struct upstream *u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    u->base = base;
    u->metrics = opts->metrics;
    static const char *const proxy_vars[] = {"http_proxy", "https_proxy", "HTTPS_PROXY",
                                             "all_proxy",  "ALL_PROXY",   NULL};
    for (const char *const *v = proxy_vars; *v != NULL; v++)
        u->proxy_env |= getenv(*v) != NULL;
    u->max_host_connections = opts->max_host_connections;
    /* A pool never holds more idle connections than it may have busy ones. */
    u->idle_connections =
        opts->max_host_connections > 0 && opts->max_host_connections < opts->idle_connections
            ? opts->max_host_connections
            : opts->idle_connections;
    return u;
}

void upstream_destroy(struct upstream *u)
{
    if (u == NULL)
        return;
    u->destroying = true;
    while (u->xfers != NULL)
        release(u->xfers);
    for (int c = 0; c < UPSTREAM__BUF_CLASSES; c++) {
        for (size_t i = 0; i < u->nspare[c]; i++)
            curl_easy_cleanup(u->spare[c][i]);
        free(u->spare[c]);
    }
    upstream__pool_finish(u);
    upstream__sock_finish(u); /* every multi is gone: nothing refers to these any more */
    urls_clear(u);
    free(u->urls);
    free(u);
    upstream__mem_drain(); /* on the loop's thread, after the last of curl's frees */
}

/* The options every transfer shares; the rest are set per transfer. */
static void easy_defaults(struct upstream *u, CURL *e)
{
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* A transfer cancelled during its lookup must not join the resolver thread on the loop. */
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    upstream__tls_easy_defaults(e);
    /* Without a proxy in the environment, say so once: otherwise curl calls getenv() for
     * no_proxy and each *_proxy variable on every transfer. */
    if (!u->proxy_env)
        curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    upstream__sock_attach_easy(u, e);
}

/* Counts how often curl is about to send the request: more than once means it retried. */
static int prereq_cb(void *arg, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    struct upstream_xfer *x = arg;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    x->requests++;
    return CURL_PREREQFUNC_OK;
}

static CURL *easy_new(struct upstream *u, int buf_class)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        return NULL;
    easy_defaults(u, e);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
    if (buf_class == UPSTREAM__BUF_SMALL)
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE, UPSTREAM__SMALL_BUFFER);
    return e;
}

static void urls_clear(struct upstream *u)
{
    for (size_t i = 0; u->urls != NULL && i < URLS_CAP; i++) {
        free(u->urls[i].url);
        curl_url_cleanup(u->urls[i].h);
        u->urls[i] = (struct parsed_url){0};
    }
    u->nurls = 0;
}

/* The parsed form of url, owned by u; NULL when it cannot be had, and curl then parses. */
static struct parsed_url *parsed_url(struct upstream *u, const char *url)
{
    if (u->urls == NULL && (u->urls = calloc(URLS_CAP, sizeof *u->urls)) == NULL)
        return NULL;
    size_t len = strlen(url);
    uint64_t hash = upstream__fnv1a(url, len);
    size_t i = hash & (URLS_CAP - 1);
    for (; u->urls[i].url != NULL; i = (i + 1) & (URLS_CAP - 1))
        if (u->urls[i].hash == hash && strcmp(u->urls[i].url, url) == 0)
            return &u->urls[i];
    if (u->nurls + 1 > URLS_CAP / 2) {
        if (u->active > 0)
            return NULL;
        urls_clear(u);
        i = hash & (URLS_CAP - 1);
    }
    /* Parsed as curl parses a URL string (gatherd's always name http or https). */
    CURLU *h = curl_url();
    char *copy = strdup(url);
    if (h == NULL || copy == NULL || curl_url_set(h, CURLUPART_URL, url, 0) != CURLUE_OK) {
        curl_url_cleanup(h);
        free(copy);
        return NULL;
    }
    u->urls[i] = (struct parsed_url){hash, copy, h, 0};
    u->nurls++;
    return &u->urls[i];
}

struct upstream_xfer *upstream_start(struct upstream *u, const struct upstream_req *req,
                                     upstream_done_fn done, void *arg)
{
    /* The configured headers, X-Request-Id, and our User-Agent unless one is configured. curl
     * formats CURLOPT_USERAGENT with its byte-at-a-time printf on every transfer; as a
     * prebuilt header line it is copied once. */
    bool own_agent = true;
    for (size_t i = 0; i < req->nheaders; i++)
        if (strncasecmp(req->headers[i], "User-Agent:", 11) == 0)
            own_agent = false;
    size_t nposted = req->body != NULL ? 2 : 0;
    size_t nnodes = req->nheaders + (own_agent ? 2 : 1) + nposted;
    upstream__mem_keep(); /* on the loop's thread: a store */
    struct upstream__pool *pool = upstream__pool_for(u, req->url, req->tls);
    if (pool == NULL)
        return NULL;
    struct upstream_xfer *x = calloc(1, sizeof *x + nnodes * sizeof x->nodes[0]);
    if (x == NULL) {
        upstream__pool_idle(pool);
        return NULL;
    }
    struct parsed_url *url = parsed_url(u, req->url);
    int cls = url != NULL && url->largest <= (size_t)UPSTREAM__SMALL_BUFFER ? UPSTREAM__BUF_SMALL
                                                                            : UPSTREAM__BUF_DEFAULT;
    /* A POST takes a new handle: spares are set up for GETs only. */
    CURL *e = u->nspare[cls] > 0 && req->body == NULL ? u->spare[cls][--u->nspare[cls]]
                                                      : easy_new(u, cls);
    if (e == NULL) {
        free(x);
        upstream__pool_idle(pool);
        return NULL;
    }
    x->buf_class = cls;
    x->url = url;
    x->u = u;
    x->pool = pool;
    x->easy = e;
    x->done = done;
    x->arg = arg;
    x->max_body = req->max_body;
    x->nnodes = nnodes;
    for (size_t i = 0; i < req->nheaders; i++) {
        x->nodes[i].data = req->headers[i];
        x->nodes[i].next = &x->nodes[i + 1];
    }
    snprintf(x->rid_header, sizeof x->rid_header, "X-Request-Id: %s", req->request_id);
    x->nodes[req->nheaders].data = x->rid_header;
    x->nodes[req->nheaders].next = own_agent ? &x->nodes[req->nheaders + 1] : NULL;
    if (own_agent) {
        x->nodes[nnodes - nposted - 1].data = (char *)user_agent;
        x->nodes[nnodes - nposted - 1].next = NULL;
    }
    if (nposted > 0) {
        x->nodes[nnodes - nposted - 1].next = &x->nodes[nnodes - 2];
        x->nodes[nnodes - 2].data = (char *)post_type;
        x->nodes[nnodes - 2].next = &x->nodes[nnodes - 1];
        x->nodes[nnodes - 1].data = (char *)post_expect;
        x->nodes[nnodes - 1].next = NULL;
        x->post = true;
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    }

    /* curl connects from the CURLU and retries from the string, so the two must name the same
     * URL: a reused handle still holds the last transfer's. Given the CURLU alone, curl 7.88
     * would rebuild the string from it with its byte-at-a-time printf on every transfer (about
     * 11k instructions per leg); the string it gets here is only copied. */
    if (url != NULL) {
        curl_easy_setopt(e, CURLOPT_URL, url->url);
        curl_easy_setopt(e, CURLOPT_CURLU, url->h);
    } else {
        curl_easy_setopt(e, CURLOPT_CURLU, NULL);
        curl_easy_setopt(e, CURLOPT_URL, req->url);
    }
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, &x->nodes[0]);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)req->max_body);
    upstream__tls_apply(pool, e);

    x->timeout_ms = req->timeout_ms;
    x->q.x = x;
    if (pool_full(pool) ? upstream__queue_push(pool, &x->q, x->timeout_ms) < 0
                        : submit(x, x->timeout_ms) < 0) {
        curl_easy_cleanup(e);
        free(x);
        upstream__pool_idle(pool);
        return NULL;
    }
    x->next = u->xfers;
    if (u->xfers != NULL)
        u->xfers->prev = x;
    u->xfers = x;
    if (++u->active > u->peak)
        u->peak = u->active;
    return x;
}

void upstream_cancel(struct upstream_xfer *x)
{
    if (x != NULL)
        release(x);
}

static struct upstream_xfer *ops_start(void *ctx, const struct upstream_req *req,
                                       upstream_done_fn done, void *arg)
{
    return upstream_start(ctx, req, done, arg);
}

static void ops_cancel(void *ctx, struct upstream_xfer *x)
{
    (void)ctx;
    upstream_cancel(x);
}

const struct upstream_ops upstream_curl_ops = {ops_start, ops_cancel};
