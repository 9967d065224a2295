/* The upstream client's queue of transfers waiting for a connection, and the release of pools
 * whose origin is no longer needed, driven through curl on a real loop against listeners on
 * 127.0.0.1 that accept (in the kernel) and never answer: a transfer to one runs until its
 * timeout or its cancel. Ends with nothing running, no connection counted open and the
 * process's descriptors back where they started. */
#include "clock.h"
#include "metrics.h"
#include "tap.h"
#include "upstream.h"

#include <curl/curl.h>
#include <dirent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct got {
    int calls;
    enum errkind error;
    char message[256];
    uint64_t at; /* clock_us() of the callback */
};

static void on_done(void *arg, struct upstream_result *res)
{
    struct got *g = arg;
    g->calls++;
    g->error = res->error;
    snprintf(g->message, sizeof g->message, "%s", res->message ? res->message : "");
    g->at = clock_us();
    free(res->body);
}

/* A listener that never accepts: connects complete in its backlog and nothing answers. */
static int silent_listener(char *url, size_t len)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (s == -1 || bind(s, (struct sockaddr *)&a, sizeof a) == -1 || listen(s, 64) == -1 ||
        getsockname(s, (struct sockaddr *)&a, &alen) == -1) {
        perror("silent listener");
        exit(1);
    }
    snprintf(url, len, "http://127.0.0.1:%d/x", ntohs(a.sin_port));
    return s;
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    while (d != NULL && readdir(d) != NULL)
        n++;
    if (d != NULL)
        closedir(d);
    return n;
}

static struct event_base *base;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until pred(arg) or `ms` pass; whether pred came true. */
static bool run_until(bool (*pred)(void *), void *arg, long ms)
{
    uint64_t end = clock_us() + (uint64_t)ms * 1000;
    while (!pred(arg) && clock_us() < end) {
        struct event *tick = evtimer_new(base, on_tick, NULL); /* bounds each turn to 10 ms */
        struct timeval tv = {0, 10000};
        evtimer_add(tick, &tv);
        event_base_loop(base, EVLOOP_ONCE);
        event_free(tick);
    }
    return pred(arg);
}

