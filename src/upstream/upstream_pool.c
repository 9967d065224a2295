#include "upstream_int.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

static void on_timer(evutil_socket_t fd, short kind, void *arg)
{
    struct upstream__pool *p = arg;
    int running;
    (void)fd;
    (void)kind;
    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    upstream__check_done(p);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream__pool *p = userp;
    (void)multi;
    if (timeout_ms < 0)
        return event_del(p->timer) == 0 ? 0 : -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(p->timer, &tv) == 0 ? 0 : -1;
}

static void pool_destroy(struct upstream__pool *p)
{
    if (p->multi != NULL)
        curl_multi_cleanup(p->multi); /* closes cached connections through close_cb */
    if (p->timer != NULL)
        event_free(p->timer);
    upstream__tls_pool_finish(p); /* after the multi: its connections held the session cache */
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
    p->origin = strndup(url, len);
    p->multi = curl_multi_init();
    p->timer = evtimer_new(u->base, on_timer, p);
    p->tls_id = "";
    if (p->origin == NULL || p->multi == NULL || p->timer == NULL ||
        upstream__tls_pool_init(p, tls) < 0) {
        pool_destroy(p);
        return NULL;
    }
    upstream__sock_attach_multi(p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS, u->max_host_connections);
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, u->idle_connections);
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
}
