/* What gatherd reads and checks in a request's head beyond what libmicrohttpd 0.9.75 does:
 * the framing rules it lets through (reqcheck.h), the target's length, and the client address
 * behind trusted proxies. Each takes the connection during its request callback only. */
#ifndef GATHERD_REQHEAD_H
#define GATHERD_REQHEAD_H

#include <stddef.h>

struct MHD_Connection;
struct netacl;
struct reqcheck_verdict;

/* The length of the request target (path and query) as sent, near enough. */
size_t reqhead_target_len(struct MHD_Connection *conn, const char *url);

/* Checks the head against the rules of reqcheck.h, reading it as libmicrohttpd laid it out:
 * `method`, `url` and `version` are the pointers the request callback was given, `target` the
 * request target as on_uri() copied it (NULL: not kept). 0 when acceptable; -EINVAL with the
 * verdict in *out; -ENOMEM. */
int reqhead_check(struct MHD_Connection *conn, const char *method, const char *url,
                  const char *version, const char *target, struct reqcheck_verdict *out);

/* Writes the client's address to out (at most outlen bytes, NUL-terminated): the peer's, or,
 * when the peer is in `trusted` (borrowed; NULL trusts none), the rightmost untrusted hop of
 * every X-Forwarded-For line taken as one list. */
void reqhead_client(struct MHD_Connection *conn, const struct netacl *trusted, char *out,
                    size_t outlen);

#endif
