/* RFC 6901 JSON pointers, evaluated on JSON text that jsonv_check() accepted, without building a
 * tree: a dependent call needs one field of an earlier answer, and gatherd never parses answers
 * otherwise (jsonv.h). */
#ifndef GATHERD_JSONPTR_H
#define GATHERD_JSONPTR_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

enum jsonptr_type {
    JSONPTR_MISSING,
    JSONPTR_STRING,
    JSONPTR_NUMBER,
    JSONPTR_OBJECT,
    JSONPTR_ARRAY,
    JSONPTR_BOOLEAN,
    JSONPTR_NULL,
};

/* Whether ptr is RFC 6901 syntax: empty, or '/'-separated tokens in which every '~' is
 * followed by '0' or '1'. */
bool jsonptr_valid(const char *ptr);

/* Finds ptr (valid syntax) in s[0..n), which holds one JSON value jsonv_check() accepted. The
 * type of what it finds, and its span in [*vs, *ve) unless JSONPTR_MISSING. Array tokens are
 * decimal indexes without leading zeros ("-" finds nothing). */
enum jsonptr_type jsonptr_find(const char *s, size_t n, const char *ptr, size_t *vs, size_t *ve);

/* Appends the characters of the JSON string s[0..n) (its quotes included) with its escapes
 * decoded to UTF-8. 0 or -ENOMEM. */
int jsonptr_unescape(struct buf *b, const char *s, size_t n);

/* "string", "number", "object", "array", "boolean", "null", "nothing". */
const char *jsonptr_type_name(enum jsonptr_type t);

#endif
