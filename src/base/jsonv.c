#include "jsonv.h"

#include "buf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

typedef const unsigned char *cursor;

static cursor skip_ws(cursor p, cursor end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one: overlong forms,
 * surrogates and code points past U+10FFFF are rejected, as RFC 3629 asks. */
static size_t utf8_len(cursor p, cursor end)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static bool is_hex(unsigned c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* p points at the opening quote; returns the byte after the closing quote, or NULL. */
static cursor scan_string(cursor p, cursor end)
{
    p++;
    while (p < end) {
        unsigned c = *p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (++p == end)
                return NULL;
            switch (*p) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p++;
                break;
            case 'u':
                if (end - p < 5 || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]))
                    return NULL;
                p += 5;
                break;
            default:
                return NULL;
            }
            continue;
        }
        size_t n = utf8_len(p, end);
        if (n == 0)
            return NULL;
        p += n;
    }
    return NULL;
}

static cursor scan_digits(cursor p, cursor end)
{
    cursor q = p;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    return q == p ? NULL : q;
}

static cursor scan_number(cursor p, cursor end)
{
    if (p < end && *p == '-')
        p++;
    if (p == end)
        return NULL;
    if (*p == '0')
        p++;
    else if ((p = scan_digits(p, end)) == NULL)
        return NULL;
    if (p < end && *p == '.' && (p = scan_digits(p + 1, end)) == NULL)
        return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if ((p = scan_digits(p, end)) == NULL)
            return NULL;
    }
    return p;
}

static cursor scan_literal(cursor p, cursor end, const char *lit, size_t n)
{
    if ((size_t)(end - p) < n)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)lit[i])
            return NULL;
    return p + n;
}

/* An explicit stack instead of recursion: hostile bodies cannot exhaust the thread's stack,
 * and the depth limit is one comparison. */
int jsonv_check(const char *s, size_t n, size_t *start, size_t *end_out)
{
    cursor base = (cursor)s, end = base + n, p, tok;
    char stack[JSONV_MAX_DEPTH];
    int depth = 0;

    p = skip_ws(base, end);
    *start = (size_t)(p - base);

value:
    p = skip_ws(p, end);
    if (p == end)
        goto fail;
    tok = p;
    switch (*p) {
    case '{':
        if (depth == JSONV_MAX_DEPTH)
            goto fail;
        stack[depth++] = '{';
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            depth--;
            p++;
            goto after_value;
        }
        goto key;
    case '[':
        if (depth == JSONV_MAX_DEPTH)
            goto fail;
        stack[depth++] = '[';
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') {
            depth--;
            p++;
            goto after_value;
        }
        goto value;
    case '"':
        p = scan_string(p, end);
        break;
    case 't':
        p = scan_literal(p, end, "true", 4);
        break;
    case 'f':
        p = scan_literal(p, end, "false", 5);
        break;
    case 'n':
        p = scan_literal(p, end, "null", 4);
        break;
    default:
        p = scan_number(p, end);
        break;
    }
    if (p == NULL)
        goto fail_token;
    goto after_value;

key:
    if (p == end || *p != '"')
        goto fail;
    tok = p;
    if ((p = scan_string(p, end)) == NULL)
        goto fail_token;
    p = skip_ws(p, end);
    if (p == end || *p != ':')
        goto fail;
    p++;
    goto value;

after_value:
    if (depth == 0) {
        cursor value_end = p;
        p = skip_ws(p, end);
        if (p != end)
            goto fail;
        *end_out = (size_t)(value_end - base);
        return 0;
    }
    p = skip_ws(p, end);
    if (p == end)
        goto fail;
    if (*p == ',') {
        p = skip_ws(p + 1, end);
        if (stack[depth - 1] == '{')
            goto key;
        goto value;
    }
    if ((stack[depth - 1] == '{' && *p == '}') || (stack[depth - 1] == '[' && *p == ']')) {
        depth--;
        p++;
        goto after_value;
    }
    goto fail;

fail:
    *start = (size_t)(p - base);
    return -1;
fail_token:
    /* The scanners do not say where inside a token they stopped; name the token's start. */
    *start = (size_t)(tok - base);
    return -1;
}

int jsonv_append_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    cursor p = (cursor)s, end = p + n;

    if (buf_reserve(b, n + 2) < 0 || buf_appendc(b, '"') < 0)
        return -ENOMEM;
    while (p < end) {
        cursor run = p;
        while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80)
            p++;
        if (buf_append(b, run, (size_t)(p - run)) < 0)
            return -ENOMEM;
        if (p == end)
            break;
        unsigned c = *p;
        int rc;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc = buf_append(b, esc, 2);
            p++;
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, esc, 6);
            p++;
        } else {
            size_t len = utf8_len(p, end);
            if (len == 0) {
                rc = buf_appends(b, "\xEF\xBF\xBD");
                p++;
            } else {
                rc = buf_append(b, p, len);
                p += len;
            }
        }
        if (rc < 0)
            return -ENOMEM;
    }
    return buf_appendc(b, '"');
}
