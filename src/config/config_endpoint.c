/* One entry of "endpoints": its path and parameters, its backends with their placeholders and
 * the chains between them, its policy, cache, refresh and notification sink, and its identity
 * across reloads. */
#include "config_int.h"

#include "jsonptr.h"
#include "validate.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const backend_keys[] = {"name",           "url",      "timeout_ms", "headers",
                                           "max_body_bytes", "coalesce", "required",   "tls",
                                           "http2",          NULL};
static bool is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* The index of the parameter called name[0..n) in ep, or -1. */
static int find_param(const struct config_endpoint *ep, const char *name, size_t n)
{
    for (size_t i = 0; i < ep->nparams; i++)
        if (strlen(ep->params[i].name) == n && memcmp(ep->params[i].name, name, n) == 0)
            return (int)i;
    return -1;
}

/* Finds the {name} placeholders of be->url and resolves each to a path parameter of ep or to
 * {item}. They may stand only in the path or the query: a client must never choose the
 * scheme, host or port gatherd connects to. */
static int parse_refs(struct config__ctx *c, const char *key, const struct config_endpoint *ep,
                      struct config_backend *be)
{
    const char *url = be->url;
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t path_at = (size_t)(auth - url) + strcspn(auth, "/?#");
    const char *frag = strchr(url, '#');
    size_t n = 0;
    for (const char *p = url; *p; p++)
        n += *p == '{';
    if (n == 0 && strchr(url, '}') == NULL)
        return 0;
    if ((be->refs = calloc(n, sizeof *be->refs)) == NULL)
        return -ENOMEM;
    for (size_t i = 0; url[i] != '\0'; i++) {
        if (url[i] == '}')
            return config__read_fail(c, key, "has a '}' that closes no placeholder (at byte %zu)",
                                     i);
        if (url[i] != '{')
            continue;
        if (i < path_at || (frag != NULL && url + i > frag))
            return config__read_fail(
                c, key,
                "placeholder at byte %zu may stand only in the path or query, never in "
                "the scheme, host, port or fragment",
                i);
        size_t colon = i + 1 + strcspn(url + i + 1, ":{}");
        if (url[colon] == ':') { /* {backend:/pointer}, resolved once every backend is read */
            size_t close = colon + strcspn(url + colon, "{}");
            if (url[close] != '}' || colon == i + 1)
                return config__read_fail(c, key,
                                         "has a malformed reference at byte %zu: write "
                                         "{backend:/json/pointer}",
                                         i);
            struct config_ref *ref = &be->refs[be->nrefs++];
            *ref = (struct config_ref){i, close + 1, CONFIG_REF_DEP, 0, NULL};
            if ((ref->pointer = strndup(url + colon + 1, close - colon - 1)) == NULL)
                return -ENOMEM;
            if (!jsonptr_valid(ref->pointer))
                return config__read_fail(
                    c, key,
                    "%.*s: \"%s\" is not an RFC 6901 JSON pointer (empty, or /tokens "
                    "in which ~ is followed by 0 or 1)",
                    (int)(close + 1 - i), url + i, ref->pointer);
            i = close;
            continue;
        }
        size_t j = i + 1;
        while (is_name_char(url[j]))
            j++;
        if (url[j] != '}' || j == i + 1 || !is_name_start(url[i + 1]))
            return config__read_fail(
                c, key,
                "has a '{' that starts no placeholder (at byte %zu): write {name} with "
                "a name of letters, digits and '_'",
                i);
        const char *name = url + i + 1;
        size_t len = j - i - 1;
        int param = find_param(ep, name, len);
        if (len == 4 && memcmp(name, "item", 4) == 0 && param < 0) {
            if (ep->each_param == NULL)
                return config__read_fail(c, key, "{item} is only for endpoints with \"each\"");
            param = CONFIG_REF_ITEM;
        } else if (param < 0) {
            return config__read_fail(c, key,
                                     "unknown placeholder {%.*s}: not a parameter of the path %s",
                                     (int)len, name, ep->path);
        }
        be->refs[be->nrefs++] = (struct config_ref){i, j + 1, param, 0, NULL};
        i = j;
    }
    return 0;
}

static int parse_backend(struct config__ctx *c, json_t *obj, const char *path,
                         const struct config_endpoint *ep, size_t ep_max_body,
                         struct config_backend *be)
{
    const char *s;
    char k[256];
    long long n;
    int rc;

