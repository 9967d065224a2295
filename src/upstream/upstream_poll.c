#include "upstream_int.h"

#include <curl/curl.h>
#include <poll.h>
#include <stddef.h>
#include <time.h>

/* curl 7.88 polls a socket with a 0 timeout each time it wants to know whether it is readable,
 * and it asks twice for every transfer on a kept-alive connection: whether the idle connection
 * is still alive, then, right after sending the request, whether the answer is already there.
 * Nothing switches either off; both are answered here without a system call where the loop
 * already knows the answer.
 *
 * The first: an idle connection's socket stays watched for reading while it is parked
 * (upstream_sock.c), and a watch that sees a byte, a close or an error stops. A parked socket
 * whose watch is still on was quiet as of the loop's last epoll_wait, so the connection is
 * alive as far as a poll now would tell, short of a close that came in since: the same thing
 * nginx's upstream keepalive relies on, and what curl meets by retrying a request on a fresh
 * connection when a reused one closes before any byte of the answer (every such handle is then
 * closed, not kept: upstream.c). It is trusted for a second after the connection went idle;
 * an upstream that closes idle connections on a timer does so later than that, and past it the
 * check is real again.
 *
 * The second nearly always finds nothing: the answer seldom comes in the microseconds since,
 * and when it has not, curl waits for the socket's event, which the registry watches
 * level-triggered, as it does for all else. So while one curl_multi_socket_action() runs, a
 * 0-timeout read check of a socket that an earlier check of that same call found not readable
 * gets that answer again. The only answer ever repeated or given from a watch is "not
 * readable", which at worst leaves bytes that came in the meantime to the next loop iteration.
 * Every other poll() of the process, on any thread, goes to the system as it is (as ppoll(),
 * which is the same call with no signal mask). */

/* Sockets found not readable in the running call; a full memo just polls. */
#define MEMO_CAP 32

struct memo {
    const struct upstream *u; /* of the pool whose multi runs */
    int n;
    int fds[MEMO_CAP];
};

/* The worker thread's memo while it is inside curl_multi_socket_action(); NULL otherwise. */
static _Thread_local struct memo *running;

/* What Curl_socket_check() asks when it wants to know whether one socket is readable. */
#define CURL_READ_CHECK (POLLRDNORM | POLLIN | POLLRDBAND | POLLPRI)

static int real_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    struct timespec ts = {timeout / 1000, (long)(timeout % 1000) * 1000000L};
    return ppoll(fds, nfds, timeout < 0 ? NULL : &ts, NULL);
}

/* Interposes libc's poll() for the whole process (libcurl calls it through the PLT, and the
 * executable's definition comes first); see the top of this file. glibc declares the array
 * write-only, which this definition, reading the events asked for, is not. */
#pragma GCC diagnostic push
#ifndef __clang__ /* clang has no such warning, and warns about the name */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
int poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    struct memo *m = running;
    if (m == NULL || nfds != 1 || timeout != 0 || fds[0].events != CURL_READ_CHECK)
        return real_poll(fds, nfds, timeout);
    if (upstream__sock_quiet(m->u, fds[0].fd)) {
        fds[0].revents = 0;
        return 0;
    }
    for (int i = 0; i < m->n; i++)
        if (m->fds[i] == fds[0].fd) {
            fds[0].revents = 0;
            return 0;
        }
    int r = real_poll(fds, 1, 0);
    if (r == 0 && m->n < MEMO_CAP)
        m->fds[m->n++] = fds[0].fd;
    return r;
}
#pragma GCC diagnostic pop

void upstream__poll_socket_action(struct upstream__shard *sh, curl_socket_t s, int action)
{
    struct memo m = {.u = sh->pool->u};
    struct memo *outer = running; /* none: curl's callbacks never drive a multi */
    int n;
    running = &m;
    curl_multi_socket_action(sh->multi, s, action, &n);
    running = outer;
}

void upstream__poll_forget(curl_socket_t s)
{
    struct memo *m = running;
    for (int i = 0; m != NULL && i < m->n; i++)
        if (m->fds[i] == s)
            m->fds[i] = m->fds[--m->n];
}
