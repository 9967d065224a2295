#include "reqhead.h"

#include "buf.h"
#include "netacl.h"
#include "reqcheck.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
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

/* libmicrohttpd 0.9.75 keeps the whole head in one buffer, in the order sent: the request
 * line, then each header line, every line ending, colon and space after the method replaced by
 * NUL bytes, and hands out pointers into it. It measures names and values with strlen(), so a
 * NUL sent inside a value cuts it short, and MHD_get_connection_values_n() reports the cut
 * length. The bytes between the end of one value and the next field's name are then not only
 * the line's ending (one or two NULs for LF or CRLF): that is how a NUL is seen. (A NUL just
 * before a bare LF ending looks like a CRLF, and passes.) A folded line (obs-fold) is joined in
 * another part of the pool, which breaks the order: RFC 9112 lets a server refuse it, and that
 * is what happens. */
struct fields {
    struct reqcheck_field *v;
    size_t n, cap;
    bool failed;
};

static enum MHD_Result add_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                 size_t key_size, const char *value, size_t value_size)
{
    struct fields *fs = cls;
    (void)kind;
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? 2 * fs->cap : 32;
        struct reqcheck_field *v = realloc(fs->v, cap * sizeof *v);
        if (v == NULL) {
            fs->failed = true;
            return MHD_NO;
        }
        fs->v = v;
        fs->cap = cap;
    }
    fs->v[fs->n++] =
        (struct reqcheck_field){key, value ? value : "", key_size, value ? value_size : 0};
    return MHD_YES;
}

/* Widens each value to the bytes it spans up to the next field (or the end of the head, which
 * takes two line endings), less the NULs that were its line ending. False when the fields are
 * not laid out in order in [lo, end). */
static bool widen_values(struct fields *fs, uintptr_t lo, uintptr_t end)
{
    for (size_t i = 0; i < fs->n; i++) {
        struct reqcheck_field *f = &fs->v[i];
        uintptr_t name = (uintptr_t)f->name, value = (uintptr_t)f->value;
        uintptr_t next = i + 1 < fs->n ? (uintptr_t)fs->v[i + 1].name : end;
        if (name < lo || value <= name || value + f->value_len >= next || next > end)
            return false;
        size_t span = next - value, ending = i + 1 < fs->n ? 2 : 4;
        while (ending > 0 && span > f->value_len && f->value[span - 1] == '\0') {
            span--;
            ending--;
        }
        f->value_len = span;
        lo = next;
    }
    return true;
}

int reqhead_check(struct MHD_Connection *conn, const char *method, const char *url,
                  const char *version, const char *target, struct reqcheck_verdict *out)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    struct fields fs = {NULL, 0, 0, false};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, add_field, &fs);
    if (fs.failed) {
        free(fs.v);
        return -ENOMEM;
    }
    size_t target_len = target != NULL ? strlen(target) : 0;
    /* The target as sent runs from url to the NUL that replaced the space before the version;
     * on_uri() copied it only up to its first NUL. (Without a version MHD points elsewhere.) */
    bool in_line = version[0] != '\0' && (uintptr_t)version > (uintptr_t)url;
    size_t url_span = in_line ? (size_t)((uintptr_t)version - (uintptr_t)url - 1) : target_len;
    uintptr_t end = ci != NULL ? (uintptr_t)method + ci->header_size : UINTPTR_MAX;
    int rc;
    if (target != NULL && url_span != target_len) {
        *out = (struct reqcheck_verdict){400, "nul_in_target", "NUL in the request target"};
        rc = -EINVAL;
    } else if (in_line && !widen_values(&fs, (uintptr_t)version, end)) {
        *out = (struct reqcheck_verdict){400, "bad_header",
                                         "malformed header section (obsolete line folding?)"};
        rc = -EINVAL;
    } else {
        struct reqcheck_head h = {strcmp(version, MHD_HTTP_VERSION_1_0) != 0, target ? target : "",
                                  target_len, fs.v, fs.n};
        rc = reqcheck_head(&h, out);
    }
    free(fs.v);
    return rc;
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