    if ((rc = config__read_check_object(c, obj, path, backend_keys)) < 0)
        return rc;
    if ((rc = config__read_string(c, obj, path, "name", true, &s)) < 0)
        return rc;
    config__read_join_key(k, sizeof k, path, "name");
    if (s[0] == '\0' || strlen(s) > 200 || config__read_has_ctl(s))
        return config__read_fail(c, k, "must be 1 to 200 printable characters");
    if ((be->name = strdup(s)) == NULL)
        return -ENOMEM;
    if ((rc = config__read_string(c, obj, path, "url", true, &s)) < 0)
        return rc;
    config__read_join_key(k, sizeof k, path, "url");
    if ((rc = config__read_expand(c, k, s, &be->url)) < 0)
        return rc;
    if ((rc = parse_refs(c, k, ep, be)) < 0)
        return rc;
    const char *problem = validate_url(be->url);
    if (problem != NULL)
        return config__read_fail(c, k, "%s", problem);
    if ((rc = config__tlskeys_backend(c, obj, path, be)) < 0)
        return rc;
    n = ep->timeout_ms;
    if ((rc = config__read_int(c, obj, path, "timeout_ms", 1, CONFIG_MAX_TIMEOUT_MS, &n)) < 0)
        return rc;
    if (n > ep->timeout_ms) {
        config__read_join_key(k, sizeof k, path, "timeout_ms");
        return config__read_fail(c, k,
                                 "%lld exceeds the endpoint's timeout_ms %ld and could never apply",
                                 n, ep->timeout_ms);
    }
    be->timeout_ms = (long)n;
    n = (long long)ep_max_body;
    if ((rc = config__read_int(c, obj, path, "max_body_bytes", 1, 1LL << 30, &n)) < 0)
        return rc;
    be->max_body_bytes = (size_t)n;
    be->coalesce = ep->coalesce;
    if ((rc = config__read_bool(c, obj, path, "coalesce", &be->coalesce)) < 0)
        return rc;
    if ((rc = config__read_bool(c, obj, path, "required", &be->required)) < 0)
        return rc;
    json_t *h = json_object_get(obj, "headers");
    if (h != NULL &&
        (rc = config__read_headers(c, h, path, &be->headers, &be->nheaders, false)) < 0)
        return rc;
    return 0;
}

static const char *const endpoint_keys[] = {
    "path", "timeout_ms", "backends", "max_body_bytes", "coalesce",   "on_error", "concurrency",
    "each", "params",     "notify",   "cache",          "refresh_ms", NULL};

/* The endpoint's "notify": where each of its requests is reported once answered. The sink is
 * reached as backends are (same URL rules), with the top level's tls and http2. */
static int parse_notify(struct config__ctx *c, json_t *obj, const char *path,
                        struct config_endpoint *ep)
{
    static const char *const notify_keys[] = {"url", "queue", "timeout_ms", "headers", NULL};
    json_t *nt = json_object_get(obj, "notify");
    char k[300], uk[320], why[1024];
    const char *s;
    long long n;
    int rc;
    if (nt == NULL)
        return 0;
    config__read_join_key(k, sizeof k, path, "notify");
    if ((rc = config__read_check_object(c, nt, k, notify_keys)) < 0)
        return rc;
    struct config_notify *no = ep->notify = calloc(1, sizeof *no);
    if (no == NULL)
        return -ENOMEM;
    if ((rc = config__read_string(c, nt, k, "url", true, &s)) < 0)
        return rc;
    config__read_join_key(uk, sizeof uk, k, "url");
    if ((rc = config__read_expand(c, uk, s, &no->url)) < 0)
        return rc;
    const char *problem = validate_url(no->url);
    if (problem != NULL)
        return config__read_fail(c, uk, "%s", problem);
    if (strpbrk(no->url, "{}") != NULL)
        return config__read_fail(
            c, uk, "must not contain placeholders: every request goes to the same sink");
    rc = config_tls_resolve(c->cfg->tls, &c->tls, uk, &no->url, &no->tls, why, sizeof why);
    if ((rc = config__tlskeys_fail(c, rc, why)) < 0)
        return rc;
    n = 1000;
    if ((rc = config__read_int(c, nt, k, "queue", 1, CONFIG_NOTIFY_QUEUE_MAX, &n)) < 0)
        return rc;
    no->queue = (size_t)n;
    n = 2000;
    if ((rc = config__read_int(c, nt, k, "timeout_ms", 1, CONFIG_MAX_TIMEOUT_MS, &n)) < 0)
        return rc;
    no->timeout_ms = (long)n;
    json_t *h = json_object_get(nt, "headers");
    if (h != NULL && (rc = config__read_headers(c, h, k, &no->headers, &no->nheaders, true)) < 0)
        return rc;
    return 0;
}

