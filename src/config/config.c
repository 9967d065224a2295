/* The top level of the configuration and the public API (config.h): the top-level keys and
 * their defaults, reading a file, the reference count, and the one free of everything the
 * sections allocated, on failure as on the last unref. */
#include "config.h"
#include "config_int.h"

#include "laddr.h"
#include "netacl.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const top_keys[] = {"listen",
                                       "workers",
                                       "log_level",
                                       "access_log",
                                       "trusted_proxies",
                                       "worker_connections",
                                       "idle_timeout_ms",
                                       "header_timeout_ms",
                                       "send_timeout_ms",
                                       "max_unsent_answer_bytes",
                                       "drain_timeout_ms",
                                       "max_body_bytes",
                                       "upstream_max_host_connections",
                                       "upstream_idle_connections",
                                       "cache_max_bytes",
                                       "tls",
                                       "http2",
                                       "endpoints",
                                       NULL};

static int parse_top(struct config__ctx *c, json_t *root, struct config *cfg)
{
    const char *s;
    long long n;
    int rc;

    if (!json_is_object(root))
        return config__read_fail(c, "(top level)", "must be a JSON object");
    if ((rc = config__read_check_keys(c, root, "", top_keys)) < 0)
        return rc;
    if ((rc = config__read_string(c, root, "", "listen", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        if (s[0] == '\0')
            return config__read_fail(c, "listen", "must not be empty");
        const char *problem = laddr_check(s);
        if (problem != NULL)
            return config__read_fail(c, "listen", "\"%s\": %s", s, problem);
        if ((cfg->listen = strdup(s)) == NULL)
            return -ENOMEM;
    }
    n = 0;
    if ((rc = config__read_int(c, root, "", "workers", 0, 256, &n)) < 0)
        return rc;
    cfg->workers = (int)n;
    if ((rc = config__read_string(c, root, "", "log_level", false, &s)) < 0)
        return rc;
    if (s != NULL && loglevel_parse(s, &cfg->log_level) < 0)
        return config__read_fail(c, "log_level", "must be one of debug, info, warn, error");
    if ((rc = config__read_bool(c, root, "", "access_log", &cfg->access_log)) < 0)
        return rc;
    json_t *v = json_object_get(root, "trusted_proxies");
    if (v != NULL) {
        if (!json_is_array(v))
            return config__read_fail(c, "trusted_proxies",
                                     "must be an array of IP addresses or CIDRs");
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            char k[64];
            snprintf(k, sizeof k, "trusted_proxies[%zu]", i);
            if (!json_is_string(e))
                return config__read_fail(c, k, "must be a string");
            rc = netacl_add(&cfg->trusted_proxies, json_string_value(e));
            if (rc == -ENOMEM)
                return rc;
            if (rc < 0)
                return config__read_fail(c, k, "\"%s\" is not an IP address, a CIDR, or \"unix\"",
                                         json_string_value(e));
        }
    }
    n = cfg->worker_connections;
    if ((rc = config__read_int(c, root, "", "worker_connections", 1, 1000000, &n)) < 0)
        return rc;
    cfg->worker_connections = (unsigned)n;
    n = cfg->idle_timeout_ms;
    if ((rc = config__read_int(c, root, "", "idle_timeout_ms", 100, 3600000, &n)) < 0)
        return rc;
    cfg->idle_timeout_ms = (long)n;
    n = cfg->header_timeout_ms;
    if ((rc = config__read_int(c, root, "", "header_timeout_ms", 100, 3600000, &n)) < 0)
        return rc;
    cfg->header_timeout_ms = (long)n;
    n = cfg->send_timeout_ms;
    if ((rc = config__read_int(c, root, "", "send_timeout_ms", 100, 3600000, &n)) < 0)
        return rc;
    cfg->send_timeout_ms = (long)n;
    n = (long long)cfg->max_unsent_answer_bytes;
    if ((rc = config__read_int(c, root, "", "max_unsent_answer_bytes", 1024, 1LL << 40, &n)) < 0)
        return rc;
    cfg->max_unsent_answer_bytes = (size_t)n;
    n = cfg->drain_timeout_ms;
    if ((rc = config__read_int(c, root, "", "drain_timeout_ms", 0, 3600000, &n)) < 0)
        return rc;
    cfg->drain_timeout_ms = (long)n;
    n = (long long)cfg->max_body_bytes;
    if ((rc = config__read_int(c, root, "", "max_body_bytes", 1, 1LL << 30, &n)) < 0)
        return rc;
    cfg->max_body_bytes = (size_t)n;
    n = cfg->upstream_max_host_connections;
    if ((rc = config__read_int(c, root, "", "upstream_max_host_connections", 0, 100000, &n)) < 0)
        return rc;
    cfg->upstream_max_host_connections = (long)n;
    n = cfg->upstream_idle_connections;
    if ((rc = config__read_int(c, root, "", "upstream_idle_connections", 1, 100000, &n)) < 0)
        return rc;
    cfg->upstream_idle_connections = (long)n;
    n = (long long)cfg->cache_max_bytes;
    if ((rc = config__read_int(c, root, "", "cache_max_bytes", 0, 1LL << 40, &n)) < 0)
        return rc;
    cfg->cache_max_bytes = (size_t)n;

    char why[1024];
    config_tls_opts_init(&c->tls);
    if ((rc = config__tlskeys_parse(c, root, "", &c->tls, c->tls_at, &c->tls_pass)) < 0 ||
        (rc = config__tlskeys_fail(c, config_tls_load(cfg->tls, &c->tls, why, sizeof why), why)) <
            0)
        return rc;

    json_t *arr = json_object_get(root, "endpoints");
    if (arr == NULL)
        return config__read_fail(c, "endpoints", "is required");
    if (!json_is_array(arr))
        return config__read_fail(c, "endpoints", "must be an array");
    if (json_array_size(arr) == 0)
        return config__read_fail(c, "endpoints", "must not be empty");
    cfg->endpoints = calloc(json_array_size(arr), sizeof *cfg->endpoints);
    /* Each path's index, so that finding duplicates stays linear in the endpoints. */
    json_t *paths = json_object();
    if (cfg->endpoints == NULL || paths == NULL) {
        json_decref(paths);
        return -ENOMEM;
    }
    size_t i;
    json_array_foreach(arr, i, v)
    {
        char k[64];
        snprintf(k, sizeof k, "endpoints[%zu]", i);
        cfg->nendpoints = i + 1;
        cfg->endpoints[i].id = i;
        if ((rc = config__endpoint_parse(c, v, k, cfg, &cfg->endpoints[i])) < 0)
            break;
        cfg->endpoints[i].ident = config__endpoint_ident(root, v, &cfg->endpoints[i]);
        json_t *seen = json_object_get(paths, cfg->endpoints[i].path);
        if (seen != NULL) {
            char pk[80];
            snprintf(pk, sizeof pk, "%s.path", k);
            rc = config__read_fail(c, pk, "duplicate path \"%s\" (also endpoints[%lld])",
                                   cfg->endpoints[i].path, json_integer_value(seen));
            break;
        }
        if (json_object_set_new(paths, cfg->endpoints[i].path, json_integer((json_int_t)i)) < 0) {
            rc = -ENOMEM;
            break;
        }
    }
    json_decref(paths);
    return rc < 0 ? rc : 0;
}

static void free_config(struct config *cfg)
{
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        struct config_endpoint *ep = &cfg->endpoints[i];
        for (size_t j = 0; j < ep->nbackends; j++) {
            struct config_backend *be = &ep->backends[j];
            for (size_t h = 0; h < be->nheaders; h++)
                free(be->headers[h]);
            free(be->headers);
            free(be->name);
            free(be->url);
            for (size_t r = 0; r < be->nrefs; r++)
                free(be->refs[r].pointer);
            free(be->refs);
            free(be->deps);
        }
        for (size_t j = 0; j < ep->nparams; j++) {
            free(ep->params[j].name);
            free(ep->params[j].pattern);
            free(ep->params[j].anchored);
        }
        for (size_t j = 0; j < ep->nsegs; j++)
            free(ep->segs[j].text);
        free(ep->params);
        free(ep->segs);
        free(ep->each_param);
        free(ep->backends);
        if (ep->notify != NULL) {
            for (size_t h = 0; h < ep->notify->nheaders; h++)
                free(ep->notify->headers[h]);
            free(ep->notify->headers);
            free(ep->notify->url);
            free(ep->notify);
        }
        free(ep->path);
    }
    free(cfg->endpoints);
    config_tls_set_destroy(cfg->tls);
    for (size_t i = 0; i < cfg->nwarnings; i++) {
        free(cfg->warnings[i].key);
        free(cfg->warnings[i].detail);
    }
    free(cfg->warnings);
    netacl_destroy(cfg->trusted_proxies);
    free(cfg->listen);
    free(cfg);
}

