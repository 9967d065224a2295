/* jsonv_check() and jsonv_append_string() on arbitrary bytes.
 *
 * jsonv_check: the reported span is inside the input and only white space surrounds it; and
 * differentially against jansson (JSON_DECODE_ANY | JSON_ALLOW_NUL), which validates UTF-8 too:
 *   - what jansson accepts (nested at most JSONV_MAX_DEPTH deep, and without a raw NUL byte,
 *     where jansson stops reading) jsonv must accept;
 *   - what jsonv accepts, jansson may refuse only for its own documented limits: escaped
 *     surrogates that do not pair up ("invalid Unicode"), numbers out of its range ("too big",
 *     "overflow"), and \u0000 in an object key ("NUL").
 * jsonv_append_string: the output always passes jsonv_check as one whole string, jansson
 * decodes it, and for valid UTF-8 input it decodes back to exactly the input bytes. */
#include "buf.h"
#include "fuzz.h"
#include "jsonv.h"

#include <jansson.h>

static int is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t depth_of(const json_t *j)
{
    size_t d = 0;
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v)
        {
            size_t k = depth_of(v);
            d = k > d ? k : d;
        }
        return d + 1;
    }
    if (json_is_object(j)) {
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)j, key, v)
        {
            size_t k = depth_of(v);
            d = k > d ? k : d;
        }
        return d + 1;
    }
    return 0;
}

static int jansson_limit(const char *text)
{
    return strstr(text, "invalid Unicode") != NULL || strstr(text, "too big") != NULL ||
           strstr(text, "overflow") != NULL || strstr(text, "NUL") != NULL;
}

static void check_validation(const uint8_t *data, size_t size)
{
    size_t start = (size_t)-1, end = (size_t)-1;
    int rc = jsonv_check((const char *)data, size, &start, &end);
    CHECK(rc == 0 || rc == -1, "rc %d", rc);
    if (rc == 0) {
        CHECK(start < end && end <= size, "span [%zu, %zu) of %zu", start, end, size);
        for (size_t i = 0; i < start; i++)
            CHECK(is_ws(data[i]), "non-space before the value at %zu", i);
        for (size_t i = end; i < size; i++)
            CHECK(is_ws(data[i]), "non-space after the value at %zu", i);
        CHECK(!is_ws(data[start]) && !is_ws(data[end - 1]), "span not trimmed");
        /* The span alone is valid too, with the same span. */
        size_t s2, e2;
        CHECK(jsonv_check((const char *)data + start, end - start, &s2, &e2) == 0 && s2 == 0 &&
                  e2 == end - start,
              "the trimmed value is not accepted alone");
    } else {
        CHECK(start <= size, "error offset %zu past %zu", start, size);
    }

    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (j != NULL) {
        /* jansson stops at a raw NUL byte as if the input ended there; jsonv rightly does
         * not (NUL is not white space), so only NUL-free inputs are compared this way. */
        if (depth_of(j) <= JSONV_MAX_DEPTH && memchr(data, 0, size) == NULL)
            CHECK(rc == 0, "jansson accepts, jsonv refuses at byte %zu", start);
        json_decref(j);
    } else if (rc == 0) {
        CHECK(jansson_limit(jerr.text), "jsonv accepts, jansson refuses: %s (position %d)",
              jerr.text, jerr.position);
    }
}

static int valid_utf8_per_jansson(const uint8_t *data, size_t size)
{
    json_t *s = json_stringn((const char *)data, size); /* NULL when not valid UTF-8 */
    int ok = s != NULL;
    json_decref(s);
    return ok;
}

static void check_append(const uint8_t *data, size_t size)
{
    struct buf b = BUF_INIT;
    CHECK(buf_appends(&b, "x") == 0, "oom"); /* appending after existing bytes */
    CHECK(jsonv_append_string(&b, (const char *)data, size) == 0, "append failed");
    const char *out = b.data + 1;
    size_t n = b.len - 1;
    size_t start, end;
    CHECK(jsonv_check(out, n, &start, &end) == 0, "append_string output invalid at %zu", start);
    CHECK(start == 0 && end == n && out[0] == '"' && out[n - 1] == '"', "not one whole string");
    CHECK(b.data[b.len] == '\0', "buffer not NUL-terminated");

    json_error_t jerr;
    json_t *j = json_loadb(out, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    CHECK(j != NULL && json_is_string(j), "jansson refuses append_string output: %s", jerr.text);
    if (valid_utf8_per_jansson(data, size)) {
        CHECK(json_string_length(j) == size && memcmp(json_string_value(j), data, size) == 0,
              "valid UTF-8 did not round-trip");
    } else {
        /* Invalid bytes become U+FFFD, so at least one replacement character is there. */
        CHECK(memmem(json_string_value(j), json_string_length(j), "\xEF\xBF\xBD", 3) != NULL,
              "invalid UTF-8 without a replacement character");
    }
    json_decref(j);
    buf_finish(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_validation(data, size);
    check_append(data, size);
    return 0;
}