/* Resolves each backend's {name:/pointer} references to backends of ep, and refuses what could
 * never run: an unknown name, a backend reading itself, a cycle, a chain in an each endpoint. */
static int resolve_chains(struct config__ctx *c, const char *path, struct config_endpoint *ep)
{
    char k[320];
    for (size_t b = 0; b < ep->nbackends; b++) {
        struct config_backend *be = &ep->backends[b];
        snprintf(k, sizeof k, "%s.backends[%zu].url", path, b);
        for (size_t r = 0; r < be->nrefs; r++) {
            struct config_ref *ref = &be->refs[r];
            if (ref->param != CONFIG_REF_DEP)
                continue;
            const char *name = be->url + ref->start + 1;
            size_t len = strcspn(name, ":");
            size_t d = 0;
            while (d < ep->nbackends && !(strlen(ep->backends[d].name) == len &&
                                          memcmp(ep->backends[d].name, name, len) == 0))
                d++;
            int shown = (int)(ref->end - ref->start);
            if (ep->each_param != NULL)
                return config__read_fail(c, k, "%.*s: an endpoint with \"each\" cannot chain calls",
                                         shown, be->url + ref->start);
            if (d == ep->nbackends)
                return config__read_fail(c, k, "%.*s: no backend \"%.*s\" in this endpoint", shown,
                                         be->url + ref->start, (int)len, name);
            if (d == b)
                return config__read_fail(c, k, "%.*s: a backend cannot read its own answer", shown,
                                         be->url + ref->start);
            ref->dep = d;
            size_t seen = 0;
            while (seen < be->ndeps && be->deps[seen] != d)
                seen++;
            if (seen == be->ndeps) {
                if (be->deps == NULL && (be->deps = calloc(be->nrefs, sizeof *be->deps)) == NULL)
                    return -ENOMEM;
                be->deps[be->ndeps++] = d;
            }
        }
    }
    /* A cycle: depth-first, colouring backends 1 (on the path) and 2 (done). */
    unsigned char *colour = calloc(ep->nbackends, 1);
    size_t *stack = calloc(ep->nbackends, sizeof *stack),
           *next = calloc(ep->nbackends, sizeof *next);
    int rc = colour && stack && next ? 0 : -ENOMEM;
    for (size_t root = 0; rc == 0 && root < ep->nbackends; root++) {
        if (colour[root] != 0)
            continue;
        size_t depth = 0;
        stack[depth++] = root;
        colour[root] = 1;
        next[root] = 0;
        while (rc == 0 && depth > 0) {
            size_t v = stack[depth - 1];
            const struct config_backend *be = &ep->backends[v];
            if (next[v] == be->ndeps) {
                colour[v] = 2;
                depth--;
                continue;
            }
            size_t d = be->deps[next[v]++];
            if (colour[d] == 0) {
                colour[d] = 1;
                next[d] = 0;
                stack[depth++] = d;
            } else if (colour[d] == 1) {
                char cycle[512];
                size_t at = 0, from = 0;
                while (stack[from] != d)
                    from++;
                for (size_t i = from; i < depth && at < sizeof cycle; i++)
                    at += (size_t)snprintf(cycle + at, sizeof cycle - at, "%s -> ",
                                           ep->backends[stack[i]].name);
                if (at < sizeof cycle)
                    snprintf(cycle + at, sizeof cycle - at, "%s", ep->backends[d].name);
                snprintf(k, sizeof k, "%s.backends", path);
                rc = config__read_fail(
                    c, k, "the references form a cycle: %s (each reads the next one's answer)",
                    cycle);
            }
        }
    }
    free(colour);
    free(stack);
    free(next);
    return rc;
}

/* Splits a path with placeholders into segments; each {name} must be a whole segment and have a
 * pattern in "params" that compiles. Literal paths are left alone. */
