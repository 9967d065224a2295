#include "config.h"

#include "config_tls.h"
#include "envsubst.h"
#include "jsonptr.h"
#include "laddr.h"
#include "netacl.h"
#include "validate.h"

#include <errno.h>
#include <jansson.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parsing state: where errors go and the key path of what is being read. */
struct ctx {
    const char *origin;
    char *err;
    size_t errlen;
    struct config *cfg;
    struct config_tls_opts tls; /* the top level's tls and http2, which backends inherit */
    char *tls_pass;             /* its expanded client_key_passphrase, owned */
    char tls_at[320];           /* "tls", where the top level's values come from */
};

__attribute__((format(printf, 3, 4))) static int fail(struct ctx *c, const char *key,
                                                      const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s: %s", c->origin, key, reason);
    return -EINVAL;
}

/* Key paths are only for messages: a path too long for the buffer is cut, never overflowed. */
static void join_key(char *out, size_t outlen, const char *parent, const char *key)
{
    size_t n = 0;
    for (const char *p = parent; *p && n + 1 < outlen; p++)
        out[n++] = *p;
    if (parent[0] != '\0' && n + 1 < outlen)
        out[n++] = '.';
    for (const char *p = key; *p && n + 1 < outlen; p++)
        out[n++] = *p;
    out[n] = '\0';
}

static int check_keys(struct ctx *c, json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        const char *const *a = allowed;
        while (*a != NULL && strcmp(*a, key) != 0)
            a++;
        if (*a == NULL) {
            char k[256];
            join_key(k, sizeof k, path, key);
            return fail(c, k, "unknown key");
        }
    }
    return 0;
}

/* An object whose keys are all in `allowed`. */
static int check_object(struct ctx *c, json_t *obj, const char *path, const char *const *allowed)
{
    if (!json_is_object(obj))
        return fail(c, path, "must be an object");
    return check_keys(c, obj, path, allowed);
}

/* Reads an optional integer in [min, max]; leaves *out alone when absent. */
static int get_int(struct ctx *c, json_t *obj, const char *path, const char *key, long long min,
                   long long max, long long *out)
{
    json_t *v = json_object_get(obj, key);
    char k[256];
    if (v == NULL)
        return 0;
    join_key(k, sizeof k, path, key);
    if (!json_is_integer(v))
        return fail(c, k, "must be an integer");
    long long n = json_integer_value(v);
    if (n < min || n > max)
        return fail(c, k, "must be between %lld and %lld, got %lld", min, max, n);
    *out = n;
    return 0;
}

/* Reads an optional boolean; leaves *out alone when absent. */
static int get_bool(struct ctx *c, json_t *obj, const char *path, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);
    char k[256];
    if (v == NULL)
        return 0;
    join_key(k, sizeof k, path, key);
    if (!json_is_boolean(v))
        return fail(c, k, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int get_string(struct ctx *c, json_t *obj, const char *path, const char *key, bool required,
                      const char **out)
{
    json_t *v = json_object_get(obj, key);
    char k[256];
    join_key(k, sizeof k, path, key);
    if (v == NULL) {
        if (required)
            return fail(c, k, "is required");
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v))
        return fail(c, k, "must be a string");
    *out = json_string_value(v);
    if (strlen(*out) != json_string_length(v))
        return fail(c, k, "must not contain NUL characters");
    return 0;
}

