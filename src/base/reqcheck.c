#include "reqcheck.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

bool reqcheck_token(const char *s, size_t n)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alnum && (c == '\0' || strchr(extra, c) == NULL))
            return false;
    }
    return true;
}

static bool name_is(const struct reqcheck_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static int refuse(struct reqcheck_verdict *out, int status, const char *reason, const char *message)
{
    *out = (struct reqcheck_verdict){status, reason, message};
    return -EINVAL;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The transfer codings of every Transfer-Encoding line, taken as one comma-separated list
 * (RFC 9110 5.3), empty elements skipped (5.6.1): how many there are, how many are chunked,
 * whether the last one is, and whether any is neither chunked nor a well-formed token. A
 * coding's parameters (";q=...") are not looked at: any coding but chunked is refused anyway,
 * and chunked takes none. */
struct codings {
    unsigned n, chunked;
    bool last_chunked, other, malformed;
};

static void scan_codings(const char *v, size_t len, struct codings *c)
{
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t a = start, b = i;
        i++; /* past the comma */
        while (a < b && is_ows(v[a]))
            a++;
        while (b > a && is_ows(v[b - 1]))
            b--;
        if (a == b)
            continue;
        c->n++;
        bool chunked = b - a == 7 && strncasecmp(v + a, "chunked", 7) == 0;
        c->chunked += chunked;
        c->last_chunked = chunked;
        if (!chunked) {
            size_t tok = a;
            while (tok < b && v[tok] != ';' && !is_ows(v[tok]))
                tok++;
            c->other = true;
            c->malformed |= !reqcheck_token(v + a, tok - a);
        }
    }
}

static bool has_pct00(const char *s, size_t n)
{
    for (size_t i = 0; i + 2 < n; i++)
        if (s[i] == '%' && s[i + 1] == '0' && s[i + 2] == '0')
            return true;
    return false;
}

int reqcheck_head(const struct reqcheck_head *h, struct reqcheck_verdict *out)
{
    const char *q = memchr(h->target, '?', h->target_len);
    size_t path_len = q != NULL ? (size_t)(q - h->target) : h->target_len;
    if (memchr(h->target, '\0', h->target_len) != NULL || has_pct00(h->target, path_len))
        return refuse(out, 400, "nul_in_target", "NUL in the request target");

    unsigned content_length = 0, transfer_encoding = 0, host = 0;
    struct codings c = {0, 0, false, false, false};
    for (size_t i = 0; i < h->nfields; i++) {
        const struct reqcheck_field *f = &h->fields[i];
        if (!reqcheck_token(f->name, f->name_len))
            return refuse(out, 400, "bad_header_name",
                          "malformed header field name (white space before the colon?)");
        if (memchr(f->value, '\0', f->value_len) != NULL)
            return refuse(out, 400, "nul_in_header", "NUL in a header field value");
        if (name_is(f, "Content-Length")) {
            content_length++;
        } else if (name_is(f, "Transfer-Encoding")) {
            transfer_encoding++;
            scan_codings(f->value, f->value_len, &c);
        } else if (name_is(f, "Host")) {
            host++;
        }
    }
    /* libmicrohttpd takes the first Content-Length and reads what follows the body as a
     * further request: request smuggling past a proxy that framed it differently. */
    if (content_length > 1)
        return refuse(out, 400, "framing", "conflicting Content-Length headers");
    if (content_length > 0 && transfer_encoding > 0)
        return refuse(out, 400, "framing", "both Content-Length and Transfer-Encoding");
    if (host > 1 || (host == 0 && h->http11))
        return refuse(out, 400, "host", "an HTTP/1.1 request needs exactly one Host header");
    if (transfer_encoding == 0)
        return 0;
    if (!h->http11)
        return refuse(out, 400, "framing", "Transfer-Encoding in an HTTP/1.0 request");
    /* RFC 9112 6.3: unless chunked is the final coding, the body's length cannot be known. */
    if (c.n == 0 || !c.last_chunked || c.chunked > 1 || c.malformed)
        return refuse(out, 400, "framing", "Transfer-Encoding must end in chunked, once");
    if (c.other)
        return refuse(out, 501, "transfer_coding", "only the chunked transfer coding is known");
    return refuse(out, 400, "chunked_body",
                  "a request body must be sent with Content-Length, not chunked");
}
