/* The syntax of configured values: what a URL, an endpoint path or a header name may be. The
 * string checks return NULL when the value is acceptable, else a constant reason for the
 * error message. */
#ifndef GATHERD_VALIDATE_H
#define GATHERD_VALIDATE_H

#include <stdbool.h>

/* An http(s) URL with a non-empty host, an optional numeric port, no white space or control
 * characters. Deliberately narrow: curl parses the rest at request time. */
const char *validate_url(const char *url);

/* An absolute path without query, fragment, white space or control characters, at most 1024
 * bytes, and not one of gatherd's own (/healthz, /readyz, /metrics). */
const char *validate_path(const char *path);

/* Whether ch may appear in an HTTP header name (an RFC 9110 token character). */
bool validate_tchar(char ch);

#endif
