/* gatherd's own request-head checks (reqcheck_head, reqcheck_token) against an independent model
 * of the RFC 9112 rules they enforce (reqcheck.h).
 *
 * Input: a flags byte (bit 0: HTTP/1.1), then newline-separated lines: the request target,
 * then one header field per line, its name up to the first ':' and its value after it (a line
 * without ':' is a name with an empty value). Any byte but '\n' may appear anywhere, NUL
 * included, as libmicrohttpd can hand a value over cut short and reqhead.c restores its length.
 *
 * The model: a NUL in the target, or "%00" before its '?', is refused; so is a field name that
 * is not a token, a value holding a NUL, more than one Content-Length, Content-Length beside
 * Transfer-Encoding, Host missing (HTTP/1.1) or repeated; Transfer-Encoding in HTTP/1.0 is
 * refused, and otherwise its codings (every line's, as one comma list, blanks skipped, each
 * trimmed of spaces and tabs) must end in the only chunked, others named by a token, else 400;
 * any other coding is 501; a lone chunked is 400 (gatherd takes no chunked body). Every refusal
 * says why with a status of 400 or 501 and a message. */
#include "fuzz.h"
#include "reqcheck.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>

#define MAX_FIELDS 64

static bool m_tchar(unsigned char c)
{
    if (isalnum(c) && c < 128)
        return true;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

static bool m_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!m_tchar((unsigned char)s[i]))
            return false;
    return n > 0;
}

static bool m_eq(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n != k)
        return false;
    for (size_t i = 0; i < n; i++)
        if (tolower((unsigned char)s[i]) != tolower((unsigned char)lit[i]))
            return false;
    return true;
}

static int model(bool http11, const char *target, size_t tlen, const struct reqcheck_field *f,
                 size_t nf)
{
    for (size_t i = 0; i < tlen; i++) {
        if (target[i] == '?')
            break;
        if (i + 2 < tlen && target[i] == '%' && target[i + 1] == '0' && target[i + 2] == '0')
            return 400;
    }
    for (size_t i = 0; i < tlen; i++)
        if (target[i] == '\0')
            return 400;
    unsigned cl = 0, te = 0, host = 0;
    for (size_t i = 0; i < nf; i++) {
        if (!m_token(f[i].name, f[i].name_len))
            return 400;
        for (size_t j = 0; j < f[i].value_len; j++)
            if (f[i].value[j] == '\0')
                return 400;
        cl += m_eq(f[i].name, f[i].name_len, "content-length");
        te += m_eq(f[i].name, f[i].name_len, "transfer-encoding");
        host += m_eq(f[i].name, f[i].name_len, "host");
    }
    if (cl > 1 || (cl && te) || host > 1 || (host == 0 && http11))
        return 400;
    if (te == 0)
        return 0;
    if (!http11)
        return 400;
    /* The codings, in order, over every Transfer-Encoding line. */
    unsigned n = 0, chunked = 0;
    bool last_chunked = false, other = false, bad = false;
    for (size_t i = 0; i < nf; i++) {
        if (!m_eq(f[i].name, f[i].name_len, "transfer-encoding"))
            continue;
        const char *v = f[i].value;
        size_t len = f[i].value_len, p = 0;
        while (p <= len) {
            size_t e = p;
            while (e < len && v[e] != ',')
                e++;
            size_t a = p, b = e;
            while (a < b && (v[a] == ' ' || v[a] == '\t'))
                a++;
            while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
                b--;
            if (b > a) {
                n++;
                bool c = m_eq(v + a, b - a, "chunked");
                chunked += c;
                last_chunked = c;
                if (!c) {
                    size_t t = a;
                    while (t < b && v[t] != ';' && v[t] != ' ' && v[t] != '\t')
                        t++;
                    other = true;
                    bad |= !m_token(v + a, t - a);
                }
            }
            p = e + 1;
        }
    }
    if (n == 0 || !last_chunked || chunked != 1 || bad)
        return 400;
    return other ? 501 : 400;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cursor c = {data, size};
    bool http11 = cur_u8(&c) & 1;
    const char *lines[MAX_FIELDS + 1];
    size_t lens[MAX_FIELDS + 1], nlines = 0;
    while (nlines < MAX_FIELDS + 1) {
        const uint8_t *nl = c.left ? memchr(c.p, '\n', c.left) : NULL;
        size_t n = nl ? (size_t)(nl - c.p) : c.left;
        lines[nlines] = (const char *)c.p;
        lens[nlines++] = n;
        c.p += n + (nl ? 1 : 0);
        c.left -= n + (nl ? 1 : 0);
        if (nl == NULL)
            break;
    }
    /* Copies, so that ASan sees a read past a field's length. */
    char *target = dup_n(lines[0], lens[0]);
    struct reqcheck_field fields[MAX_FIELDS];
    char *copies[MAX_FIELDS];
    size_t nf = nlines - 1;
    for (size_t i = 0; i < nf; i++) {
        const char *l = lines[i + 1];
        const char *colon = memchr(l, ':', lens[i + 1]);
        size_t nlen = colon ? (size_t)(colon - l) : lens[i + 1];
        copies[i] = dup_n(l, lens[i + 1]);
        fields[i] = (struct reqcheck_field){copies[i], copies[i] + (colon ? nlen + 1 : nlen), nlen,
                                            colon ? lens[i + 1] - nlen - 1 : 0};
    }
    struct reqcheck_head h = {http11, target, lens[0], fields, nf};
    struct reqcheck_verdict v = {0, NULL, NULL};
    int rc = reqcheck_head(&h, &v);
    int want = model(http11, target, lens[0], fields, nf);
    CHECK(rc == 0 || rc == -EINVAL, "rc %d", rc);
    CHECK((rc == 0 ? 0 : v.status) == want, "status %d, model %d (target \"%.*s\", %zu fields)",
          rc == 0 ? 0 : v.status, want, (int)lens[0], target, nf);
    if (rc != 0)
        CHECK(v.reason != NULL && v.message != NULL && v.message[0] != '\0', "no reason");
    for (size_t i = 0; i < nf; i++)
        CHECK(reqcheck_token(fields[i].name, fields[i].name_len) ==
                  m_token(fields[i].name, fields[i].name_len),
              "token \"%.*s\"", (int)fields[i].name_len, fields[i].name);
    for (size_t i = 0; i < nf; i++)
        free(copies[i]);
    free(target);
    return 0;
}
