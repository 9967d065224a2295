/* envsubst_expand() against a small reference model of its contract (envsubst.h): ${NAME} with
 * NAME [A-Za-z_][A-Za-z0-9_]* is replaced by the variable, "$$" is "$", any other '$' stays;
 * a malformed reference is -EINVAL, an unset variable -ENOENT, the first problem from the left
 * decides. Names of 256 characters or more are refused as malformed (the implementation's
 * documented-in-code limit). Values are inserted verbatim, never expanded again.
 *
 * Variables: names starting with 'U' are unset, 'E' are empty, 'D' expand to "$${D}" (a value
 * that would change if it were expanded again), every other NAME to "<NAME>". */
#include "envsubst.h"
#include "fuzz.h"

#include <errno.h>
#include <stdbool.h>

static const char *lookup(const char *name, void *ctx)
{
    static char value[300];
    int *calls = ctx;
    (*calls)++;
    CHECK(name[0] != '\0', "lookup of an empty name");
    switch (name[0]) {
    case 'U':
        return NULL;
    case 'E':
        return "";
    case 'D':
        return "$${D}";
    default:
        snprintf(value, sizeof value, "<%s>", name);
        return value;
    }
}

static bool name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_char(char c)
{
    return name_start(c) || (c >= '0' && c <= '9');
}

/* The model: returns 0 and the expansion in out (big enough), or the error code. */
static int model(const char *in, char *out)
{
    size_t o = 0;
    for (const char *p = in; *p;) {
        if (p[0] != '$') {
            out[o++] = *p++;
            continue;
        }
        if (p[1] == '$') {
            out[o++] = '$';
            p += 2;
            continue;
        }
        if (p[1] != '{') {
            out[o++] = '$';
            p++;
            continue;
        }
        const char *name = p + 2, *q = name;
        if (!name_start(*q))
            return -EINVAL;
        while (name_char(*q))
            q++;
        if (*q != '}' || q - name >= 256)
            return -EINVAL;
        char var[256];
        memcpy(var, name, (size_t)(q - name));
        var[q - name] = '\0';
        int calls = 0;
        const char *v = lookup(var, &calls);
        if (v == NULL)
            return -ENOENT;
        size_t n = strlen(v);
        memcpy(out + o, v, n);
        o += n;
        p = q + 1;
    }
    out[o] = '\0';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *in = dup_n(data, size); /* stops at the first NUL, as a C string does */
    size_t errlen = size % 3 == 0 ? 1 + size % 17 : 256;
    char err[300];
    memset(err, 'Z', sizeof err);
    char *out = (char *)0x1;
    int calls = 0;
    int rc = envsubst_expand(in, lookup, &calls, &out, err, errlen);
    CHECK(err[errlen] == 'Z', "wrote past errlen");

    /* Each ${X} expands to at most 2 + len(X) <= 3 + (bytes of "${X}"), so 3x suffices. */
    char *want = malloc(3 * strlen(in) + 16);
    CHECK(want != NULL, "oom");
    int mrc = model(in, want);
    CHECK(rc == mrc || rc == -ENOMEM, "rc %d, model %d for \"%s\"", rc, mrc, in);
    if (rc == 0) {
        CHECK(out != NULL, "NULL output");
        CHECK(strcmp(out, want) == 0, "\"%s\" expanded to \"%s\", model \"%s\"", in, out, want);
        free(out);
    } else {
        CHECK(out == (char *)0x1, "*out written on failure");
        CHECK(memchr(err, '\0', errlen) != NULL, "reason not NUL-terminated");
        /* The reason names the variable (cut to errlen for long names). */
        if (rc == -ENOENT && errlen >= 64)
            CHECK(strncmp(err, "environment variable ", 21) == 0, "reason \"%s\"", err);
    }
    free(want);
    free(in);
    return 0;
}
