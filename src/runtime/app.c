#include "app.h"

#include "buf.h"
#include "cache.h"
#include "config.h"
#include "jsonv.h"
#include "laddr.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "site.h"
#include "worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sched.h>
#include <sys/random.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct app {
    const struct app_opts *opts;
    struct config *cfg;
    struct site *site; /* cfg and the metrics series bound to it: what workers serve */
    struct log_writer *logger;
    struct log_sink *log;
    struct metrics *metrics;
    struct cache *cache;
    struct listener listener;
    struct event_base *base;
    struct event *sig_term, *sig_int, *sig_hup, *on_quiesced, *on_idle, *on_applied, *on_exit;
    unsigned reload_gen; /* configurations posted to the workers so far */
    bool reload_pending; /* "reloaded" is logged once every worker serves reload_gen */
    size_t reload_endpoints;
    atomic_int draining;
    atomic_size_t unsent; /* the workers' answers not yet sent (httpd.h) */
    bool stopping;
    bool exited; /* every worker ended: notify_dropped is logged once */
    struct worker_shared shared;
    struct worker *workers;
    unsigned nworkers, started;
    char listen_spec[256];
};

int app_listen_spec(const struct config *cfg, const char *cli, char *out, size_t outlen, char *err,
                    size_t errlen)
{
    const char *port = getenv("PORT");
    const char *problem = NULL;
    if (cli != NULL) {
        if ((problem = laddr_check(cli)) != NULL) {
            snprintf(err, errlen, "--listen: \"%s\": %s", cli, problem);
            return -EINVAL;
        }
        snprintf(out, outlen, "%s", cli);
    } else if (cfg->listen != NULL) {
        snprintf(out, outlen, "%s", cfg->listen); /* config_parse() checked it */
    } else if (port != NULL && port[0] != '\0') {
        /* The same parser as every other address: the host is fixed, so what it finds wrong
         * is the port. */
        int n = snprintf(out, outlen, "0.0.0.0:%s", port);
        if (n < 0 || (size_t)n >= outlen || laddr_check(out) != NULL) {
            snprintf(err, errlen, "PORT: \"%s\" is not a port number from 0 to 65535", port);
            return -EINVAL;
        }
    } else
        snprintf(out, outlen, "0.0.0.0:5042");
    return 0;
}

/* CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota (a
 * container limited to 2 CPUs on a 64-core node should run 2 loops, not 64). */
static int usable_cpus(void)
{
    cpu_set_t set;
    long n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f != NULL) {
        char quota[32];
        long period;
        if (fscanf(f, "%31s %ld", quota, &period) == 2 && strcmp(quota, "max") != 0 && period > 0) {
            long q = strtol(quota, NULL, 10);
            long c = (q + period - 1) / period;
            if (c >= 1 && c < n)
                n = c;
        }
        fclose(f);
    }
    return n > 0 ? (int)n : 1;
}

int app_worker_count(int configured)
{
    if (configured > 0)
        return configured;
    int n = usable_cpus();
    return n > 256 ? 256 : n;
}

void app_versions(char *out, size_t outlen, int as_labels)
{
    const char *mhd = MHD_get_version();
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    if (as_labels)
        snprintf(out, outlen,
                 "version=\"%s\",libmicrohttpd=\"%s\",libcurl=\"%s\",libevent=\"%s\","
                 "jansson=\"%s\"",
                 GATHERD_VERSION, mhd, cv->version, event_get_version(), jansson_version_str());
    else
        snprintf(out, outlen, "libmicrohttpd %s, libcurl %s, libevent %s, jansson %s", mhd,
                 cv->version, event_get_version(), jansson_version_str());
}

static int64_t in_flight(struct app *a)
{
    int64_t n = 0;
    for (unsigned i = 0; i < a->nworkers; i++)
        n += atomic_load(&metrics_worker(a->metrics, i)->requests_in_flight);
    return n;
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct app *a = arg;
    (void)what;
    if (atomic_exchange(&a->draining, 1)) {
        log_event(a->log, LOGLEVEL_WARN, "signal_ignored",
                  sig == SIGINT ? "\"signal\":\"SIGINT\"" : "\"signal\":\"SIGTERM\"");
        return;
    }
    metrics_set_draining(a->metrics, 1);
    for (unsigned i = 0; i < a->started; i++)
        worker_post_drain(&a->workers[i]);
}

