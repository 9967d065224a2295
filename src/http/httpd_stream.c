/* Streamed answers (httpd_stream_begin() and the rest, httpd.h): libmicrohttpd pulls the pieces
 * through a content reader, and a stream with nothing to send waits in the daemon as a parked
 * request does. */
#include "httpd_int.h"

#include "buf.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <string.h>
#include <sys/types.h>

/* Parks a stream that has nothing to send, or wakes it; the same watch and list as a parked
 * request, so a client that leaves meanwhile is noticed and shutdown resumes it. -EPIPE, and
 * nothing parked, when the client hung up while the stream was being written: the watch saw
 * that edge with nothing parked, and it does not come again. */
static int stream_park(struct httpd_req *r)
{
    int rc = httpd__suspend(r);
    r->stream_parked = rc == 0;
    return rc;
}

static void stream_wake(struct httpd_req *r)
{
    if (!r->stream_parked)
        return;
    r->stream_parked = false;
    httpd__resume(r, r->phase);
}

/* libmicrohttpd asks for the next bytes of a stream: what is queued, the end, or nothing yet,
 * in which case the connection is suspended until httpd_stream_write() or _end(): returning 0
 * alone would have it ask again on every run of the daemon. */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct httpd_req *r = cls;
    (void)pos;
    if (r->phase == PH_GONE)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t avail = r->stream.len - r->stream_off;
    if (avail > 0) {
        size_t n = avail < max ? avail : max;
        memcpy(out, r->stream.data + r->stream_off, n);
        r->stream_off += n;
        if (r->stream_off == r->stream.len) /* all handed over: reuse the buffer */
            r->stream.len = r->stream_off = 0;
        return (ssize_t)n;
    }
    if (r->stream_ended)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (stream_park(r) < 0) { /* it left as a parked request would have: stop its work */
        r->phase = PH_GONE;
        r->h->env.hooks->gone(r->h->env.arg, r);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    return 0;
}

int httpd_stream_begin(struct httpd_req *r, int status, const char *ctype,
                       const struct httpd_header *extra, size_t nextra)
{
    if (r->phase != PH_NEW)
        return -EALREADY;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, r, NULL);
    if (resp == NULL)
        return -ENOMEM;
    httpd__add_headers(r, resp, ctype, extra, nextra);
    r->streaming = true;
    return httpd__queue(r, status, resp, 0) == MHD_YES ? 0 : -ENOMEM;
}

int httpd_stream_write(struct httpd_req *r, const char *data, size_t len)
{
    if (!r->streaming || r->stream_ended)
        return -EALREADY;
    if (r->phase == PH_GONE)
        return -EPIPE;
    if (buf_append(&r->stream, data, len) < 0)
        return -ENOMEM;
    r->bytes_out += len;
    stream_wake(r);
    return 0;
}

int httpd_stream_end(struct httpd_req *r)
{
    if (!r->streaming || r->stream_ended)
        return -EALREADY;
    r->stream_ended = true;
    stream_wake(r);
    return 0;
}
