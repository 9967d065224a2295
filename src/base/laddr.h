/* Listen addresses as text: "HOST:PORT", "[IPV6]:PORT" or "unix:PATH". Syntax only: nothing is
 * bound and no name is resolved, so configuration checks and the listener share one parser. */
#ifndef GATHERD_LADDR_H
#define GATHERD_LADDR_H

#include <sys/socket.h>

/* What a listen address says, before anything is bound. */
struct laddr {
    const char *unix_path; /* into the spec; NULL for TCP */
    struct sockaddr_storage ss;
    socklen_t sslen;
    char host[64]; /* the host as the listening line shows it */
};

/* Parses spec into *a (HOST an IPv4 literal, "*", "localhost" or empty; PORT 1 to 5 digits,
 * 0-65535; a unix PATH of 1 to 107 bytes, pointed into spec). NULL when acceptable, else a
 * constant reason for the error message. */
const char *laddr_parse(const char *spec, struct laddr *a);

/* laddr_parse() without the result. */
const char *laddr_check(const char *spec);

#endif