static void on_quiesced(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    (void)fd;
    (void)what;
    for (unsigned i = 0; i < a->started; i++)
        if (!atomic_load(&a->workers[i].quiesced))
            return;
    if (a->listener.fd == -1)
        return;
    /* Every daemon has let go of the socket: closing it now refuses new connections. */
    listen_close(&a->listener);
    char f[64];
    snprintf(f, sizeof f, "\"in_flight\":%lld", (long long)in_flight(a));
    log_event(a->log, LOGLEVEL_INFO, "draining", f);
}

/* A draining worker has nothing in flight. The drain is over when no worker has: until then
 * every worker keeps its open connections (see worker_post_drain()). */
static void on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    (void)fd;
    (void)what;
    if (a->stopping || in_flight(a) != 0)
        return; /* the worker still busy reports again when it is done */
    a->stopping = true;
    for (unsigned i = 0; i < a->started; i++)
        worker_post_stop(&a->workers[i]);
}

static void on_exit_notice(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    (void)fd;
    (void)what;
    for (unsigned i = 0; i < a->started; i++)
        if (!atomic_load(&a->workers[i].exited))
            return;
    if (a->exited)
        return;
    a->exited = true;
    size_t dropped = 0;
    for (unsigned i = 0; i < a->started; i++)
        dropped += a->workers[i].notify_dropped;
    if (dropped > 0) {
        char f[64];
        snprintf(f, sizeof f, "\"dropped\":%zu", dropped);
        log_event(a->log, LOGLEVEL_WARN, "notify_dropped", f);
    }
    event_base_loopbreak(a->base);
}

/* What cfg allows but an operator must hear about, each time it is applied. */
static void log_warnings(struct app *a, const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nwarnings; i++) {
        const struct config_warning *w = &cfg->warnings[i];
        struct buf f = BUF_INIT;
        if (buf_appends(&f, "\"key\":") == 0 &&
            jsonv_append_string(&f, w->key, strlen(w->key)) == 0 &&
            buf_appends(&f, ",\"detail\":") == 0 &&
            jsonv_append_string(&f, w->detail, strlen(w->detail)) == 0)
            log_event(a->log, LOGLEVEL_WARN, "config_warning", f.data);
        buf_finish(&f);
    }
}

/* The cache follows cfg: its bound, and only the answers of endpoints whose definition cfg
 * still has (config.h: ident) are kept. Out of memory: everything is dropped, which is safe. */
static void apply_cache(struct app *a, const struct config *cfg)
{
    uint64_t *ids = malloc((cfg->nendpoints + 1) * sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; ids != NULL && i < cfg->nendpoints; i++)
        if (cfg->endpoints[i].cache.ttl_ms > 0)
            ids[n++] = cfg->endpoints[i].ident;
    cache_set_max_bytes(a->cache, cfg->cache_max_bytes);
    cache_keep(a->cache, ids, n);
    free(ids);
}

