/* The listening socket, opened once by the control thread and shared by every worker's daemon:
 * the kernel hands each new connection to one worker, and closing this one descriptor refuses
 * new connections for all of them at once. */
#ifndef GATHERD_LISTEN_H
#define GATHERD_LISTEN_H

#include <stddef.h>
#include <sys/types.h>

struct listener {
    int fd;          /* -1 when closed */
    char addr[160];  /* the address really bound ("127.0.0.1:40321", "[::1]:80", "unix:/p") */
    char *unix_path; /* removed again on close, if still the file bound (unix_dev, unix_ino) */
    dev_t unix_dev;
    ino_t unix_ino;
};

/* Opens a non-blocking listening socket on an address laddr_check() accepts. 0, or a negative
 * errno with the reason in err (-EINVAL for a spec laddr_check() refuses). At a unix: path, a
 * stale socket (connect() is refused) is replaced; a live one is -EADDRINUSE and anything else
 * -EEXIST, both left alone. */
int listen_open(const char *spec, struct listener *l, char *err, size_t errlen);

/* Closes the socket and removes a Unix socket's file if it is still the one this listener
 * bound (same device and inode), not one another process put there since; safe to call
 * twice. */
void listen_close(struct listener *l);

#endif
