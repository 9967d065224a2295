/* Percent-encoding (RFC 3986) of values gatherd puts into upstream URLs, and the decoding of
 * the values a client sends. */
#ifndef GATHERD_PCT_H
#define GATHERD_PCT_H

#include <stddef.h>

struct buf;

/* Appends s[0..n) with every byte but the unreserved characters (A-Za-z0-9-._~) written as %XX,
 * so a value can never leave the URL component it is put in. 0 or -ENOMEM. */
int pct_encode(struct buf *b, const char *s, size_t n);

/* Decodes s[0..n) into out, which has room for n bytes (decoding never grows); *outlen gets
 * the decoded length. '+' stays '+'. -EINVAL for a '%' not followed by two hex digits, or a
 * decoded NUL byte. */
int pct_decode(const char *s, size_t n, char *out, size_t *outlen);

#endif