static int parse_path_params(struct config__ctx *c, json_t *obj, const char *path,
                             struct config *cfg, struct config_endpoint *ep)
{
    char k[256], pk[320];
    json_t *params = json_object_get(obj, "params");
    config__read_join_key(k, sizeof k, path, "params");
    if (params != NULL && !json_is_object(params))
        return config__read_fail(c, k, "must be an object of parameter names to patterns");
    bool has_brace = strpbrk(ep->path, "{}") != NULL;
    if (!has_brace) {
        if (params != NULL && json_object_size(params) > 0)
            return config__read_fail(c, k, "the path %s has no placeholders", ep->path);
        return 0;
    }
    size_t nsegs = 0;
    for (const char *p = ep->path; *p; p++)
        nsegs += *p == '/';
    ep->segs = calloc(nsegs, sizeof *ep->segs);
    ep->params = calloc(nsegs, sizeof *ep->params);
    if (ep->segs == NULL || ep->params == NULL)
        return -ENOMEM;
    config__read_join_key(k, sizeof k, path, "path");
    for (const char *p = ep->path + 1;;) {
        size_t len = strcspn(p, "/");
        struct config_seg *seg = &ep->segs[ep->nsegs++];
        seg->param = -1;
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            const char *name = p + 1;
            size_t nlen = len - 2;
            bool valid = nlen > 0 && is_name_start(name[0]);
            for (size_t i = 0; valid && i < nlen; i++)
                valid = is_name_char(name[i]);
            if (!valid)
                return config__read_fail(
                    c, k, "placeholder %.*s: a name is letters, digits and '_'", (int)len, p);
            if (find_param(ep, name, nlen) >= 0)
                return config__read_fail(c, k, "placeholder {%.*s} appears twice", (int)nlen, name);
            if (nlen == 4 && memcmp(name, "item", 4) == 0)
                return config__read_fail(c, k,
                                         "{item} is the name of each's items and cannot be a path "
                                         "parameter");
            struct config_param *pa = &ep->params[ep->nparams];
            if ((pa->name = strndup(name, nlen)) == NULL)
                return -ENOMEM;
            pa->id = cfg->nparams_total++;
            seg->param = (int)ep->nparams++;
        } else if (memchr(p, '{', len) != NULL || memchr(p, '}', len) != NULL) {
            return config__read_fail(c, k, "a placeholder must be a whole path segment: %.*s",
                                     (int)len, p);
        } else if ((seg->text = strndup(p, len)) == NULL) {
            return -ENOMEM;
        }
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    config__read_join_key(k, sizeof k, path, "params");
    for (size_t i = 0; i < ep->nparams; i++) {
        struct config_param *pa = &ep->params[i];
        json_t *v = params ? json_object_get(params, pa->name) : NULL;
        snprintf(pk, sizeof pk, "%s.%s", k, pa->name);
        if (v == NULL)
            return config__read_fail(c, pk, "is required: every path placeholder needs a pattern");
        if (!json_is_string(v))
            return config__read_fail(c, pk,
                                     "must be a string (a POSIX extended regular expression)");
        const char *pat = json_string_value(v);
        size_t alen = strlen(pat) + 5;
        if ((pa->pattern = strdup(pat)) == NULL || (pa->anchored = malloc(alen)) == NULL)
            return -ENOMEM;
        snprintf(pa->anchored, alen, "^(%s)$", pat);
        regex_t re;
        int rc = regcomp(&re, pa->anchored, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[160];
            regerror(rc, &re, why, sizeof why);
            return config__read_fail(c, pk, "does not compile: %s", why);
        }
        regfree(&re);
    }
    const char *name;
    json_t *v;
    json_object_foreach(params, name, v)
    {
        if (find_param(ep, name, strlen(name)) < 0) {
            snprintf(pk, sizeof pk, "%s.%s", k, name);
            return config__read_fail(c, pk, "names no placeholder of the path %s", ep->path);
        }
    }
    return 0;
}

