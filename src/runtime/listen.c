#include "listen.h"

#include "laddr.h"

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

static int open_unix(const char *path, struct listener *l, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path); /* laddr_parse() checked the length */
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
    struct laddr a;
    const char *why = laddr_parse(spec, &a);
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
