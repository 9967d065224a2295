#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* What a listen address says, before anything is bound. */
struct addr {
    const char *unix_path; /* into the spec; NULL for TCP */
    struct sockaddr_storage ss;
    socklen_t sslen;
    char host[64]; /* the host as the listening line shows it */
};

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

/* The one parser of listen addresses, shared by listen_check() and listen_open(): syntax
 * only, no system call and no DNS. NULL, or the reason the spec is not an address. */
static const char *parse(const char *spec, struct addr *a)
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

const char *listen_check(const char *spec)
{
    struct addr a;
    return parse(spec, &a);
}

static int open_unix(const char *path, struct listener *l, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path); /* parse() checked the length */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket from a previous run */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof sa) == -1 || chmod(path, 0660) == -1 ||
        listen(fd, SOMAXCONN) == -1) {
        int e = errno;
        snprintf(err, errlen, "listen: unix:%s: %s", path, strerror(e));
        if (fd != -1)
            close(fd);
        return -e;
    }
    l->fd = fd;
    l->unix_path = strdup(path);
    snprintf(l->addr, sizeof l->addr, "unix:%s", path);
    return 0;
}

int listen_open(const char *spec, struct listener *l, char *err, size_t errlen)
{
    l->fd = -1;
    l->unix_path = NULL;
    l->addr[0] = '\0';
    struct addr a;
    const char *why = parse(spec, &a);
    if (why != NULL) {
        snprintf(err, errlen, "listen: \"%s\": %s", spec, why);
        return -EINVAL;
    }
    if (a.unix_path != NULL)
        return open_unix(a.unix_path, l, err, errlen);

    struct sockaddr_storage ss = a.ss;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
        bind(fd, (struct sockaddr *)&ss, a.sslen) == -1 || listen(fd, SOMAXCONN) == -1) {
        int e = errno;
        snprintf(err, errlen, "listen: %s: %s", spec, strerror(e));
        if (fd != -1)
            close(fd);
        return -e;
    }
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6)
        snprintf(l->addr, sizeof l->addr, "[%s]:%u", a.host,
                 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    else
        snprintf(l->addr, sizeof l->addr, "%s:%u", a.host,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    l->fd = fd;
    return 0;
}

void listen_close(struct listener *l)
{
    if (l->fd != -1) {
        close(l->fd);
        l->fd = -1;
    }
    if (l->unix_path != NULL) {
        unlink(l->unix_path);
        free(l->unix_path);
        l->unix_path = NULL;
    }
}