static void reload(struct app *a)
{
    char err[1024];
    struct config *next = NULL;
    if (a->opts->config_path == NULL) {
        log_event(a->log, LOGLEVEL_WARN, "reload_failed",
                  "\"error\":\"no --config file was given; the built-in configuration cannot "
                  "be reloaded\"");
        metrics_reload(a->metrics, 0);
        return;
    }
    int rc = config_load_file(a->opts->config_path, &next, err, sizeof err);
    struct site *site = NULL;
    if (rc == 0 && (site = site_create(next, a->metrics, a->nworkers)) == NULL)
        rc = -ENOMEM;
    if (rc < 0) {
        struct buf f = BUF_INIT;
        if (rc == -ENOMEM)
            snprintf(err, sizeof err, "out of memory");
        if (buf_appends(&f, "\"error\":") == 0 && jsonv_append_string(&f, err, strlen(err)) == 0)
            log_event(a->log, LOGLEVEL_ERROR, "reload_failed", f.data);
        buf_finish(&f);
        config_unref(next);
        metrics_reload(a->metrics, 0);
        return;
    }
    char spec[256], why[128];
    if (app_listen_spec(next, a->opts->listen, spec, sizeof spec, why, sizeof why) == 0 &&
        strcmp(spec, a->listen_spec) != 0)
        log_event(a->log, LOGLEVEL_WARN, "restart_needed",
                  "\"detail\":\"listen changed; it takes effect on restart\"");
    if (a->opts->workers < 0 && app_worker_count(next->workers) != (int)a->nworkers)
        log_event(a->log, LOGLEVEL_WARN, "restart_needed",
                  "\"detail\":\"workers changed; it takes effect on restart\"");
    /* These are baked into each worker's daemon and curl pool when it starts. */
    if (next->worker_connections != a->cfg->worker_connections ||
        next->idle_timeout_ms != a->cfg->idle_timeout_ms ||
        next->header_timeout_ms != a->cfg->header_timeout_ms ||
        next->send_timeout_ms != a->cfg->send_timeout_ms ||
        next->upstream_max_host_connections != a->cfg->upstream_max_host_connections ||
        next->upstream_idle_connections != a->cfg->upstream_idle_connections)
        log_event(a->log, LOGLEVEL_WARN, "restart_needed",
                  "\"detail\":\"worker_connections, idle_timeout_ms, header_timeout_ms, "
                  "send_timeout_ms and upstream_* changes take "
                  "effect on restart\"");
    if (a->opts->log_level < 0)
        log_set_level(a->logger, next->log_level);
    apply_cache(a, next);
    log_warnings(a, next);
    a->reload_gen++;
    for (unsigned i = 0; i < a->started; i++)
        worker_post_config(&a->workers[i], site, a->reload_gen);
    config_unref(a->cfg);
    a->cfg = next;
    site_unref(a->site);
    a->site = site;
    metrics_reload(a->metrics, 1);
    a->reload_pending = true;
    a->reload_endpoints = next->nendpoints;
}

/* A worker took a configuration. "reloaded" waits for every running worker, so that once it
 * is logged every new request is served under the new configuration. */
static void on_applied(evutil_socket_t fd, short what, void *arg)
{
    struct app *a = arg;
    (void)fd;
    (void)what;
    if (!a->reload_pending)
        return;
    for (unsigned i = 0; i < a->started; i++)
        if (!atomic_load(&a->workers[i].exited) &&
            atomic_load(&a->workers[i].applied_gen) < a->reload_gen)
            return;
    a->reload_pending = false;
    char f[64];
    snprintf(f, sizeof f, "\"endpoints\":%zu", a->reload_endpoints);
    log_event(a->log, LOGLEVEL_INFO, "reloaded", f);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    reload(arg);
}

static int start_workers(struct app *a, char *err, size_t errlen)
{
    a->workers = calloc(a->nworkers, sizeof *a->workers);
    if (a->workers == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Workers (and the resolver threads curl starts from them) must never take a signal:
     * block everything while creating them, so only this thread's loop sees SIGTERM & co. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (unsigned i = 0; rc == 0 && i < a->nworkers; i++) {
        char why[512];
        rc = worker_init(&a->workers[i], i, &a->shared, a->site, why, sizeof why);
        if (rc == 0 && (rc = worker_start(&a->workers[i])) < 0)
            snprintf(why, sizeof why, "cannot create its thread: %s", strerror(-rc));
        if (rc < 0) {
            snprintf(err, errlen, "cannot start worker %u of %u: %s", i, a->nworkers, why);
            worker_finish(&a->workers[i]);
        } else
            a->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Start-up failed after some workers were running: they may already hold connections, so they
 * drain as at SIGTERM, and the control loop ends once every one has exited. With none running
 * nothing would ever end that loop, so there is nothing to run. */
static void stop_started(struct app *a)
{
    if (a->started == 0)
        return;
    atomic_store(&a->draining, 1);
    for (unsigned i = 0; i < a->started; i++)
        worker_post_drain(&a->workers[i]);
    event_base_dispatch(a->base);
}

static void teardown(struct app *a)
{
    for (unsigned i = 0; i < a->started; i++)
        worker_finish(&a->workers[i]);
    free(a->workers);
    listen_close(&a->listener);
    struct event *evs[] = {a->sig_term, a->sig_int,    a->sig_hup, a->on_quiesced,
                           a->on_idle,  a->on_applied, a->on_exit};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i] != NULL)
            event_free(evs[i]);
    if (a->base != NULL)
        event_base_free(a->base);
    site_unref(a->site);
    cache_destroy(a->cache);
    metrics_destroy(a->metrics);
    config_unref(a->cfg);
}

