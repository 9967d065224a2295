#include "envsubst.h"

#include "buf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

int envsubst_expand(const char *in, envsubst_lookup_fn lookup, void *ctx, char **out, char *err,
                    size_t errlen)
{
    struct buf b = BUF_INIT;
    const char *p = in;
    int rc = -ENOMEM;

    while (*p != '\0') {
        const char *dollar = strchr(p, '$');
        if (dollar == NULL) {
            if (buf_appends(&b, p) < 0)
                goto fail;
            break;
        }
        if (buf_append(&b, p, (size_t)(dollar - p)) < 0)
            goto fail;
        if (dollar[1] == '$') {
            if (buf_appendc(&b, '$') < 0)
                goto fail;
            p = dollar + 2;
            continue;
        }
        if (dollar[1] != '{') {
            if (buf_appendc(&b, '$') < 0)
                goto fail;
            p = dollar + 1;
            continue;
        }
        const char *name = dollar + 2, *q = name;
        if (!name_start(*q)) {
            snprintf(err, errlen, "\"${\" must be followed by a variable name");
            rc = -EINVAL;
            goto fail;
        }
        while (name_char(*q))
            q++;
        if (*q != '}') {
            snprintf(err, errlen, "unterminated or malformed \"${%.*s\"", (int)(q - name), name);
            rc = -EINVAL;
            goto fail;
        }
        char var[256];
        if ((size_t)(q - name) >= sizeof var) {
            snprintf(err, errlen, "variable name longer than %zu characters", sizeof var - 1);
            rc = -EINVAL;
            goto fail;
        }
        memcpy(var, name, (size_t)(q - name));
        var[q - name] = '\0';
        const char *val = lookup(var, ctx);
        if (val == NULL) {
            snprintf(err, errlen, "environment variable %s is not set", var);
            rc = -ENOENT;
            goto fail;
        }
        if (buf_appends(&b, val) < 0)
            goto fail;
        p = q + 1;
    }
    *out = buf_steal(&b, NULL);
    if (*out == NULL)
        goto fail;
    return 0;
fail:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    buf_finish(&b);
    return rc;
}
