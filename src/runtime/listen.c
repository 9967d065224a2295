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

/* What is at path before binding: nothing or a stale socket (removed) is 0; a socket something
 * accepts on, or anything else, is an error with the reason in why. A stale socket is one a
 * connect() is refused on: its process is gone. The probe does not block (a full backlog is
 * EAGAIN, and means alive). */
static int clear_stale(const char *path, const struct sockaddr_un *sa, const char **why)
{
    struct stat st;
    if (lstat(path, &st) == -1)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        *why = "exists and is not a socket";
        return -EEXIST;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe == -1)
        return -errno;
    int rc = connect(probe, (const struct sockaddr *)sa, sizeof *sa) == 0 ? 0 : errno;
    close(probe);
    if (rc == ECONNREFUSED)
        return unlink(path) == -1 && errno != ENOENT ? -errno : 0;
    if (rc == ENOENT)
        return 0; /* removed meanwhile */
    if (rc == 0 || rc == EAGAIN || rc == EINPROGRESS) {
        *why = "another process is accepting connections on it";
        return -EADDRINUSE;
    }
    return -rc;
}

static int open_unix(const char *path, struct listener *l, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, path); /* laddr_parse() checked the length */
    const char *why = NULL;
    int rc = clear_stale(path, &sa, &why);
    if (rc < 0) {
        snprintf(err, errlen, "listen: unix:%s: %s", path, why ? why : strerror(-rc));
        return rc;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1 || bind(fd, (struct sockaddr *)&sa, sizeof sa) == -1) {
        int e = errno;
        snprintf(err, errlen, "listen: unix:%s: %s", path, strerror(e));
        if (fd != -1)
            close(fd);
        return -e;
    }
    /* The file bind() made, told apart from whatever may replace it at this path later: only
     * this one is removed at exit. */
    struct stat st;
    if (lstat(path, &st) == -1 || chmod(path, 0660) == -1 || listen(fd, SOMAXCONN) == -1 ||
        (l->unix_path = strdup(path)) == NULL) {
        int e = errno;
        snprintf(err, errlen, "listen: unix:%s: %s", path, strerror(e));
        close(fd);
        unlink(path);
        return -e;
    }
    l->fd = fd;
    l->unix_dev = st.st_dev;
    l->unix_ino = st.st_ino;
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
        /* Another process may have replaced the file meanwhile (and serve on it): leave that. */
        struct stat st;
        if (lstat(l->unix_path, &st) == 0 && st.st_dev == l->unix_dev && st.st_ino == l->unix_ino)
            unlink(l->unix_path);
        free(l->unix_path);
        l->unix_path = NULL;
    }
}
