/* The strict readers every section of the configuration is read with: a value of the wrong
 * type, out of range or under an unknown key is an error that names its key path. With them,
 * ${VAR} expansion and the "headers" objects of backends and notification sinks. */
#include "config_int.h"

#include "envsubst.h"
#include "validate.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) int config__read_fail(struct config__ctx *c, const char *key,
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

void config__read_join_key(char *out, size_t outlen, const char *parent, const char *key)
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

int config__read_check_keys(struct config__ctx *c, json_t *obj, const char *path,
                            const char *const *allowed)
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
            config__read_join_key(k, sizeof k, path, key);
            return config__read_fail(c, k, "unknown key");
        }
    }
    return 0;
}

int config__read_check_object(struct config__ctx *c, json_t *obj, const char *path,
                              const char *const *allowed)
{
    if (!json_is_object(obj))
        return config__read_fail(c, path, "must be an object");
    return config__read_check_keys(c, obj, path, allowed);
}

int config__read_int(struct config__ctx *c, json_t *obj, const char *path, const char *key,
                     long long min, long long max, long long *out)
{
    json_t *v = json_object_get(obj, key);
    char k[256];
    if (v == NULL)
        return 0;
    config__read_join_key(k, sizeof k, path, key);
    if (!json_is_integer(v))
        return config__read_fail(c, k, "must be an integer");
    long long n = json_integer_value(v);
    if (n < min || n > max)
        return config__read_fail(c, k, "must be between %lld and %lld, got %lld", min, max, n);
    *out = n;
    return 0;
}

int config__read_bool(struct config__ctx *c, json_t *obj, const char *path, const char *key,
                      bool *out)
{
    json_t *v = json_object_get(obj, key);
    char k[256];
    if (v == NULL)
        return 0;
    config__read_join_key(k, sizeof k, path, key);
    if (!json_is_boolean(v))
        return config__read_fail(c, k, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

int config__read_string(struct config__ctx *c, json_t *obj, const char *path, const char *key,
                        bool required, const char **out)
{
    json_t *v = json_object_get(obj, key);
    char k[256];
    config__read_join_key(k, sizeof k, path, key);
    if (v == NULL) {
        if (required)
            return config__read_fail(c, k, "is required");
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v))
        return config__read_fail(c, k, "must be a string");
    *out = json_string_value(v);
    if (strlen(*out) != json_string_length(v))
        return config__read_fail(c, k, "must not contain NUL characters");
    return 0;
}

static const char *lookup_env(const char *name, void *ctx)
{
    (void)ctx;
    return getenv(name);
}

int config__read_expand(struct config__ctx *c, const char *key, const char *in, char **out)
{
    char why[300];
    int rc = envsubst_expand(in, lookup_env, NULL, out, why, sizeof why);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return config__read_fail(c, key, "%s", why);
    return 0;
}

bool config__read_has_ctl(const char *s)
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

int config__read_headers(struct config__ctx *c, json_t *obj, const char *path, char ***out,
                         size_t *nout, bool posted)
{
    char k[256];
    config__read_join_key(k, sizeof k, path, "headers");
    if (!json_is_object(obj))
        return config__read_fail(c, k, "must be an object of header names to string values");
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
            return config__read_fail(c, k, "header names must not be empty");
        for (const char *q = name; *q; q++)
            if (!validate_tchar(*q))
                return config__read_fail(c, hk, "is not a valid header name");
        for (const char *const *m = managed_headers; *m; m++)
            if (strcasecmp(*m, name) == 0)
                return config__read_fail(c, hk, "is set by gatherd and cannot be configured");
        for (const char *const *m = posted_headers; posted && *m; m++)
            if (strcasecmp(*m, name) == 0)
                return config__read_fail(c, hk, "is set by gatherd and cannot be configured");
        if (!json_is_string(val))
            return config__read_fail(c, hk, "must be a string");
        char *value;
        int rc = config__read_expand(c, hk, json_string_value(val), &value);
        if (rc < 0)
            return rc;
        if (config__read_has_ctl(value)) {
            free(value);
            return config__read_fail(
                c, hk, "must not contain control characters (after ${VAR} expansion)");
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
