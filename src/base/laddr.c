#include "laddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

_Static_assert(sizeof((struct sockaddr_un *)0)->sun_path == 108, "the reason below says 107");

/* At most five digits, so a valid address is short enough for every buffer that holds one. */
static const char *parse_port(const char *s, unsigned *port)
{
    size_t n = strspn(s, "0123456789");
    unsigned long v = strtoul(s, NULL, 10);
    if (n == 0 || n > 5 || s[n] != '\0' || v > 65535)
        return "PORT must be a number from 0 to 65535";
    *port = (unsigned)v;
    return NULL;
}

/* The one parser of listen addresses, shared by laddr_check() and listen_open() (runtime/listen.c):
 * syntax only, no system call and no DNS. NULL, or the reason the spec is not an address. */
const char *laddr_parse(const char *spec, struct laddr *a)
{
    memset(a, 0, sizeof *a);
    if (strncmp(spec, "unix:", 5) == 0) {
        size_t n = strlen(spec + 5);
        if (n == 0 || n >= sizeof((struct sockaddr_un *)0)->sun_path)
            return "unix socket path must be 1 to 107 bytes";
        a->unix_path = spec + 5;
        return NULL;
    }
    const char *colon, *why;
    unsigned port;
    if (spec[0] == '[') {
        const char *close_br = strchr(spec, ']');
        if (close_br == NULL)
            return "has no ']' closing the IPv6 address";
        if (close_br[1] != ':')
            return "needs :PORT after the IPv6 address";
        size_t n = (size_t)(close_br - spec - 1);
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        s6->sin6_family = AF_INET6;
        if (n >= sizeof a->host)
            return "is not a valid IPv6 address in [IPV6]:PORT";
        memcpy(a->host, spec + 1, n);
        if (inet_pton(AF_INET6, a->host, &s6->sin6_addr) != 1)
            return "is not a valid IPv6 address in [IPV6]:PORT";
        a->sslen = sizeof *s6;
        colon = close_br + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL)
            return "must be HOST:PORT, [IPV6]:PORT or unix:PATH";
        size_t n = (size_t)(colon - spec);
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        s4->sin_family = AF_INET;
        if (n >= sizeof a->host)
            return "HOST must be an IPv4 literal, * or localhost";
        memcpy(a->host, spec, n);
        if (strcmp(a->host, "*") == 0 || a->host[0] == '\0')
            strcpy(a->host, "0.0.0.0");
        else if (strcmp(a->host, "localhost") == 0)
            strcpy(a->host, "127.0.0.1");
        if (inet_pton(AF_INET, a->host, &s4->sin_addr) != 1)
            return "HOST must be an IPv4 literal, * or localhost";
        a->sslen = sizeof *s4;
    }
    if ((why = parse_port(colon + 1, &port)) != NULL)
        return why;
    if (a->ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
    return NULL;
}

const char *laddr_check(const char *spec)
{
    struct laddr a;
    return laddr_parse(spec, &a);
}
