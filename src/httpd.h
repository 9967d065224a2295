/* The HTTP side of a worker: a libmicrohttpd daemon in external-polling epoll mode, driven by
 * the worker's event_base, routing requests to gatherd's own endpoints and to fan-outs.
 * Aggregate requests are suspended in the daemon while their upstream transfers run and
 * resumed when their answer is ready. */
#ifndef GATHERD_HTTPD_H
#define GATHERD_HTTPD_H

#include <stddef.h>

struct httpd;
struct worker;

/* Starts the daemon on w's loop over the shared listening socket (borrowed; the daemon never
 * closes it). NULL on failure, with the reason in err. */
struct httpd *httpd_create(struct worker *w, char *err, size_t errlen);

/* Stops accepting new connections on this worker. Connections already open are still served. */
void httpd_quiesce(struct httpd *h);

/* Requests received and not yet completed (answered and sent, or abandoned). */
size_t httpd_in_flight(const struct httpd *h);

/* The drain limit: every aggregate request still waiting gets its running backends cut off as
 * timeouts and is answered with what it has. */
void httpd_expire_all(struct httpd *h, const char *why);

/* Cancels whatever still waits, lets the daemon finish it, stops the daemon; accepts NULL. */
void httpd_destroy(struct httpd *h);

#endif
