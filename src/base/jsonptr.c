#include "jsonptr.h"

#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

bool jsonptr_valid(const char *ptr)
{
    if (ptr[0] != '\0' && ptr[0] != '/')
        return false;
    for (const char *p = ptr; *p; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return false;
    return true;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at an opening quote of valid JSON; returns the byte after the closing quote. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end && *p != '"'; p++)
        if (*p == '\\')
            p++;
    return p < end ? p + 1 : end;
}

/* p at the start of a valid value; returns the byte after it. */
static const char *skip_value(const char *p, const char *end)
{
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if ((*p == '}' || *p == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return end;
    }
    while (p < end && !strchr(",]} \t\r\n", *p))
        p++;
    return p;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

static int append_utf8(struct buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return buf_append(b, u, n);
}

int jsonptr_unescape(struct buf *b, const char *s, size_t n)
{
    const char *p = s + 1, *end = s + n - 1; /* inside the quotes */
    int rc = 0;
    while (rc == 0 && p < end) {
        const char *q = p;
        while (q < end && *q != '\\')
            q++;
        rc = buf_append(b, p, (size_t)(q - p));
        if (rc < 0 || q >= end)
            break;
        char e = q[1];
        p = q + 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple != NULL) {
            static const char out[] = "\"\\/\b\f\n\r\t";
            rc = buf_appendc(b, out[simple - "\"\\/bfnrt"]);
            continue;
        }
        /* \uXXXX, perhaps a surrogate pair (jsonv_check() accepted it, lone halves too). */
        uint32_t cp = (uint32_t)hex4(p);
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
            uint32_t lo = (uint32_t)hex4(p + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0xFFFD; /* a lone surrogate has no UTF-8 form */
        rc = append_utf8(b, cp);
    }
    return rc;
}

/* Whether the JSON string key (quotes included) decodes to token[0..tlen) with ~1 and ~0. */
static bool key_is(const char *key, size_t klen, const char *token, size_t tlen)
{
    struct buf want = BUF_INIT, have = BUF_INIT;
    bool same = false;
    for (size_t i = 0; i < tlen; i++) {
        char c = token[i];
        if (c == '~') {
            c = token[i + 1] == '1' ? '/' : '~';
            i++;
        }
        if (buf_appendc(&want, c) < 0)
            goto out;
    }
    if (jsonptr_unescape(&have, key, klen) == 0)
        same =
            want.len == have.len && (want.len == 0 || memcmp(want.data, have.data, want.len) == 0);
out:
    buf_finish(&want);
    buf_finish(&have);
    return same;
}

/* The index a token names, or -1 when it is not a decimal without leading zeros. */
static long long array_index(const char *t, size_t n)
{
    if (n == 0 || n > 18 || (n > 1 && t[0] == '0'))
        return -1;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < '0' || t[i] > '9')
            return -1;
        v = v * 10 + (t[i] - '0');
    }
    return v;
}

static enum jsonptr_type type_at(const char *p)
{
    switch (*p) {
    case '"':
        return JSONPTR_STRING;
    case '{':
        return JSONPTR_OBJECT;
    case '[':
        return JSONPTR_ARRAY;
    case 't':
    case 'f':
        return JSONPTR_BOOLEAN;
    case 'n':
        return JSONPTR_NULL;
    default:
        return JSONPTR_NUMBER;
    }
}

enum jsonptr_type jsonptr_find(const char *s, size_t n, const char *ptr, size_t *vs, size_t *ve)
{
    const char *end = s + n;
    const char *p = skip_ws(s, end);
    while (*ptr == '/') {
        const char *token = ptr + 1;
        size_t tlen = strcspn(token, "/");
        ptr = token + tlen;
        const char *found = NULL;
        if (p < end && *p == '{') {
            p = skip_ws(p + 1, end);
            while (p < end && *p == '"') {
                const char *kend = skip_string(p, end);
                bool match = key_is(p, (size_t)(kend - p), token, tlen);
                p = skip_ws(kend, end);
                p = skip_ws(p + 1, end); /* the colon */
                if (match) {
                    found = p; /* the last duplicate would win in most parsers; the first here */
                    break;
                }
                p = skip_ws(skip_value(p, end), end);
                if (p < end && *p == ',')
                    p = skip_ws(p + 1, end);
            }
        } else if (p < end && *p == '[') {
            long long want = array_index(token, tlen);
            p = skip_ws(p + 1, end);
            for (long long i = 0; want >= 0 && p < end && *p != ']'; i++) {
                if (i == want) {
                    found = p;
                    break;
                }
                p = skip_ws(skip_value(p, end), end);
                if (p < end && *p == ',')
                    p = skip_ws(p + 1, end);
            }
        }
        if (found == NULL)
            return JSONPTR_MISSING;
        p = found;
    }
    if (p >= end)
        return JSONPTR_MISSING;
    *vs = (size_t)(p - s);
    *ve = (size_t)(skip_value(p, end) - s);
    return type_at(p);
}

const char *jsonptr_type_name(enum jsonptr_type t)
{
    static const char *const names[] = {"nothing",  "a string",  "a number", "an object",
                                        "an array", "a boolean", "null"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "nothing";
}