int config_parse(const char *text, size_t len, const char *origin, struct config **out, char *err,
                 size_t errlen)
{
    struct config__ctx c = {.origin = origin, .err = err, .errlen = errlen};
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "%s: line %d, column %d: invalid JSON: %s", origin, jerr.line,
                 jerr.column, jerr.text);
        return -EINVAL;
    }
    struct config *cfg = calloc(1, sizeof *cfg);
    if (cfg == NULL) {
        json_decref(root);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    atomic_init(&cfg->refs, 1);
    cfg->log_level = LOGLEVEL_INFO;
    cfg->access_log = true;
    cfg->worker_connections = 10000;
    cfg->idle_timeout_ms = 30000;
    cfg->header_timeout_ms = 10000;
    cfg->send_timeout_ms = 30000;
    cfg->max_unsent_answer_bytes = 256u << 20;
    cfg->drain_timeout_ms = 10000;
    cfg->max_body_bytes = 8u << 20;
    cfg->upstream_max_host_connections = 256;
    cfg->upstream_idle_connections = 256;
    cfg->cache_max_bytes = 64u << 20;
    c.cfg = cfg;

    int rc = (cfg->tls = config_tls_set_create()) ? parse_top(&c, root, cfg) : -ENOMEM;
    json_decref(root);
    if (c.tls_pass != NULL) {
        memset(c.tls_pass, 0, strlen(c.tls_pass));
        free(c.tls_pass);
    }
    if (rc < 0) {
        if (rc == -ENOMEM)
            snprintf(err, errlen, "out of memory");
        free_config(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int config_load_file(const char *path, struct config **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -errno;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                snprintf(err, errlen, "%s: larger than 16 MiB", path);
                free(text);
                fclose(f);
                return -EFBIG;
            }
            char *grown = realloc(text, cap);
            if (grown == NULL) {
                free(text);
                fclose(f);
                snprintf(err, errlen, "out of memory");
                return -ENOMEM;
            }
            text = grown;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "%s: read error", path);
        free(text);
        return -EIO;
    }
    int rc = config_parse(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

int config_default(struct config **out, char *err, size_t errlen)
{
    return config_parse(config_default_json, strlen(config_default_json), "built-in", out, err,
                        errlen);
}

struct config *config_ref(struct config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void config_unref(struct config *cfg)
{
    if (cfg != NULL && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
        free_config(cfg);
}

const struct config_endpoint *config_find(const struct config *cfg, const char *path)
{
    for (size_t i = 0; i < cfg->nendpoints; i++)
        if (cfg->endpoints[i].segs == NULL && strcmp(cfg->endpoints[i].path, path) == 0)
            return &cfg->endpoints[i];
    return NULL;
}
