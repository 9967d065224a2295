/* The framing rules of RFC 9112 that gatherd enforces on a request head beyond what
 * libmicrohttpd 0.9.75 does, over the head as sent: every length counts the bytes the client
 * sent, a NUL included. Pure: http/reqhead.c builds the view from libmicrohttpd's strings, and
 * tests/fuzz/fuzz_reqhead.c checks these rules against a model. */
#ifndef GATHERD_REQCHECK_H
#define GATHERD_REQCHECK_H

#include <stdbool.h>
#include <stddef.h>

struct reqcheck_field {
    const char *name, *value;
    size_t name_len, value_len;
};

struct reqcheck_head {
    bool http11;        /* HTTP/1.1; otherwise HTTP/1.0 */
    const char *target; /* the request target, not decoded */
    size_t target_len;
    const struct reqcheck_field *fields; /* in the order sent */
    size_t nfields;
};

/* Why a head is refused. Static strings. */
struct reqcheck_verdict {
    int status;          /* 400, or 501 for a transfer coding gatherd does not implement */
    const char *reason;  /* a short label, for the metric gatherd_http_rejected_total */
    const char *message; /* for the client */
};

/* 0 when the head is acceptable; otherwise -EINVAL with *out filled in. Checked: a NUL in the
 * target (raw, or %00 in its path); field names that are not RFC 9110 tokens (white space
 * before the colon makes "Content-Length " a name of its own, which libmicrohttpd ignores as
 * framing); a NUL in a field value; more than one Content-Length, or one beside
 * Transfer-Encoding; Host missing or repeated in HTTP/1.1; Transfer-Encoding in HTTP/1.0, or
 * whose codings (all its lines taken as one list) do not end in exactly one chunked (400), or
 * name a coding besides chunked (501); and a body in chunked coding at all, since gatherd's
 * endpoints take no body and libmicrohttpd accepts chunk lines that RFC 9112 does not (a bare
 * LF ending them): such a body could be framed differently by a proxy in front. */
int reqcheck_head(const struct reqcheck_head *h, struct reqcheck_verdict *out);

/* Whether [s, s + n) is a non-empty RFC 9110 token. */
bool reqcheck_token(const char *s, size_t n);

#endif
