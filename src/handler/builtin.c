/* gatherd's own endpoints: /healthz (alive), /readyz (ready for traffic), /metrics. */
#include "buf.h"
#include "cache.h"
#include "config.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "site.h"

#include <stdatomic.h>
#include <string.h>

#define JSON_TYPE "application/json"

static void answer_static(struct request *q, int status, const char *json)
{
    httpd_respond(q->hr, status, JSON_TYPE, (char *)json, strlen(json), HTTPD_MEM_STATIC, NULL, 0);
}

static void serve_metrics(struct request *q)
{
    const struct router_env *env = &q->rt->env;
    struct buf b = BUF_INIT;
    metrics_set_log_dropped(env->metrics, log_dropped(env->logw));
    if (metrics_render(env->metrics, &b) < 0) {
        buf_finish(&b);
        answer_static(q, 500, "{\"error\":\"internal\",\"message\":\"out of memory\"}");
        return;
    }
    size_t len;
    char *body = buf_steal(&b, &len);
    httpd_respond(q->hr, 200, "text/plain; version=0.0.4; charset=utf-8", body, len,
                  HTTPD_MEM_OWNED, NULL, 0);
}

/* Some endpoint the configuration refreshes in the background has not finished its first
 * fan-out (refresher.c): an orchestrator should send no traffic yet. */
static bool warming(const struct request *q)
{
    const struct config *cfg = q->site->cfg;
    if (cfg->cache_max_bytes == 0 || q->rt->env.cache == NULL)
        return false;
    for (size_t i = 0; i < cfg->nendpoints; i++)
        if (cfg->endpoints[i].cache.refresh_ms > 0 &&
            !cache_is_warm(q->rt->env.cache, cfg->endpoints[i].ident))
            return true;
    return false;
}

void builtin_serve(struct request *q)
{
    switch (q->route) {
    case REQUEST_HEALTHZ:
        answer_static(q, 200, "{\"status\":\"ok\"}");
        break;
    case REQUEST_READYZ:
        if (atomic_load(q->rt->env.draining))
            answer_static(q, 503, "{\"status\":\"draining\"}");
        else if (warming(q))
            answer_static(q, 503, "{\"status\":\"warming\"}");
        else
            answer_static(q, 200, "{\"status\":\"ready\"}");
        break;
    case REQUEST_METRICS:
        serve_metrics(q);
        break;
    default:
        break;
    }
}
