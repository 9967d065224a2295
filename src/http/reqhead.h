/* What gatherd reads and checks in a request's head beyond what libmicrohttpd 0.9.75 does:
 * the framing rules it lets through, the target's length, and the client address behind
 * trusted proxies. Each takes the connection during its request callback only. */
#ifndef GATHERD_REQHEAD_H
#define GATHERD_REQHEAD_H

#include <stddef.h>

struct MHD_Connection;
struct netacl;

/* The length of the request target (path and query) as sent, near enough. */
size_t reqhead_target_len(struct MHD_Connection *conn, const char *url);

/* Why the head's framing must be refused with 400 (a static string), or NULL when acceptable.
 * `version` is the request's HTTP version as libmicrohttpd reports it. */
const char *reqhead_framing_problem(struct MHD_Connection *conn, const char *version);

/* Writes the client's address to out (at most outlen bytes, NUL-terminated): the peer's, or,
 * when the peer is in `trusted` (borrowed; NULL trusts none), the rightmost untrusted hop of
 * every X-Forwarded-For line taken as one list. */
void reqhead_client(struct MHD_Connection *conn, const struct netacl *trusted, char *out,
                    size_t outlen);

#endif
