/* Trusted-proxy lists and the client address a request is attributed to. */
#ifndef GATHERD_NETACL_H
#define GATHERD_NETACL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* An immutable list of networks once built; safe to read from many threads. */
struct netacl;

/* Longest textual address written by netacl_client_addr(), with its NUL. */
#define NETACL_ADDRSTRLEN 48

/* Appends "ADDR" or "ADDR/PREFIX" (IPv4 or IPv6) to *acl, creating it on first use.
 * 0, -EINVAL for a malformed entry, -ENOMEM. */
int netacl_add(struct netacl **acl, const char *cidr);

/* Frees the list; accepts NULL. */
void netacl_destroy(struct netacl *acl);

size_t netacl_count(const struct netacl *acl);

/* True when the textual address `ip` lies in one of the networks. */
bool netacl_match_text(const struct netacl *acl, const char *ip);

/* Writes the address the request is attributed to into out: the peer's own address, unless the
 * peer is trusted and `xff` (an X-Forwarded-For value, may be NULL) names others; then the
 * rightmost address of xff that is not itself trusted (a client cannot forge what trusted
 * proxies appended; everything left of the first untrusted hop is the client's to invent).
 * A malformed entry in xff stops the walk at the last good address. Unix-socket peers are
 * written as "unix" and count as trusted when the list contains "unix". */
void netacl_client_addr(const struct netacl *acl, const struct sockaddr *peer, const char *xff,
                        char *out, size_t outlen);

#endif
