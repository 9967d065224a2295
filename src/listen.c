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

static int parse_port(const char *s, unsigned *port)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v > 65535)
        return -EINVAL;
    *port = (unsigned)v;
    return 0;
}

static int open_unix(const char *path, struct listener *l, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (path[0] == '\0' || strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "listen: unix socket path must be 1 to %zu bytes",
                 sizeof sa.sun_path - 1);
        return -EINVAL;
    }
    strcpy(sa.sun_path, path);
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
    if (strncmp(spec, "unix:", 5) == 0)
        return open_unix(spec + 5, l, err, errlen);

    struct sockaddr_storage ss;
    socklen_t sslen;
    char host[64];
    const char *colon;
    unsigned port;
    memset(&ss, 0, sizeof ss);
    if (spec[0] == '[') {
        const char *close_br = strchr(spec, ']');
        if (close_br == NULL || close_br[1] != ':' || (size_t)(close_br - spec - 1) >= sizeof host)
            goto bad;
        memcpy(host, spec + 1, (size_t)(close_br - spec - 1));
        host[close_br - spec - 1] = '\0';
        colon = close_br + 1;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            goto bad;
        sslen = sizeof *s6;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof host)
            goto bad;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        if (strcmp(host, "*") == 0 || host[0] == '\0')
            strcpy(host, "0.0.0.0");
        else if (strcmp(host, "localhost") == 0)
            strcpy(host, "127.0.0.1");
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            goto bad;
        sslen = sizeof *s4;
    }
    if (parse_port(colon + 1, &port) < 0)
        goto bad;
    if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);

    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
        bind(fd, (struct sockaddr *)&ss, sslen) == -1 || listen(fd, SOMAXCONN) == -1) {
        int e = errno;
        snprintf(err, errlen, "listen: %s: %s", spec, strerror(e));
        if (fd != -1)
            close(fd);
        return -e;
    }
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6)
        snprintf(l->addr, sizeof l->addr, "[%s]:%u", host,
                 ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    else
        snprintf(l->addr, sizeof l->addr, "%s:%u", host,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    l->fd = fd;
    return 0;
bad:
    snprintf(err, errlen,
             "listen: \"%s\" is not HOST:PORT, [IPV6]:PORT or unix:PATH (HOST an IPv4 literal, "
             "* or localhost; PORT 0-65535)",
             spec);
    return -EINVAL;
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