static bool called(void *arg)
{
    return ((struct got *)arg)->calls > 0;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static struct upstream_xfer *start(struct upstream *u, const char *url, long timeout_ms,
                                   struct got *g)
{
    struct upstream_req r = {url, timeout_ms, 1 << 20, NULL, 0, "test", NULL, NULL, 0};
    return upstream_start(u, &r, on_done, g);
}

static long ms_since(uint64_t t0, const struct got *g)
{
    return (long)((g->at - t0) / 1000);
}

/* Transfers queued behind the cap each fail at their own timeout, whatever their place in the
 * queue, as timeouts that say they waited for a connection. */
static void test_timeouts_while_queued(struct upstream *u, const char *url)
{
    struct got hold = {0}, a = {0}, b = {0}, c = {0}, d = {0};
    struct upstream_xfer *xh = start(u, url, 20000, &hold);
    uint64_t t0 = clock_us();
    struct upstream_xfer *xb = start(u, url, 15000, &b);
    ok(xh != NULL && start(u, url, 600, &a) != NULL && xb != NULL &&
           start(u, url, 300, &c) != NULL && start(u, url, 600, &d) != NULL,
       "one transfer runs, four queue behind it");
    ok(run_until(called, &d, 5000), "the queued transfers time out");
    ok(c.calls == 1 && c.error == ERRKIND_TIMEOUT && ms_since(t0, &c) >= 300 &&
           ms_since(t0, &c) < 1300,
       "the 300 ms one, queued behind longer ones, fails after its 300 ms (%ld ms)",
       ms_since(t0, &c));
    ok(a.calls == 1 && d.calls == 1 && ms_since(t0, &a) >= 600 && ms_since(t0, &a) < 1600 &&
           a.at <= d.at,
       "the 600 ms ones fail after their 600 ms, in order (%ld ms)", ms_since(t0, &a));
    ok(a.error == ERRKIND_TIMEOUT && strstr(a.message, "waiting for a connection") != NULL,
       "a timeout whose message says it waited: %s", a.message);
    ok(b.calls == 0 && hold.calls == 0, "the 15 s one still waits, the first still runs");
    upstream_cancel(xb);
    upstream_cancel(xh);
    run_until(never, NULL, 30);
    ok(b.calls == 0 && hold.calls == 0, "cancelled: no callback");
}

/* A transfer that gets its turn after waiting has only what is left of its timeout. */
static void test_wait_counts_once_started(struct upstream *u, const char *url)
{
    struct got hold = {0}, x = {0};
    uint64_t t0 = clock_us();
    ok(start(u, url, 1000, &hold) != NULL && start(u, url, 2000, &x) != NULL,
       "a 1000 ms transfer runs, a 2000 ms one waits for its connection");
    ok(run_until(called, &x, 8000), "both end");
    ok(hold.calls == 1 && hold.error == ERRKIND_TIMEOUT, "the first times out in curl");
    ok(x.calls == 1 && x.error == ERRKIND_TIMEOUT && ms_since(t0, &x) >= 2000 &&
           ms_since(t0, &x) < 2800,
       "the second after 2000 ms in all, not 1000 + 2000 (%ld ms)", ms_since(t0, &x));
}

/* Cancelling queued transfers costs the same wherever they stand: newest first (as
 * upstream_destroy and a burst of departing clients do), oldest first, from the middle. */
static void test_cancel_cost(struct upstream *u, const char *url)
{
    enum { N = 20000 };
    static struct upstream_xfer *xs[N];
    static struct got gs[N];
    struct got hold = {0};
    struct upstream_xfer *xh = start(u, url, 60000, &hold);
    bool started = xh != NULL;
    for (int i = 0; i < N; i++)
        started &= (xs[i] = start(u, url, 50000 + (i % 3) * 1000, &gs[i])) != NULL;
    ok(started, "%d transfers queue behind one", N);
    uint64_t t0 = clock_us();
    for (int i = N / 2; i < N; i += 2) { /* from the middle on, every other one */
        upstream_cancel(xs[i]);
        xs[i] = NULL;
    }
    for (int i = 1; i < N / 2; i += 2) { /* the first half's odd ones, oldest first */
        upstream_cancel(xs[i]);
        xs[i] = NULL;
    }
    for (int i = N - 1; i >= 0; i--) /* the rest, newest first */
        upstream_cancel(xs[i]);
    long ms = (long)((clock_us() - t0) / 1000);
    int calls = 0;
    for (int i = 0; i < N; i++)
        calls += gs[i].calls;
    ok(calls == 0, "no callback for a cancelled transfer");
    ok(ms < 500, "%d cancels in %ld ms", N, ms);
    upstream_cancel(xh);
    run_until(never, NULL, 30);
    ok(hold.calls == 0, "cancelled: no callback");
}

static bool fds_at_most(void *arg)
{
    return open_fds() <= *(int *)arg;
}

/* A pool whose origin the configuration no longer names is released once nothing runs or
 * waits on it; one still named stays. */
static void test_release_unneeded(struct upstream *u, const char *url, const char *url2,
                                  struct metrics_worker *mw)
{
    int fds0 = open_fds();
    struct got g1 = {0}, g2 = {0}, g3 = {0};
    struct upstream_xfer *x1 = start(u, url2, 20000, &g1);
    struct upstream_xfer *x2 = start(u, url2, 20000, &g2); /* queued behind x1 */
    ok(x1 != NULL && x2 != NULL, "two transfers on a second origin, one queued");
    run_until(never, NULL, 50);
    int fds1 = open_fds();
    ok(fds1 > fds0, "its pool holds descriptors (%d, was %d)", fds1, fds0);
    const char *keep[] = {url};
    ok(upstream_keep_origins(u, keep, 1) == 0, "only the first origin is needed now");
    run_until(never, NULL, 50);
    ok(open_fds() == fds1 && g1.calls == 0, "a pool with transfers stays");
    upstream_cancel(x1);
    run_until(never, NULL, 50);
    ok(open_fds() >= fds1 - 1 && g2.calls == 0, "one still waits: the pool stays");
    upstream_cancel(x2);
    ok(run_until(fds_at_most, &fds0, 2000), "the last one gone, the pool is released (%d fds)",
       open_fds());
    /* A transfer to an origin not needed still works, on a pool released after it. */
    struct upstream_xfer *x3 = start(u, url2, 200, &g3);
    ok(x3 != NULL && run_until(called, &g3, 3000) && g3.error == ERRKIND_TIMEOUT,
       "a transfer to an unneeded origin runs");
    ok(run_until(fds_at_most, &fds0, 2000), "and its pool goes after it (%d fds)", open_fds());
    ok(atomic_load(&mw->upstream_connections_open) == 0, "no connection counted open");
    /* Needed again: the pool of the first origin is kept when idle. */
    const char *both[] = {url, url2, url};
    ok(upstream_keep_origins(u, both, 3) == 0, "both needed");
    struct got g4 = {0};
    ok(start(u, url2, 100, &g4) != NULL && run_until(called, &g4, 3000), "one more transfer");
    run_until(never, NULL, 50);
    ok(open_fds() > fds0, "a needed origin's pool stays when idle (%d fds)", open_fds());
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int fds_start = open_fds();
    char url[64], url2[64];
    int l1 = silent_listener(url, sizeof url), l2 = silent_listener(url2, sizeof url2);
    base = event_base_new();
    struct metrics *m = metrics_create(1, "");
    struct metrics_worker *mw = metrics_worker(m, 0);
    struct upstream_opts o = {1, 4, mw};
    struct upstream *u = upstream_create(base, &o);
    ok(u != NULL, "upstream client with one connection per origin");

    test_timeouts_while_queued(u, url);
    test_wait_counts_once_started(u, url);
    test_cancel_cost(u, url);
    test_release_unneeded(u, url, url2, mw);

    upstream_destroy(u);
    ok(atomic_load(&mw->upstream_connections_open) == 0, "every connection closed");
    metrics_destroy(m);
    event_base_free(base);
    close(l1);
    close(l2);
    ok(open_fds() == fds_start, "descriptors back to the start (%d)", open_fds());
    curl_global_cleanup();
    libevent_global_shutdown();
    return tap_done();
}
