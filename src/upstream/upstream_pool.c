#include "upstream_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

static void on_timer(evutil_socket_t fd, short kind, void *arg)
{
    struct upstream__shard *sh = arg;
    (void)fd;
    (void)kind;
    sh->in_timer = true;
    upstream__poll_socket_action(sh, CURL_SOCKET_TIMEOUT, 0);
    sh->in_timer = false;
    upstream__check_done(sh);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream__shard *sh = userp;
    (void)multi;
    if (timeout_ms < 0)
        return event_del(sh->timer) == 0 ? 0 : -1;
    /* curl asks for 0 whenever a transfer is added. A 0 timer fires only after the loop's next
     * epoll_wait (a system call of its own per request); activated, the timer runs in this
     * iteration, after the callbacks already due. Not when curl asks again from the timer's own
     * run: that waits for the next iteration, so curl can never keep the loop from polling. */
    if (timeout_ms == 0 && !sh->in_timer) {
        event_del(sh->timer);
        event_active(sh->timer, EV_TIMEOUT, 0);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(sh->timer, &tv) == 0 ? 0 : -1;
}

static void shard_destroy(struct upstream__shard *sh)
{
    if (sh->multi != NULL) {
        curl_multi_cleanup(sh->multi); /* closes cached connections through close_cb */
        upstream__sock_forget_shard(sh);
    }
    if (sh->timer != NULL)
        event_free(sh->timer);
    free(sh);
}

/* A new shard of p, in p->shards; NULL when out of memory. */
static struct upstream__shard *shard_new(struct upstream__pool *p)
{
    struct upstream *u = p->u;
    if (p->nshards == p->shards_cap) {
        size_t cap = p->shards_cap ? 2 * p->shards_cap : 4;
        struct upstream__shard **grown = realloc(p->shards, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        p->shards = grown;
        p->shards_cap = cap;
    }
    struct upstream__shard *sh = calloc(1, sizeof *sh);
    if (sh == NULL)
        return NULL;
    sh->pool = p;
    sh->multi = curl_multi_init();
    sh->timer = evtimer_new(u->base, on_timer, sh);
    if (sh->multi == NULL || sh->timer == NULL) {
        shard_destroy(sh);
        return NULL;
    }
    upstream__sock_attach_multi(sh);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
    /* The pool caps what runs (its queue); the per-multi caps are curl's own safety net. Each
     * shard keeps up to its share of the idle connections. */
    long idle = p->max_shards > 1 ? UPSTREAM__SHARD_CONNECTIONS : u->idle_connections;
    curl_multi_setopt(sh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, u->max_host_connections);
    curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, idle);
    upstream__tls_multi_setup(p, sh->multi);
    p->shards[p->nshards++] = sh;
    return sh;
}

struct upstream__shard *upstream__pool_pick(struct upstream__pool *p)
{
    /* Filled in order: a shard then never runs more transfers at once than it keeps idle
     * connections, so none is closed for the cap and opened again, and idle connections
     * gather in the first shards, where the next transfers look. */
    struct upstream__shard *least = NULL;
    for (size_t i = 0; i < p->nshards; i++) {
        struct upstream__shard *sh = p->shards[i];
        if (sh->running < UPSTREAM__SHARD_CONNECTIONS || p->max_shards == 1)
            return sh;
        if (least == NULL || sh->running < least->running)
            least = sh;
    }
    if (p->nshards >= p->max_shards)
        return least;
    struct upstream__shard *sh = shard_new(p);
    return sh != NULL ? sh : least;
}

static void pool_destroy(struct upstream__pool *p)
{
    for (size_t i = 0; i < p->nshards; i++)
        shard_destroy(p->shards[i]);
    free(p->shards);
    upstream__queue_finish(p);
    upstream__tls_pool_finish(p); /* after the multis: their connections held the session cache */
    free(p->origin);
    free(p);
}

/* The origin of an http(s) URL: everything before the path, query or fragment. */
static size_t origin_len(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    return (size_t)(p + strcspn(p, "/?#") - url);
}

/* Whether s, of hash h, is the origin origin[0, len) of that hash. */
static bool same_origin(uint64_t h, const char *s, uint64_t hash, const char *origin, size_t len)
{
    return h == hash && strncmp(s, origin, len) == 0 && s[len] == '\0';
}

/* A pool is found by its origin and its connection profile's id. */
static uint64_t key_hash(const char *origin, size_t len, const char *id)
{
    return upstream__fnv1a(origin, len) ^ upstream__fnv1a(id, strlen(id));
}

static struct upstream__pool **slot_for(struct upstream__pool **table, size_t cap, uint64_t hash,
                                        const char *origin, size_t len, const char *id)
{
    for (size_t i = hash & (cap - 1);; i = (i + 1) & (cap - 1)) {
        struct upstream__pool *p = table[i];
        if (p == NULL || (p->hash == hash && strncmp(p->origin, origin, len) == 0 &&
                          p->origin[len] == '\0' && strcmp(p->tls_id, id) == 0))
            return &table[i];
    }
}

/* The slot of origin[0, len) in a keep table, or the empty one where it would go. */
static struct upstream__keep *keep_slot(struct upstream__keep *keep, size_t cap, uint64_t hash,
                                        const char *origin, size_t len)
{
    for (size_t i = hash & (cap - 1);; i = (i + 1) & (cap - 1))
        if (keep[i].origin == NULL || same_origin(keep[i].hash, keep[i].origin, hash, origin, len))
            return &keep[i];
}

/* Takes p out of the table (backward-shift deletion, so that no probe sequence breaks). */
static void unlist(struct upstream *u, struct upstream__pool *p)
{
    size_t mask = u->pools_cap - 1;
    size_t i = (size_t)(slot_for(u->pools, u->pools_cap, p->hash, p->origin, strlen(p->origin),
                                 p->tls_id) -
                        u->pools);
    for (size_t j = (i + 1) & mask; u->pools[j] != NULL; j = (j + 1) & mask) {
        size_t home = u->pools[j]->hash & mask;
        /* The entry at j may fill the hole at i unless its home lies cyclically in (i, j]. */
        bool stays = i < j ? home > i && home <= j : home > i || home <= j;
        if (!stays) {
            u->pools[i] = u->pools[j];
            i = j;
        }
    }
    u->pools[i] = NULL;
    u->npools--;
}

/* Whether the configuration in use names the origin origin[0, len). */
static bool kept(const struct upstream *u, uint64_t hash, const char *origin, size_t len)
{
    return u->keep == NULL || keep_slot(u->keep, u->keep_cap, hash, origin, len)->origin != NULL;
}

static void free_keep(struct upstream__keep *keep, size_t cap)
{
    for (size_t i = 0; keep != NULL && i < cap; i++)
        free(keep[i].origin);
    free(keep);
}

/* Releases the pools on u->reap that are still idle and unneeded: their multis close their
 * idle connections, and their timers, caches and wakeup sockets go. A pool that got a
 * transfer or became needed since stays. */
static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    (void)fd;
    (void)what;
    while (u->reap != NULL) {
        struct upstream__pool *p = u->reap;
        u->reap = p->reap_next;
        p->reap_next = NULL;
        p->reaping = false;
        if (!p->needed && p->running == 0 && p->queue.head == NULL) {
            unlist(u, p);
            pool_destroy(p);
        }
    }
}

