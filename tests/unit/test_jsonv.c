#include "buf.h"
#include "jsonv.h"
#include "tap.h"

#include <stdlib.h>

static int check(const char *s)
{
    size_t a, b;
    return jsonv_check(s, strlen(s), &a, &b);
}

static void valid(const char *s, const char *value)
{
    size_t a = 0, b = 0;
    int rc = jsonv_check(s, strlen(s), &a, &b);
    ok(rc == 0 && b - a == strlen(value) && memcmp(s + a, value, b - a) == 0, "valid: %s", s);
}

int main(void)
{
    valid("{}", "{}");
    valid("  [1, 2.5e-3, -0, true, false, null, \"x\"]\n",
          "[1, 2.5e-3, -0, true, false, null, \"x\"]");
    valid("\"\\u00e9\\n\\\"\"", "\"\\u00e9\\n\\\"\"");
    valid("{\"a\":{\"b\":[{}]}}", "{\"a\":{\"b\":[{}]}}");
    valid("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    valid("0", "0");
    valid(" 123 ", "123");

    const char *bad[] = {"",
                         " ",
                         "{",
                         "}",
                         "[1,]",
                         "{\"a\"}",
                         "{\"a\":}",
                         "{a:1}",
                         "[1 2]",
                         "01",
                         "1.",
                         ".5",
                         "1e",
                         "-",
                         "+1",
                         "tru",
                         "nul",
                         "\"abc",
                         "\"\\x\"",
                         "\"\\u12g4\"",
                         "{} {}",
                         "[]x",
                         "\"\x01\"",
                         "\"\xc0\xaf\"",
                         "\"\xed\xa0\x80\"",
                         "\"\xf5\x80\x80\x80\"",
                         "\"\xe2\x82\"",
                         "<html>",
                         "{\"a\":1,}",
                         "[,1]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ok(check(bad[i]) < 0, "invalid #%zu rejected", i);

    /* Depth: exactly the limit passes, one more fails, and neither recurses. */
    char deep[2 * JSONV_MAX_DEPTH + 3];
    memset(deep, '[', JSONV_MAX_DEPTH);
    memset(deep + JSONV_MAX_DEPTH, ']', JSONV_MAX_DEPTH);
    deep[2 * JSONV_MAX_DEPTH] = '\0';
    ok(check(deep) == 0, "nesting at the limit accepted");
    char deeper[2 * JSONV_MAX_DEPTH + 3];
    memset(deeper, '[', JSONV_MAX_DEPTH + 1);
    memset(deeper + JSONV_MAX_DEPTH + 1, ']', JSONV_MAX_DEPTH + 1);
    deeper[2 * JSONV_MAX_DEPTH + 2] = '\0';
    ok(check(deeper) < 0, "nesting past the limit rejected");

    /* Not NUL-terminated: the length bounds the scan. */
    size_t a, b;
    ok(jsonv_check("[1]xyz", 3, &a, &b) == 0 && b == 3, "length bounds the input");
    ok(jsonv_check("{\"a\":1}", 6, &a, &b) < 0, "a cut object is rejected");

    struct buf out = BUF_INIT;
    jsonv_append_string(&out, "a\"b\\c\n\x01\xff\xc3\xa9", 10);
    is_str(out.data, "\"a\\\"b\\\\c\\u000a\\u0001\xef\xbf\xbd\xc3\xa9\"", "escaping");
    ok(check(out.data) == 0, "escaped output is valid JSON");
    buf_finish(&out);
    return tap_done();
}
