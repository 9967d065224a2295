#include "reqhead.h"

#include "buf.h"
#include "netacl.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static enum MHD_Result add_arg_len(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    size_t *n = cls;
    (void)kind;
    *n += strlen(key) + (value ? strlen(value) : 0) + 2;
    return MHD_YES;
}

/* The target's length as sent, near enough: libmicrohttpd has split the query into arguments
 * (and decoded them, so this can only undercount a percent-encoded query). */
size_t reqhead_target_len(struct MHD_Connection *conn, const char *url)
{
    size_t n = strlen(url);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_arg_len, &n);
    return n;
}

struct framing {
    unsigned content_length, transfer_encoding, host;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct framing *f = cls;
    (void)kind;
    (void)value;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        f->content_length++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        f->transfer_encoding++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        f->host++;
    return MHD_YES;
}

/* RFC 9112 says to reject what libmicrohttpd 0.9.75 lets through: more than one
 * Content-Length, or one beside Transfer-Encoding (libmicrohttpd takes the first length and
 * reads the rest of the body as a further request: request smuggling past a proxy that framed
 * it differently), and an HTTP/1.1 request without exactly one Host. NULL when acceptable. */
const char *reqhead_framing_problem(struct MHD_Connection *conn, const char *version)
{
    struct framing f = {0, 0, 0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.content_length > 1)
        return "conflicting Content-Length headers";
    if (f.content_length > 0 && f.transfer_encoding > 0)
        return "both Content-Length and Transfer-Encoding";
    if (f.host > 1 || (f.host == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0))
        return "an HTTP/1.1 request needs exactly one Host header";
    return NULL;
}

/* Every X-Forwarded-For line of a request, in order, as one list: a proxy may add a line of
 * its own instead of appending to the client's (RFC 9110 makes both mean the same), and
 * reading only the first line would leave the client's own claim as the rightmost hop. */
struct xff {
    const char *first;
    unsigned n;
    struct buf joined; /* used from the second line on */
    bool failed;
};

static enum MHD_Result join_xff(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    struct xff *x = cls;
    (void)kind;
    if (value == NULL || strcasecmp(key, "X-Forwarded-For") != 0)
        return MHD_YES;
    if (x->n++ == 0) {
        x->first = value;
        return MHD_YES;
    }
    if ((x->n == 2 && buf_appends(&x->joined, x->first) < 0) || buf_appends(&x->joined, ", ") < 0 ||
        buf_appends(&x->joined, value) < 0)
        x->failed = true;
    return x->failed ? MHD_NO : MHD_YES;
}

void reqhead_client(struct MHD_Connection *conn, const struct netacl *trusted, char *out,
                    size_t outlen)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    struct xff x = {NULL, 0, BUF_INIT, false};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, join_xff, &x);
    /* Out of memory joining them: the peer's own address, which is at least true. */
    const char *xff = x.failed ? NULL : x.n > 1 ? x.joined.data : x.first;
    netacl_client_addr(trusted, ci ? ci->client_addr : NULL, xff, out, outlen);
    buf_finish(&x.joined);
}