void upstream__pool_idle(struct upstream__pool *p)
{
    struct upstream *u = p->u;
    if (p->needed || p->reaping || p->running > 0 || p->queue.head != NULL || u->destroying)
        return;
    if (u->reap_ev == NULL && (u->reap_ev = event_new(u->base, -1, 0, on_reap, u)) == NULL)
        return; /* out of memory: the pool stays until the next try */
    p->reaping = true;
    p->reap_next = u->reap;
    u->reap = p;
    event_active(u->reap_ev, EV_READ, 0);
}

int upstream_keep_origins(struct upstream *u, const char *const *urls, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    struct upstream__keep *keep = calloc(cap, sizeof *keep);
    if (keep == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t len = origin_len(urls[i]);
        uint64_t hash = upstream__fnv1a(urls[i], len);
        struct upstream__keep *k = keep_slot(keep, cap, hash, urls[i], len);
        if (k->origin != NULL)
            continue;
        if ((k->origin = strndup(urls[i], len)) == NULL) {
            free_keep(keep, cap);
            return -ENOMEM;
        }
        k->hash = hash;
    }
    free_keep(u->keep, u->keep_cap);
    u->keep = keep;
    u->keep_cap = cap;
    for (size_t i = 0; i < u->pools_cap; i++) {
        struct upstream__pool *p = u->pools[i];
        if (p != NULL) {
            p->needed = kept(u, upstream__fnv1a(p->origin, strlen(p->origin)), p->origin,
                             strlen(p->origin));
            upstream__pool_idle(p);
        }
    }
    return 0;
}

static int grow_pools(struct upstream *u)
{
    size_t cap = u->pools_cap ? u->pools_cap * 2 : 16;
    struct upstream__pool **table = calloc(cap, sizeof *table);
    if (table == NULL)
        return -1;
    for (size_t i = 0; i < u->pools_cap; i++) {
        struct upstream__pool *p = u->pools[i];
        if (p != NULL)
            *slot_for(table, cap, p->hash, p->origin, strlen(p->origin), p->tls_id) = p;
    }
    free(u->pools);
    u->pools = table;
    u->pools_cap = cap;
    return 0;
}

struct upstream__pool *upstream__pool_for(struct upstream *u, const char *url,
                                          const struct config_tls *tls)
{
    size_t len = origin_len(url);
    const char *id = upstream__tls_id(tls);
    uint64_t hash = key_hash(url, len, id);
    if (u->pools_cap > 0) {
        struct upstream__pool *p = *slot_for(u->pools, u->pools_cap, hash, url, len, id);
        if (p != NULL)
            return p;
    }
    if ((u->npools + 1) * 2 > u->pools_cap && grow_pools(u) < 0)
        return NULL;
    struct upstream__pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->u = u;
    p->hash = hash;
    p->needed = kept(u, upstream__fnv1a(url, len), url, len);
    p->origin = strndup(url, len);
    p->tls_id = "";
    if (p->origin == NULL || upstream__queue_init(p) < 0 || upstream__tls_pool_init(p, tls) < 0 ||
        shard_new(p) == NULL) {
        pool_destroy(p);
        return NULL;
    }
    *slot_for(u->pools, u->pools_cap, hash, url, len, id) = p;
    u->npools++;
    return p;
}

void upstream__pool_finish(struct upstream *u)
{
    for (size_t i = 0; i < u->pools_cap; i++)
        if (u->pools[i] != NULL)
            pool_destroy(u->pools[i]);
    free(u->pools);
    if (u->reap_ev != NULL)
        event_free(u->reap_ev);
    free_keep(u->keep, u->keep_cap);
}