/* on_error, concurrency and each: how one request's calls run. */
static int parse_policy(struct config__ctx *c, json_t *obj, const char *path,
                        struct config_endpoint *ep)
{
    const char *s;
    char k[256];
    long long n;
    int rc;
    if ((rc = config__read_string(c, obj, path, "on_error", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        config__read_join_key(k, sizeof k, path, "on_error");
        if (strcmp(s, "partial") == 0)
            ep->on_error = CONFIG_ON_ERROR_PARTIAL;
        else if (strcmp(s, "fail_fast") == 0)
            ep->on_error = CONFIG_ON_ERROR_FAIL_FAST;
        else
            return config__read_fail(c, k, "must be \"partial\" or \"fail_fast\"");
    }
    n = 0;
    if ((rc = config__read_int(c, obj, path, "concurrency", 1, CONFIG_MAX_CONCURRENCY, &n)) < 0)
        return rc;
    ep->concurrency = (long)n;
    json_t *each = json_object_get(obj, "each");
    if (each == NULL)
        return 0;
    static const char *const each_keys[] = {"param", "max_items", NULL};
    config__read_join_key(k, sizeof k, path, "each");
    if ((rc = config__read_check_object(c, each, k, each_keys)) < 0)
        return rc;
    if ((rc = config__read_string(c, each, k, "param", true, &s)) < 0)
        return rc;
    if (s[0] == '\0' || strlen(s) > 100 || config__read_has_ctl(s) || strpbrk(s, "&=#") != NULL) {
        char pk[300];
        snprintf(pk, sizeof pk, "%s.param", k);
        return config__read_fail(c, pk, "must be a query parameter name of 1 to 100 characters");
    }
    if ((ep->each_param = strdup(s)) == NULL)
        return -ENOMEM;
    n = 100;
    if ((rc = config__read_int(c, each, k, "max_items", 1, CONFIG_MAX_ITEMS, &n)) < 0)
        return rc;
    ep->max_items = (size_t)n;
    return 0;
}

/* The "cache" object: ttl_ms (required, at least 1), stale_while_revalidate_ms and
 * stale_if_error_ms (default 0). */
static int parse_cache(struct config__ctx *c, json_t *obj, const char *path,
                       struct config_endpoint *ep)
{
    static const char *const cache_keys[] = {"ttl_ms", "stale_while_revalidate_ms",
                                             "stale_if_error_ms", NULL};
    json_t *v = json_object_get(obj, "cache");
    char k[256];
    long long n;
    int rc;
    if (v == NULL)
        return 0;
    config__read_join_key(k, sizeof k, path, "cache");
    if ((rc = config__read_check_object(c, v, k, cache_keys)) < 0)
        return rc;
    if (json_object_get(v, "ttl_ms") == NULL) {
        char tk[300];
        snprintf(tk, sizeof tk, "%s.ttl_ms", k);
        return config__read_fail(c, tk, "is required");
    }
    n = 0;
    if ((rc = config__read_int(c, v, k, "ttl_ms", 1, 86400000, &n)) < 0)
        return rc;
    ep->cache.ttl_ms = (long)n;
    n = 0;
    if ((rc = config__read_int(c, v, k, "stale_while_revalidate_ms", 0, 86400000, &n)) < 0)
        return rc;
    ep->cache.stale_while_revalidate_ms = (long)n;
    n = 0;
    if ((rc = config__read_int(c, v, k, "stale_if_error_ms", 0, 86400000, &n)) < 0)
        return rc;
    ep->cache.stale_if_error_ms = (long)n;
    return 0;
}

/* refresh_ms: only for a cached endpoint whose answer no request selects (a refresher has no
 * request to take parameter values or items from). */
static int parse_refresh(struct config__ctx *c, json_t *obj, const char *path,
                         struct config_endpoint *ep)
{
    char k[256];
    long long n = 0;
    int rc;
    if ((rc = config__read_int(c, obj, path, "refresh_ms", 100, 86400000, &n)) < 0 || n == 0)
        return rc;
    config__read_join_key(k, sizeof k, path, "refresh_ms");
    if (ep->cache.ttl_ms == 0)
        return config__read_fail(c, k, "requires \"cache\"");
    if (ep->nparams > 0 || ep->each_param != NULL)
        return config__read_fail(c, k,
                                 "is not allowed on an endpoint with path parameters or \"each\"");
    ep->cache.refresh_ms = (long)n;
    return 0;
}

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_json(uint64_t h, json_t *v)
{
    char *text = v != NULL ? json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    h = text != NULL ? fnv1a(h, text, strlen(text)) : fnv1a(h, "-", 1);
    free(text);
    return fnv1a(h, "\n", 1);
}

uint64_t config__endpoint_ident(json_t *root, json_t *obj, const struct config_endpoint *ep)
{
    uint64_t h = hash_json(14695981039346656037ull, obj);
    static const char *const inherited[] = {"max_body_bytes", "tls", "http2"};
    for (size_t i = 0; i < sizeof inherited / sizeof inherited[0]; i++)
        h = hash_json(h, json_object_get(root, inherited[i]));
    for (size_t b = 0; b < ep->nbackends; b++) {
        h = fnv1a(h, ep->backends[b].url, strlen(ep->backends[b].url) + 1);
        for (size_t i = 0; i < ep->backends[b].nheaders; i++)
            h = fnv1a(h, ep->backends[b].headers[i], strlen(ep->backends[b].headers[i]) + 1);
    }
    return h != 0 ? h : 1;
}

int config__endpoint_parse(struct config__ctx *c, json_t *obj, const char *path, struct config *cfg,
                           struct config_endpoint *ep)
{
    const char *s;
    char k[256];
    long long n;
    int rc;

    if ((rc = config__read_check_object(c, obj, path, endpoint_keys)) < 0)
        return rc;
    if ((rc = config__read_string(c, obj, path, "path", true, &s)) < 0)
        return rc;
    config__read_join_key(k, sizeof k, path, "path");
    const char *problem = validate_path(s);
    if (problem != NULL)
        return config__read_fail(c, k, "%s", problem);
    if ((ep->path = strdup(s)) == NULL)
        return -ENOMEM;
    n = 5000;
    if ((rc = config__read_int(c, obj, path, "timeout_ms", 1, CONFIG_MAX_TIMEOUT_MS, &n)) < 0)
        return rc;
    ep->timeout_ms = (long)n;
    n = (long long)cfg->max_body_bytes;
    if ((rc = config__read_int(c, obj, path, "max_body_bytes", 1, 1LL << 30, &n)) < 0)
        return rc;
    size_t max_body = (size_t)n;
    if ((rc = config__read_bool(c, obj, path, "coalesce", &ep->coalesce)) < 0)
        return rc;
    if ((rc = parse_policy(c, obj, path, ep)) < 0 ||
        (rc = parse_path_params(c, obj, path, cfg, ep)) < 0 ||
        (rc = parse_cache(c, obj, path, ep)) < 0)
        return rc;

    json_t *arr = json_object_get(obj, "backends");
    config__read_join_key(k, sizeof k, path, "backends");
    if (arr == NULL)
        return config__read_fail(c, k, "is required");
    if (!json_is_array(arr))
        return config__read_fail(c, k, "must be an array");
    if (json_array_size(arr) == 0)
        return config__read_fail(c, k, "must not be empty");
    if (json_array_size(arr) > CONFIG_MAX_BACKENDS)
        return config__read_fail(c, k, "must have at most %d entries", CONFIG_MAX_BACKENDS);
    if (cfg->nbackends_total + json_array_size(arr) > CONFIG_MAX_BACKENDS_TOTAL)
        return config__read_fail(
            c, k, "brings the backends of all endpoints to %zu, over the limit of %d",
            cfg->nbackends_total + json_array_size(arr), CONFIG_MAX_BACKENDS_TOTAL);
    ep->backends = calloc(json_array_size(arr), sizeof *ep->backends);
    if (ep->backends == NULL)
        return -ENOMEM;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char bk[300];
        snprintf(bk, sizeof bk, "%s[%zu]", k, i);
        ep->nbackends = i + 1;
        ep->backends[i].id = cfg->nbackends_total + i;
        if ((rc = parse_backend(c, v, bk, ep, max_body, &ep->backends[i])) < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (strcmp(ep->backends[j].name, ep->backends[i].name) == 0) {
                char nk[320];
                snprintf(nk, sizeof nk, "%s.name", bk);
                return config__read_fail(c, nk,
                                         "duplicate backend name \"%s\" (also backends[%zu])",
                                         ep->backends[i].name, j);
            }
    }
    if ((rc = resolve_chains(c, path, ep)) < 0 || (rc = parse_refresh(c, obj, path, ep)) < 0)
        return rc;
    if ((rc = parse_notify(c, obj, path, ep)) < 0)
        return rc;
    cfg->nnotify += ep->notify != NULL;
    if (ep->each_param != NULL) {
        config__read_join_key(k, sizeof k, path, "each");
        if (ep->nbackends != 1)
            return config__read_fail(
                c, k, "needs exactly one backend, whose url contains {item}; it has %zu",
                ep->nbackends);
        bool item = false;
        for (size_t r = 0; r < ep->backends[0].nrefs; r++)
            item |= ep->backends[0].refs[r].param == CONFIG_REF_ITEM;
        if (!item)
            return config__read_fail(c, k, "needs {item} in its backend's url");
    }
    cfg->nbackends_total += ep->nbackends;
    return 0;
}
