/* JSON without trees. gatherd never needs to look inside an upstream body: it only has to know
 * that the bytes are one well-formed JSON value so they can be copied verbatim into the join.
 * Validating in place costs a fraction of parsing into jansson and dumping again (DESIGN.md). */
#ifndef GATHERD_JSONV_H
#define GATHERD_JSONV_H

#include <stddef.h>

struct buf;

/* Deeper nesting than this is rejected rather than risking unbounded work. */
#define JSONV_MAX_DEPTH 512

/* Checks that s[0..n) holds exactly one JSON value (RFC 8259 grammar), optionally surrounded
 * by white space, in valid UTF-8, nested at most JSONV_MAX_DEPTH deep. Returns 0 and stores
 * the value's span in [*start, *end), or -1 and stores the offset of the first bad byte in
 * *start. s need not be NUL-terminated. */
int jsonv_check(const char *s, size_t n, size_t *start, size_t *end);

/* Appends s[0..n) as a quoted JSON string, escaping what RFC 8259 requires. Bytes that are not
 * valid UTF-8 are replaced by U+FFFD so the output is always valid JSON. 0 or -ENOMEM. */
int jsonv_append_string(struct buf *b, const char *s, size_t n);

#endif
