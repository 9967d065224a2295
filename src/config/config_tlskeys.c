/* The "tls" and "http2" keys, of the top level and of each backend.
 *
 * TLS and HTTP/2 (config_tls.h). The top level's tls and http2 are the defaults of every
 * backend; a backend's own replace them key by key. Only syntax and placement are checked here:
 * files, schemes and names are config_tls_resolve()'s. */
#include "config_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const tls_keys[] = {
    "ca_file",     "verify",      "client_cert", "client_key", "client_key_passphrase",
    "min_version", "server_name", NULL};

/* A tls file key: a non-empty string, recorded with the key path `at` it was written under. */
static int get_tls_file(struct config__ctx *c, json_t *obj, const char *at, const char *key,
                        const char **out, const char **out_at)
{
    const char *s;
    int rc = config__read_string(c, obj, at, key, false, &s);
    if (rc < 0 || s == NULL)
        return rc;
    if (s[0] == '\0') {
        char k[360];
        config__read_join_key(k, sizeof k, at, key);
        return config__read_fail(c, k, "must name a file");
    }
    *out = s;
    *out_at = at;
    return 0;
}

int config__tlskeys_parse(struct config__ctx *c, json_t *parent, const char *path,
                          struct config_tls_opts *o, char *at, char **pass)
{
    bool top = path[0] == '\0';
    const char *s;
    char k[360];
    int rc;
    if ((rc = config__read_string(c, parent, path, "http2", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        config__read_join_key(k, sizeof k, path, "http2");
        if (strcmp(s, "auto") == 0)
            o->http2 = CONFIG_HTTP2_AUTO;
        else if (strcmp(s, "off") == 0)
            o->http2 = CONFIG_HTTP2_OFF;
        else if (strcmp(s, "prior_knowledge") == 0)
            o->http2 = CONFIG_HTTP2_PRIOR_KNOWLEDGE;
        else
            return config__read_fail(c, k, "must be \"auto\", \"off\" or \"prior_knowledge\"");
        o->http2_at = top ? NULL : path;
    }
    json_t *t = json_object_get(parent, "tls");
    config__read_join_key(at, 320, path, "tls");
    if (t == NULL)
        return 0;
    if ((rc = config__read_check_object(c, t, at, tls_keys)) < 0)
        return rc;
    o->own_at = top ? NULL : at;
    if ((rc = get_tls_file(c, t, at, "ca_file", &o->ca_file, &o->ca_file_at)) < 0 ||
        (rc = get_tls_file(c, t, at, "client_cert", &o->client_cert, &o->client_cert_at)) < 0 ||
        (rc = get_tls_file(c, t, at, "client_key", &o->client_key, &o->client_key_at)) < 0)
        return rc;
    bool verify = o->verify;
    if ((rc = config__read_bool(c, t, at, "verify", &verify)) < 0)
        return rc;
    config__read_join_key(k, sizeof k, at, "verify");
    if (top && !verify)
        return config__read_fail(c, k,
                                 "false is allowed only per backend (endpoints[].backends[].tls)");
    o->verify = verify;
    if ((rc = config__read_string(c, t, at, "client_key_passphrase", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        config__read_join_key(k, sizeof k, at, "client_key_passphrase");
        if ((rc = config__read_expand(c, k, s, pass)) < 0)
            return rc;
        o->passphrase = *pass;
    }
    if ((rc = config__read_string(c, t, at, "min_version", false, &s)) < 0)
        return rc;
    if (s != NULL) {
        config__read_join_key(k, sizeof k, at, "min_version");
        if (strcmp(s, "1.2") == 0)
            o->min_version = 12;
        else if (strcmp(s, "1.3") == 0)
            o->min_version = 13;
        else
            return config__read_fail(c, k, "must be \"1.2\" or \"1.3\"");
    }
    if ((rc = config__read_string(c, t, at, "server_name", false, &s)) < 0)
        return rc;
    config__read_join_key(k, sizeof k, at, "server_name");
    if (s != NULL && top)
        return config__read_fail(
            c, k,
            "is only for a backend (endpoints[].backends[].tls), never the top "
            "level");
    o->server_name = s;
    return 0;
}

int config__tlskeys_fail(struct config__ctx *c, int rc, const char *why)
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

int config__tlskeys_backend(struct config__ctx *c, json_t *obj, const char *path,
                            struct config_backend *be)
{
    struct config_tls_opts o = c->tls;
    char at[320], k[360], why[1024];
    char *pass = NULL;
    int rc = config__tlskeys_parse(c, obj, path, &o, at, &pass);
    if (rc == 0) {
        size_t before = strlen(be->url);
        config__read_join_key(k, sizeof k, path, "url");
        rc = config_tls_resolve(c->cfg->tls, &o, k, &be->url, &be->tls, why, sizeof why);
        rc = config__tlskeys_fail(c, rc, why);
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
        config__read_join_key(k, sizeof k, path, "tls.verify");
        rc = warn(c->cfg, k,
                  "false: the certificate of backend \"%s\" is not checked, so anyone on the "
                  "path can read and change its answers",
                  be->name);
    }
    return rc;
}