int app_run(struct config *cfg, const struct app_opts *opts)
{
    struct app a = {.opts = opts, .cfg = cfg, .listener = {.fd = -1}};
    char err[1024], labels[512];
    int code = 1;
    atomic_init(&a.draining, 0);
    atomic_init(&a.unsent, 0);

    enum loglevel level = opts->log_level >= 0 ? (enum loglevel)opts->log_level : cfg->log_level;
    if (app_listen_spec(cfg, opts->listen, a.listen_spec, sizeof a.listen_spec, err, sizeof err) <
        0) {
        fprintf(stderr, "gatherd: %s\n", err);
        config_unref(cfg);
        return 2;
    }
    a.nworkers = (unsigned)app_worker_count(opts->workers >= 0 ? opts->workers : cfg->workers);
    app_versions(labels, sizeof labels, 1);
    /* The log writer is the process's first thread, and a thread is what it most likely lacks. */
    if ((a.logger = log_create(level)) == NULL) {
        fprintf(stderr, "gatherd: cannot start the log writer thread (out of memory or "
                        "threads)\n");
        goto out;
    }
    a.metrics = metrics_create(a.nworkers, labels);
    a.base = event_base_new();
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed)
        seed = (uint64_t)time(NULL) * 2654435761u;
    if (a.metrics != NULL)
        a.cache = cache_create(cfg->cache_max_bytes, NULL, metrics_cache(a.metrics), seed);
    if (a.metrics == NULL || a.base == NULL || a.cache == NULL ||
        (a.log = log_sink_new(a.logger)) == NULL ||
        (a.site = site_create(cfg, a.metrics, a.nworkers)) == NULL) {
        fprintf(stderr, "gatherd: out of memory at start\n");
        goto out;
    }
    if (listen_open(a.listen_spec, &a.listener, err, sizeof err) < 0) {
        fprintf(stderr, "gatherd: %s\n", err);
        goto out;
    }
    a.sig_term = evsignal_new(a.base, SIGTERM, on_stop_signal, &a);
    a.sig_int = evsignal_new(a.base, SIGINT, on_stop_signal, &a);
    a.sig_hup = evsignal_new(a.base, SIGHUP, on_hup, &a);
    a.on_quiesced = event_new(a.base, -1, 0, on_quiesced, &a);
    a.on_idle = event_new(a.base, -1, 0, on_idle, &a);
    a.on_applied = event_new(a.base, -1, 0, on_applied, &a);
    a.on_exit = event_new(a.base, -1, 0, on_exit_notice, &a);
    if (!a.sig_term || !a.sig_int || !a.sig_hup || !a.on_quiesced || !a.on_idle || !a.on_applied ||
        !a.on_exit || evsignal_add(a.sig_term, NULL) || evsignal_add(a.sig_int, NULL) ||
        evsignal_add(a.sig_hup, NULL)) {
        fprintf(stderr, "gatherd: cannot install signal handlers\n");
        goto out;
    }
    a.shared = (struct worker_shared){
        .listen_fd = a.listener.fd,
        .nworkers = a.nworkers,
        .draining = &a.draining,
        .unsent = &a.unsent,
        .metrics = a.metrics,
        .logger = a.logger,
        .cache = a.cache,
        .on_quiesced = a.on_quiesced,
        .on_idle = a.on_idle,
        .on_applied = a.on_applied,
        .on_exit = a.on_exit,
    };
    if (start_workers(&a, err, sizeof err) < 0) {
        fprintf(stderr, "gatherd: %s\n", err);
        stop_started(&a);
        goto out;
    }
    log_warnings(&a, cfg);
    char f[256];
    snprintf(f, sizeof f, "\"addr\":\"%s\",\"workers\":%u,\"version\":\"%s\"", a.listener.addr,
             a.nworkers, GATHERD_VERSION);
    log_event(a.log, LOGLEVEL_INFO, "listening", f);

    event_base_dispatch(a.base);
    code = 0;
out:
    teardown(&a);
    if (code == 0 && a.log != NULL)
        log_event(a.log, LOGLEVEL_INFO, "stopped", NULL);
    log_destroy(a.logger);
    return code;
}
