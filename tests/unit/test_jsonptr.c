/* RFC 6901 pointers on validated JSON text, as dependent calls read their dependencies'
 * answers: the syntax check, what a pointer finds (and its exact span), and the string
 * unescaping a substituted value goes through. */
#include "buf.h"
#include "jsonptr.h"
#include "tap.h"

#include <stdlib.h>

static const char doc[] =
    " {\"a\": {\"b\": [10, \"x\", {\"c\": null}]},"
    " \"a/b\": 1, \"m~n\": 2, \"\": 3, \"\\u00e9\": 4, \"k\\\"q\": 5,"
    " \"t\": true, \"f\": false, \"s\": \"J\\u00f6 \\\"D\\\"\\n\\ud83d\\ude00\","
    " \"n\": -1.5e3, \"e\": {}, \"z\": [], \"dup\": 1, \"dup\": 2} ";

/* What ptr finds in doc, and whether its span is exactly `span`. */
static void find(const char *ptr, enum jsonptr_type want, const char *span)
{
    size_t vs = 0, ve = 0;
    enum jsonptr_type t = jsonptr_find(doc, sizeof doc - 1, ptr, &vs, &ve);
    if (span == NULL) {
        ok(t == want, "\"%s\" finds %s", ptr, jsonptr_type_name(want));
        return;
    }
    ok(t == want && ve - vs == strlen(span) && memcmp(doc + vs, span, ve - vs) == 0,
       "\"%s\" finds %s: %s (got %s, %.*s)", ptr, jsonptr_type_name(want), span,
       jsonptr_type_name(t), t == JSONPTR_MISSING ? 0 : (int)(ve - vs), doc + vs);
}

int main(void)
{
    static const char *const valid[] = {"", "/", "/a", "/a/0", "/~0~1", "//", "/a~1b"};
    static const char *const invalid[] = {"a", "~", "/~", "/~2", "/a~", "#/a"};
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        ok(jsonptr_valid(valid[i]), "valid: \"%s\"", valid[i]);
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++)
        ok(!jsonptr_valid(invalid[i]), "invalid: \"%s\"", invalid[i]);

    find("", JSONPTR_OBJECT, NULL);
    find("/a/b/0", JSONPTR_NUMBER, "10");
    find("/a/b/1", JSONPTR_STRING, "\"x\"");
    find("/a/b/2/c", JSONPTR_NULL, "null");
    find("/a/b/2", JSONPTR_OBJECT, "{\"c\": null}");
    find("/a/b", JSONPTR_ARRAY, "[10, \"x\", {\"c\": null}]");
    find("/a/b/3", JSONPTR_MISSING, NULL);
    find("/a/b/-", JSONPTR_MISSING, NULL);
    find("/a/b/01", JSONPTR_MISSING, NULL);
    find("/a/b/x", JSONPTR_MISSING, NULL);
    find("/a~1b", JSONPTR_NUMBER, "1");
    find("/a/b~1", JSONPTR_MISSING, NULL);
    find("/m~0n", JSONPTR_NUMBER, "2");
    find("/", JSONPTR_NUMBER, "3");
    find("/\xc3\xa9", JSONPTR_NUMBER, "4");
    find("/k\"q", JSONPTR_NUMBER, "5");
    find("/t", JSONPTR_BOOLEAN, "true");
    find("/f", JSONPTR_BOOLEAN, "false");
    find("/n", JSONPTR_NUMBER, "-1.5e3");
    find("/e", JSONPTR_OBJECT, "{}");
    find("/e/x", JSONPTR_MISSING, NULL);
    find("/z", JSONPTR_ARRAY, "[]");
    find("/z/0", JSONPTR_MISSING, NULL);
    find("/t/0", JSONPTR_MISSING, NULL);
    find("/nope", JSONPTR_MISSING, NULL);
    find("/dup", JSONPTR_NUMBER, "1");

    size_t vs, ve;
    ok(jsonptr_find(doc, sizeof doc - 1, "/s", &vs, &ve) == JSONPTR_STRING, "the string");
    struct buf b = BUF_INIT;
    ok(jsonptr_unescape(&b, doc + vs, ve - vs) == 0 && b.len == 12 &&
           memcmp(b.data, "J\xc3\xb6 \"D\"\n\xf0\x9f\x98\x80", 12) == 0,
       "unescaped to UTF-8: \\u00f6, quotes, a line feed, a surrogate pair");
    buf_finish(&b);
    static const char lone[] = "\"a\\ud800b\"";
    ok(jsonptr_unescape(&b, lone, sizeof lone - 1) == 0 && b.len == 5 &&
           memcmp(b.data,
                  "a\xef\xbf\xbd"
                  "b",
                  5) == 0,
       "a lone surrogate becomes U+FFFD");
    buf_finish(&b);
    static const char scalar[] = "42";
    ok(jsonptr_find(scalar, 2, "", &vs, &ve) == JSONPTR_NUMBER && vs == 0 && ve == 2,
       "a scalar document, the empty pointer");
    ok(jsonptr_find(scalar, 2, "/0", &vs, &ve) == JSONPTR_MISSING, "no token into a scalar");
    return tap_done();
}
