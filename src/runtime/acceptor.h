/* Taking new connections off the listening socket that every worker shares, so that each
 * worker holds about as many as the others.
 *
 * The kernel wakes every worker's loop for a new connection. Left to libmicrohttpd, whichever
 * loop ran first took it, so a burst of connections (a client pool opening, a proxy's
 * keep-alive pool) stuck to one worker: wrk's 64 connections split 52/12 over two, and the
 * busy loop's answers took four times longer. An acceptor holding more connections than the
 * least busy worker plus one steps back for a millisecond so that one can take the next
 * connection, and takes it itself if nobody has by then. It reads every worker's
 * open-connection gauge (atomics, once per new connection), nothing else of theirs. */
#ifndef GATHERD_ACCEPTOR_H
#define GATHERD_ACCEPTOR_H

#include <sys/socket.h>

struct event_base;
struct log_sink;
struct metrics;

/* Receives each accepted socket (non-blocking, close-on-exec) and owns it from then on. */
typedef void (*acceptor_take_fn)(void *arg, int fd, const struct sockaddr *addr, socklen_t len);

struct acceptor_opts {
    struct event_base *base;
    int listen_fd; /* borrowed; shared by nworkers acceptors */
    unsigned worker, nworkers;
    struct metrics *metrics; /* whose http_connections_open gauges tell each worker's load */
    long max_connections;    /* at this many, new connections wait in the backlog */
    struct log_sink *log;
    acceptor_take_fn take;
    void *arg;
};

/* Starts watching the listening socket. NULL when out of memory. */
struct acceptor *acceptor_create(const struct acceptor_opts *opts);

/* Stops accepting for good (a drain); the socket itself is not closed. */
void acceptor_stop(struct acceptor *a);

/* Stops and frees; accepts NULL. */
void acceptor_destroy(struct acceptor *a);

#endif