static const char *lookup_env(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

static int expand(struct ctx *c, const char *key, const char *in, char **out)
{
    char why[300];
    int rc = envsubst_expand(in, lookup_env, NULL, out, why, sizeof why);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return fail(c, key, "%s", why);
    return 0;
}

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Headers that gatherd itself must control for the exchange to stay correct. */
static const char *const managed_headers[] = {
    "content-length", "transfer-encoding", "connection", "x-request-id", "host", NULL};

/* Headers of a POST's body, which gatherd sets on a notification. */
static const char *const posted_headers[] = {"content-type", "expect", NULL};

/* Reads obj into *out (n lines in *nout). `posted`: the headers are a notification's. */
static int parse_headers(struct ctx *c, json_t *obj, const char *path, char ***out, size_t *nout,
                         bool posted)
{
    char k[256];
    join_key(k, sizeof k, path, "headers");
    if (!json_is_object(obj))
        return fail(c, k, "must be an object of header names to string values");
    char **headers = *out = calloc(json_object_size(obj) + 1, sizeof *headers);
    if (headers == NULL)
        return -ENOMEM;
    const char *name;
    json_t *val;
    json_object_foreach(obj, name, val)
    {
        char hk[512];
        snprintf(hk, sizeof hk, "%s.%s", k, name);
        if (name[0] == '\0')
            return fail(c, k, "header names must not be empty");
        for (const char *q = name; *q; q++)
            if (!validate_tchar(*q))
                return fail(c, hk, "is not a valid header name");
        for (const char *const *m = managed_headers; *m; m++)
            if (strcasecmp(*m, name) == 0)
                return fail(c, hk, "is set by gatherd and cannot be configured");
        for (const char *const *m = posted_headers; posted && *m; m++)
            if (strcasecmp(*m, name) == 0)
                return fail(c, hk, "is set by gatherd and cannot be configured");
        if (!json_is_string(val))
            return fail(c, hk, "must be a string");
        char *value;
        int rc = expand(c, hk, json_string_value(val), &value);
        if (rc < 0)
            return rc;
        if (has_ctl(value)) {
            free(value);
            return fail(c, hk, "must not contain control characters (after ${VAR} expansion)");
        }
        size_t len = strlen(name) + 2 + strlen(value) + 1;
        char *line = malloc(len);
        if (line == NULL) {
            free(value);
            return -ENOMEM;
        }
        snprintf(line, len, "%s: %s", name, value);
        free(value);
        headers[(*nout)++] = line;
    }
    return 0;
}

static const char *const backend_keys[] = {"name",           "url",      "timeout_ms", "headers",
                                           "max_body_bytes", "coalesce", "required",   "tls",
                                           "http2",          NULL};

/* TLS and HTTP/2 (config_tls.h). The top level's tls and http2 are the defaults of every
 * backend; a backend's own replace them key by key. Only syntax and placement are checked here:
 * files, schemes and names are config_tls_resolve()'s. */

static const char *const tls_keys[] = {
    "ca_file",     "verify",      "client_cert", "client_key", "client_key_passphrase",
    "min_version", "server_name", NULL};

/* A tls file key: a non-empty string, recorded with the key path `at` it was written under. */
static int get_tls_file(struct ctx *c, json_t *obj, const char *at, const char *key,
                        const char **out, const char **out_at)
{
    const char *s;
    int rc = get_string(c, obj, at, key, false, &s);
    if (rc < 0 || s == NULL)
        return rc;
    if (s[0] == '\0') {
        char k[360];
        join_key(k, sizeof k, at, key);
        return fail(c, k, "must name a file");
    }
    *out = s;
    *out_at = at;
    return 0;
}

/* Reads parent's "tls" and "http2" over *o. `path` is parent's key path ("" at the top level);
 * `at` (at least 320 bytes) receives the tls object's and must outlive o; an expanded passphrase
 * lands in *pass, which the caller frees. */
static int parse_tls(struct ctx *c, json_t *parent, const char *path, struct config_tls_opts *o,
                     char *at, char **pass)
{
    bool top = path[0] == '\0';
    const char *s;
    char k[360];
    int rc;
    if ((rc = get_string(c, parent, path, "http2", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        join_key(k, sizeof k, path, "http2");
        if (strcmp(s, "auto") == 0)
            o->http2 = CONFIG_HTTP2_AUTO;
        else if (strcmp(s, "off") == 0)
            o->http2 = CONFIG_HTTP2_OFF;
        else if (strcmp(s, "prior_knowledge") == 0)
            o->http2 = CONFIG_HTTP2_PRIOR_KNOWLEDGE;
        else
            return fail(c, k, "must be \"auto\", \"off\" or \"prior_knowledge\"");
        o->http2_at = top ? NULL : path;
    }
    json_t *t = json_object_get(parent, "tls");
    join_key(at, 320, path, "tls");
    if (t == NULL)
        return 0;
    if ((rc = check_object(c, t, at, tls_keys)) < 0)
        return rc;
    o->own_at = top ? NULL : at;
    if ((rc = get_tls_file(c, t, at, "ca_file", &o->ca_file, &o->ca_file_at)) < 0 ||
        (rc = get_tls_file(c, t, at, "client_cert", &o->client_cert, &o->client_cert_at)) < 0 ||
        (rc = get_tls_file(c, t, at, "client_key", &o->client_key, &o->client_key_at)) < 0)
        return rc;
    bool verify = o->verify;
    if ((rc = get_bool(c, t, at, "verify", &verify)) < 0)
        return rc;
    join_key(k, sizeof k, at, "verify");
    if (top && !verify)
        return fail(c, k, "false is allowed only per backend (endpoints[].backends[].tls)");
    o->verify = verify;
    if ((rc = get_string(c, t, at, "client_key_passphrase", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        join_key(k, sizeof k, at, "client_key_passphrase");
        if ((rc = expand(c, k, s, pass)) < 0)
            return rc;
        o->passphrase = *pass;
    }
    if ((rc = get_string(c, t, at, "min_version", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        join_key(k, sizeof k, at, "min_version");
        if (strcmp(s, "1.2") == 0)
            o->min_version = 12;
        else if (strcmp(s, "1.3") == 0)
            o->min_version = 13;
        else
            return fail(c, k, "must be \"1.2\" or \"1.3\"");
    }
    if ((rc = get_string(c, t, at, "server_name", false, &s)) < 0)
        return rc;
    join_key(k, sizeof k, at, "server_name");
    if (s != NULL && top)
        return fail(c, k,
                    "is only for a backend (endpoints[].backends[].tls), never the top "
                    "level");
    o->server_name = s;
    return 0;
}

/* An error from config_tls.c ("key: reason"), prefixed with the origin as fail() does. */
static int fail_tls(struct ctx *c, int rc, const char *why)
{
    if (rc == -EINVAL)
        snprintf(c->err, c->errlen, "%s: %s", c->origin, why);
    return rc;
}

/* The warnings a valid configuration still deserves (config.h). */
__attribute__((format(printf, 3, 4))) static int warn(struct config *cfg, const char *key,
                                                      const char *fmt, ...)
{
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    struct config_warning *grown =
        realloc(cfg->warnings, (cfg->nwarnings + 1) * sizeof *cfg->warnings);
    if (grown == NULL)
        return -ENOMEM;
    cfg->warnings = grown;
    struct config_warning *w = &cfg->warnings[cfg->nwarnings];
    if ((w->key = strdup(key)) == NULL || (w->detail = strdup(detail)) == NULL) {
        free(w->key);
        return -ENOMEM;
    }
    cfg->nwarnings++;
    return 0;
}

/* The backend's connection profile: its own tls and http2 over the top level's. May rewrite
 * be->url for server_name; placeholders, all after the authority, move with it. */
static int parse_backend_tls(struct ctx *c, json_t *obj, const char *path,
                             struct config_backend *be)
{
    struct config_tls_opts o = c->tls;
    char at[320], k[360], why[1024];
    char *pass = NULL;
    int rc = parse_tls(c, obj, path, &o, at, &pass);
    if (rc == 0) {
        size_t before = strlen(be->url);
        join_key(k, sizeof k, path, "url");
        rc = config_tls_resolve(c->cfg->tls, &o, k, &be->url, &be->tls, why, sizeof why);
        rc = fail_tls(c, rc, why);
        for (size_t r = 0; rc == 0 && r < be->nrefs; r++) {
            be->refs[r].start = be->refs[r].start + strlen(be->url) - before;
            be->refs[r].end = be->refs[r].end + strlen(be->url) - before;
        }
    }
    if (pass != NULL) {
        memset(pass, 0, strlen(pass));
        free(pass);
    }
    if (rc == 0 && be->tls->https && !be->tls->verify) {
        join_key(k, sizeof k, path, "tls.verify");
        rc = warn(c->cfg, k,
                  "false: the certificate of backend \"%s\" is not checked, so anyone on the "
                  "path can read and change its answers",
                  be->name);
    }
    return rc;
}

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
static int parse_refs(struct ctx *c, const char *key, const struct config_endpoint *ep,
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
            return fail(c, key, "has a '}' that closes no placeholder (at byte %zu)", i);
        if (url[i] != '{')
            continue;
        if (i < path_at || (frag != NULL && url + i > frag))
            return fail(c, key,
                        "placeholder at byte %zu may stand only in the path or query, never in "
                        "the scheme, host, port or fragment",
                        i);
        size_t colon = i + 1 + strcspn(url + i + 1, ":{}");
        if (url[colon] == ':') { /* {backend:/pointer}, resolved once every backend is read */
            size_t close = colon + strcspn(url + colon, "{}");
            if (url[close] != '}' || colon == i + 1)
                return fail(c, key,
                            "has a malformed reference at byte %zu: write "
                            "{backend:/json/pointer}",
                            i);
            struct config_ref *ref = &be->refs[be->nrefs++];
            *ref = (struct config_ref){i, close + 1, CONFIG_REF_DEP, 0, NULL};
            if ((ref->pointer = strndup(url + colon + 1, close - colon - 1)) == NULL)
                return -ENOMEM;
            if (!jsonptr_valid(ref->pointer))
                return fail(c, key,
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
            return fail(c, key,
                        "has a '{' that starts no placeholder (at byte %zu): write {name} with "
                        "a name of letters, digits and '_'",
                        i);
        const char *name = url + i + 1;
        size_t len = j - i - 1;
        int param = find_param(ep, name, len);
        if (len == 4 && memcmp(name, "item", 4) == 0 && param < 0) {
            if (ep->each_param == NULL)
                return fail(c, key, "{item} is only for endpoints with \"each\"");
            param = CONFIG_REF_ITEM;
        } else if (param < 0) {
            return fail(c, key, "unknown placeholder {%.*s}: not a parameter of the path %s",
                        (int)len, name, ep->path);
        }
        be->refs[be->nrefs++] = (struct config_ref){i, j + 1, param, 0, NULL};
        i = j;
    }
    return 0;
}

static int parse_backend(struct ctx *c, json_t *obj, const char *path,
                         const struct config_endpoint *ep, size_t ep_max_body,
                         struct config_backend *be)
{
    const char *s;
    char k[256];
    long long n;
    int rc;

    if ((rc = check_object(c, obj, path, backend_keys)) < 0)
        return rc;
    if ((rc = get_string(c, obj, path, "name", true, &s)) < 0)
        return rc;
    join_key(k, sizeof k, path, "name");
    if (s[0] == '\0' || strlen(s) > 200 || has_ctl(s))
        return fail(c, k, "must be 1 to 200 printable characters");
    if ((be->name = strdup(s)) == NULL)
        return -ENOMEM;
    if ((rc = get_string(c, obj, path, "url", true, &s)) < 0)
        return rc;
    join_key(k, sizeof k, path, "url");
    if ((rc = expand(c, k, s, &be->url)) < 0)
        return rc;
    if ((rc = parse_refs(c, k, ep, be)) < 0)
        return rc;
    const char *problem = validate_url(be->url);
    if (problem != NULL)
        return fail(c, k, "%s", problem);
    if ((rc = parse_backend_tls(c, obj, path, be)) < 0)
        return rc;
    n = ep->timeout_ms;
    if ((rc = get_int(c, obj, path, "timeout_ms", 1, CONFIG_MAX_TIMEOUT_MS, &n)) < 0)
        return rc;
    if (n > ep->timeout_ms) {
        join_key(k, sizeof k, path, "timeout_ms");
        return fail(c, k, "%lld exceeds the endpoint's timeout_ms %ld and could never apply", n,
                    ep->timeout_ms);
    }
    be->timeout_ms = (long)n;
    n = (long long)ep_max_body;
    if ((rc = get_int(c, obj, path, "max_body_bytes", 1, 1LL << 30, &n)) < 0)
        return rc;
    be->max_body_bytes = (size_t)n;
    be->coalesce = ep->coalesce;
    if ((rc = get_bool(c, obj, path, "coalesce", &be->coalesce)) < 0)
        return rc;
    if ((rc = get_bool(c, obj, path, "required", &be->required)) < 0)
        return rc;
    json_t *h = json_object_get(obj, "headers");
    if (h != NULL && (rc = parse_headers(c, h, path, &be->headers, &be->nheaders, false)) < 0)
        return rc;
    return 0;
}

static const char *const endpoint_keys[] = {
    "path", "timeout_ms", "backends", "max_body_bytes", "coalesce",   "on_error", "concurrency",
    "each", "params",     "notify",   "cache",          "refresh_ms", NULL};

/* The endpoint's "notify": where each of its requests is reported once answered. The sink is
 * reached as backends are (same URL rules), with the top level's tls and http2. */
static int parse_notify(struct ctx *c, json_t *obj, const char *path, struct config_endpoint *ep)
{
    static const char *const notify_keys[] = {"url", "queue", "timeout_ms", "headers", NULL};
    json_t *nt = json_object_get(obj, "notify");
    char k[300], uk[320], why[1024];
    const char *s;
    long long n;
    int rc;
    if (nt == NULL)
        return 0;
    join_key(k, sizeof k, path, "notify");
    if ((rc = check_object(c, nt, k, notify_keys)) < 0)
        return rc;
    struct config_notify *no = ep->notify = calloc(1, sizeof *no);
    if (no == NULL)
        return -ENOMEM;
    if ((rc = get_string(c, nt, k, "url", true, &s)) < 0)
        return rc;
    join_key(uk, sizeof uk, k, "url");
    if ((rc = expand(c, uk, s, &no->url)) < 0)
        return rc;
    const char *problem = validate_url(no->url);
    if (problem != NULL)
        return fail(c, uk, "%s", problem);
    if (strpbrk(no->url, "{}") != NULL)
        return fail(c, uk, "must not contain placeholders: every request goes to the same sink");
    rc = config_tls_resolve(c->cfg->tls, &c->tls, uk, &no->url, &no->tls, why, sizeof why);
    if ((rc = fail_tls(c, rc, why)) < 0)
        return rc;
    n = 1000;
    if ((rc = get_int(c, nt, k, "queue", 1, CONFIG_NOTIFY_QUEUE_MAX, &n)) < 0)
        return rc;
    no->queue = (size_t)n;
    n = 2000;
    if ((rc = get_int(c, nt, k, "timeout_ms", 1, CONFIG_MAX_TIMEOUT_MS, &n)) < 0)
        return rc;
    no->timeout_ms = (long)n;
    json_t *h = json_object_get(nt, "headers");
    if (h != NULL && (rc = parse_headers(c, h, k, &no->headers, &no->nheaders, true)) < 0)
        return rc;
    return 0;
}

/* Resolves each backend's {name:/pointer} references to backends of ep, and refuses what could
 * never run: an unknown name, a backend reading itself, a cycle, a chain in an each endpoint. */
static int resolve_chains(struct ctx *c, const char *path, struct config_endpoint *ep)
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
                return fail(c, k, "%.*s: an endpoint with \"each\" cannot chain calls", shown,
                            be->url + ref->start);
            if (d == ep->nbackends)
                return fail(c, k, "%.*s: no backend \"%.*s\" in this endpoint", shown,
                            be->url + ref->start, (int)len, name);
            if (d == b)
                return fail(c, k, "%.*s: a backend cannot read its own answer", shown,
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
                rc =
                    fail(c, k, "the references form a cycle: %s (each reads the next one's answer)",
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
static int parse_path_params(struct ctx *c, json_t *obj, const char *path, struct config *cfg,
                             struct config_endpoint *ep)
{
    char k[256], pk[320];
    json_t *params = json_object_get(obj, "params");
    join_key(k, sizeof k, path, "params");
    if (params != NULL && !json_is_object(params))
        return fail(c, k, "must be an object of parameter names to patterns");
    bool has_brace = strpbrk(ep->path, "{}") != NULL;
    if (!has_brace) {
        if (params != NULL && json_object_size(params) > 0)
            return fail(c, k, "the path %s has no placeholders", ep->path);
        return 0;
    }
    size_t nsegs = 0;
    for (const char *p = ep->path; *p; p++)
        nsegs += *p == '/';
    ep->segs = calloc(nsegs, sizeof *ep->segs);
    ep->params = calloc(nsegs, sizeof *ep->params);
    if (ep->segs == NULL || ep->params == NULL)
        return -ENOMEM;
    join_key(k, sizeof k, path, "path");
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
                return fail(c, k, "placeholder %.*s: a name is letters, digits and '_'", (int)len,
                            p);
            if (find_param(ep, name, nlen) >= 0)
                return fail(c, k, "placeholder {%.*s} appears twice", (int)nlen, name);
            if (nlen == 4 && memcmp(name, "item", 4) == 0)
                return fail(c, k,
                            "{item} is the name of each's items and cannot be a path "
                            "parameter");
            struct config_param *pa = &ep->params[ep->nparams];
            if ((pa->name = strndup(name, nlen)) == NULL)
                return -ENOMEM;
            pa->id = cfg->nparams_total++;
            seg->param = (int)ep->nparams++;
        } else if (memchr(p, '{', len) != NULL || memchr(p, '}', len) != NULL) {
            return fail(c, k, "a placeholder must be a whole path segment: %.*s", (int)len, p);
        } else if ((seg->text = strndup(p, len)) == NULL) {
            return -ENOMEM;
        }
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    join_key(k, sizeof k, path, "params");
    for (size_t i = 0; i < ep->nparams; i++) {
        struct config_param *pa = &ep->params[i];
        json_t *v = params ? json_object_get(params, pa->name) : NULL;
        snprintf(pk, sizeof pk, "%s.%s", k, pa->name);
        if (v == NULL)
            return fail(c, pk, "is required: every path placeholder needs a pattern");
        if (!json_is_string(v))
            return fail(c, pk, "must be a string (a POSIX extended regular expression)");
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
            return fail(c, pk, "does not compile: %s", why);
        }
        regfree(&re);
    }
    const char *name;
    json_t *v;
    json_object_foreach(params, name, v)
    {
        if (find_param(ep, name, strlen(name)) < 0) {
            snprintf(pk, sizeof pk, "%s.%s", k, name);
            return fail(c, pk, "names no placeholder of the path %s", ep->path);
        }
    }
    return 0;
}

/* on_error, concurrency and each: how one request's calls run. */
static int parse_policy(struct ctx *c, json_t *obj, const char *path, struct config_endpoint *ep)
{
    const char *s;
    char k[256];
    long long n;
    int rc;
    if ((rc = get_string(c, obj, path, "on_error", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        join_key(k, sizeof k, path, "on_error");
        if (strcmp(s, "partial") == 0)
            ep->on_error = CONFIG_ON_ERROR_PARTIAL;
        else if (strcmp(s, "fail_fast") == 0)
            ep->on_error = CONFIG_ON_ERROR_FAIL_FAST;
        else
            return fail(c, k, "must be \"partial\" or \"fail_fast\"");
    }
    n = 0;
    if ((rc = get_int(c, obj, path, "concurrency", 1, CONFIG_MAX_CONCURRENCY, &n)) < 0)
        return rc;
    ep->concurrency = (long)n;
    json_t *each = json_object_get(obj, "each");
    if (each == NULL)
        return 0;
    static const char *const each_keys[] = {"param", "max_items", NULL};
    join_key(k, sizeof k, path, "each");
    if ((rc = check_object(c, each, k, each_keys)) < 0)
        return rc;
    if ((rc = get_string(c, each, k, "param", true, &s)) < 0)
        return rc;
    if (s[0] == '\0' || strlen(s) > 100 || has_ctl(s) || strpbrk(s, "&=#") != NULL) {
        char pk[300];
        snprintf(pk, sizeof pk, "%s.param", k);
        return fail(c, pk, "must be a query parameter name of 1 to 100 characters");
    }
    if ((ep->each_param = strdup(s)) == NULL)
        return -ENOMEM;
    n = 100;
    if ((rc = get_int(c, each, k, "max_items", 1, CONFIG_MAX_ITEMS, &n)) < 0)
        return rc;
    ep->max_items = (size_t)n;
    return 0;
}

/* The "cache" object: ttl_ms (required, at least 1), stale_while_revalidate_ms and
 * stale_if_error_ms (default 0). */
static int parse_cache(struct ctx *c, json_t *obj, const char *path, struct config_endpoint *ep)
{
    static const char *const cache_keys[] = {"ttl_ms", "stale_while_revalidate_ms",
                                             "stale_if_error_ms", NULL};
    json_t *v = json_object_get(obj, "cache");
    char k[256];
    long long n;
    int rc;
    if (v == NULL)
        return 0;
    join_key(k, sizeof k, path, "cache");
    if ((rc = check_object(c, v, k, cache_keys)) < 0)
        return rc;
    if (json_object_get(v, "ttl_ms") == NULL) {
        char tk[300];
        snprintf(tk, sizeof tk, "%s.ttl_ms", k);
        return fail(c, tk, "is required");
    }
    n = 0;
    if ((rc = get_int(c, v, k, "ttl_ms", 1, 86400000, &n)) < 0)
        return rc;
    ep->cache.ttl_ms = (long)n;
    n = 0;
    if ((rc = get_int(c, v, k, "stale_while_revalidate_ms", 0, 86400000, &n)) < 0)
        return rc;
    ep->cache.stale_while_revalidate_ms = (long)n;
    n = 0;
    if ((rc = get_int(c, v, k, "stale_if_error_ms", 0, 86400000, &n)) < 0)
        return rc;
    ep->cache.stale_if_error_ms = (long)n;
    return 0;
}

/* refresh_ms: only for a cached endpoint whose answer no request selects (a refresher has no
 * request to take parameter values or items from). */
static int parse_refresh(struct ctx *c, json_t *obj, const char *path, struct config_endpoint *ep)
{
    char k[256];
    long long n = 0;
    int rc;
    if ((rc = get_int(c, obj, path, "refresh_ms", 100, 86400000, &n)) < 0 || n == 0)
        return rc;
    join_key(k, sizeof k, path, "refresh_ms");
    if (ep->cache.ttl_ms == 0)
        return fail(c, k, "requires \"cache\"");
    if (ep->nparams > 0 || ep->each_param != NULL)
        return fail(c, k, "is not allowed on an endpoint with path parameters or \"each\"");
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

/* The endpoint's identity (config.h): what a reload compares to keep its cached answers.
 * Never 0, which no key begins with. */
static uint64_t endpoint_ident(json_t *root, json_t *obj, const struct config_endpoint *ep)
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

static int parse_endpoint(struct ctx *c, json_t *obj, const char *path, struct config *cfg,
                          struct config_endpoint *ep)
{
    const char *s;
    char k[256];
    long long n;
    int rc;

    if ((rc = check_object(c, obj, path, endpoint_keys)) < 0)
        return rc;
    if ((rc = get_string(c, obj, path, "path", true, &s)) < 0)
        return rc;
    join_key(k, sizeof k, path, "path");
    const char *problem = validate_path(s);
    if (problem != NULL)
        return fail(c, k, "%s", problem);
    if ((ep->path = strdup(s)) == NULL)
        return -ENOMEM;
    n = 5000;
    if ((rc = get_int(c, obj, path, "timeout_ms", 1, CONFIG_MAX_TIMEOUT_MS, &n)) < 0)
        return rc;
    ep->timeout_ms = (long)n;
    n = (long long)cfg->max_body_bytes;
    if ((rc = get_int(c, obj, path, "max_body_bytes", 1, 1LL << 30, &n)) < 0)
        return rc;
    size_t max_body = (size_t)n;
    if ((rc = get_bool(c, obj, path, "coalesce", &ep->coalesce)) < 0)
        return rc;
    if ((rc = parse_policy(c, obj, path, ep)) < 0 ||
        (rc = parse_path_params(c, obj, path, cfg, ep)) < 0 ||
        (rc = parse_cache(c, obj, path, ep)) < 0)
        return rc;

    json_t *arr = json_object_get(obj, "backends");
    join_key(k, sizeof k, path, "backends");
    if (arr == NULL)
        return fail(c, k, "is required");
    if (!json_is_array(arr))
        return fail(c, k, "must be an array");
    if (json_array_size(arr) == 0)
        return fail(c, k, "must not be empty");
    if (json_array_size(arr) > CONFIG_MAX_BACKENDS)
        return fail(c, k, "must have at most %d entries", CONFIG_MAX_BACKENDS);
    if (cfg->nbackends_total + json_array_size(arr) > CONFIG_MAX_BACKENDS_TOTAL)
        return fail(c, k, "brings the backends of all endpoints to %zu, over the limit of %d",
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
                return fail(c, nk, "duplicate backend name \"%s\" (also backends[%zu])",
                            ep->backends[i].name, j);
            }
    }
    if ((rc = resolve_chains(c, path, ep)) < 0 || (rc = parse_refresh(c, obj, path, ep)) < 0)
        return rc;
    if ((rc = parse_notify(c, obj, path, ep)) < 0)
        return rc;
    cfg->nnotify += ep->notify != NULL;
    if (ep->each_param != NULL) {
        join_key(k, sizeof k, path, "each");
        if (ep->nbackends != 1)
            return fail(c, k, "needs exactly one backend, whose url contains {item}; it has %zu",
                        ep->nbackends);
        bool item = false;
        for (size_t r = 0; r < ep->backends[0].nrefs; r++)
            item |= ep->backends[0].refs[r].param == CONFIG_REF_ITEM;
        if (!item)
            return fail(c, k, "needs {item} in its backend's url");
    }
    cfg->nbackends_total += ep->nbackends;
    return 0;
}

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

static int parse_top(struct ctx *c, json_t *root, struct config *cfg)
{
    const char *s;
    long long n;
    int rc;

    if (!json_is_object(root))
        return fail(c, "(top level)", "must be a JSON object");
    if ((rc = check_keys(c, root, "", top_keys)) < 0)
        return rc;
    if ((rc = get_string(c, root, "", "listen", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        if (s[0] == '\0')
            return fail(c, "listen", "must not be empty");
        const char *problem = laddr_check(s);
        if (problem != NULL)
            return fail(c, "listen", "\"%s\": %s", s, problem);
        if ((cfg->listen = strdup(s)) == NULL)
            return -ENOMEM;
    }
    n = 0;
    if ((rc = get_int(c, root, "", "workers", 0, 256, &n)) < 0)
        return rc;
    cfg->workers = (int)n;
    if ((rc = get_string(c, root, "", "log_level", false, &s)) < 0)
        return rc;
    if (s != NULL && loglevel_parse(s, &cfg->log_level) < 0)
        return fail(c, "log_level", "must be one of debug, info, warn, error");
    if ((rc = get_bool(c, root, "", "access_log", &cfg->access_log)) < 0)
        return rc;
    json_t *v = json_object_get(root, "trusted_proxies");
    if (v != NULL) {
        if (!json_is_array(v))
            return fail(c, "trusted_proxies", "must be an array of IP addresses or CIDRs");
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            char k[64];
            snprintf(k, sizeof k, "trusted_proxies[%zu]", i);
            if (!json_is_string(e))
                return fail(c, k, "must be a string");
            rc = netacl_add(&cfg->trusted_proxies, json_string_value(e));
            if (rc == -ENOMEM)
                return rc;
            if (rc < 0)
                return fail(c, k, "\"%s\" is not an IP address, a CIDR, or \"unix\"",
                            json_string_value(e));
        }
    }
    n = cfg->worker_connections;
    if ((rc = get_int(c, root, "", "worker_connections", 1, 1000000, &n)) < 0)
        return rc;
    cfg->worker_connections = (unsigned)n;
    n = cfg->idle_timeout_ms;
    if ((rc = get_int(c, root, "", "idle_timeout_ms", 100, 3600000, &n)) < 0)
        return rc;
    cfg->idle_timeout_ms = (long)n;
    n = cfg->header_timeout_ms;
    if ((rc = get_int(c, root, "", "header_timeout_ms", 100, 3600000, &n)) < 0)
        return rc;
    cfg->header_timeout_ms = (long)n;
    n = cfg->send_timeout_ms;
    if ((rc = get_int(c, root, "", "send_timeout_ms", 100, 3600000, &n)) < 0)
        return rc;
    cfg->send_timeout_ms = (long)n;
    n = (long long)cfg->max_unsent_answer_bytes;
    if ((rc = get_int(c, root, "", "max_unsent_answer_bytes", 1024, 1LL << 40, &n)) < 0)
        return rc;
    cfg->max_unsent_answer_bytes = (size_t)n;
    n = cfg->drain_timeout_ms;
    if ((rc = get_int(c, root, "", "drain_timeout_ms", 0, 3600000, &n)) < 0)
        return rc;
    cfg->drain_timeout_ms = (long)n;
    n = (long long)cfg->max_body_bytes;
    if ((rc = get_int(c, root, "", "max_body_bytes", 1, 1LL << 30, &n)) < 0)
        return rc;
    cfg->max_body_bytes = (size_t)n;
    n = cfg->upstream_max_host_connections;
    if ((rc = get_int(c, root, "", "upstream_max_host_connections", 0, 100000, &n)) < 0)
        return rc;
    cfg->upstream_max_host_connections = (long)n;
    n = cfg->upstream_idle_connections;
    if ((rc = get_int(c, root, "", "upstream_idle_connections", 1, 100000, &n)) < 0)
        return rc;
    cfg->upstream_idle_connections = (long)n;
    n = (long long)cfg->cache_max_bytes;
    if ((rc = get_int(c, root, "", "cache_max_bytes", 0, 1LL << 40, &n)) < 0)
        return rc;
    cfg->cache_max_bytes = (size_t)n;

    char why[1024];
    config_tls_opts_init(&c->tls);
    if ((rc = parse_tls(c, root, "", &c->tls, c->tls_at, &c->tls_pass)) < 0 ||
        (rc = fail_tls(c, config_tls_load(cfg->tls, &c->tls, why, sizeof why), why)) < 0)
        return rc;

    json_t *arr = json_object_get(root, "endpoints");
    if (arr == NULL)
        return fail(c, "endpoints", "is required");
    if (!json_is_array(arr))
        return fail(c, "endpoints", "must be an array");
    if (json_array_size(arr) == 0)
        return fail(c, "endpoints", "must not be empty");
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
        if ((rc = parse_endpoint(c, v, k, cfg, &cfg->endpoints[i])) < 0)
            break;
        cfg->endpoints[i].ident = endpoint_ident(root, v, &cfg->endpoints[i]);
        json_t *seen = json_object_get(paths, cfg->endpoints[i].path);
        if (seen != NULL) {
            char pk[80];
            snprintf(pk, sizeof pk, "%s.path", k);
            rc = fail(c, pk, "duplicate path \"%s\" (also endpoints[%lld])", cfg->endpoints[i].path,
                      json_integer_value(seen));
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
    struct ctx c = {.origin = origin, .err = err, .errlen = errlen};
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
