/* The client address a request is attributed to (netacl_client_addr) with arbitrary trusted
 * lists, peers and X-Forwarded-For strings, and the request-id filter (reqid_valid),
 * both against independent models of their contracts (netacl.h, access.h).
 *
 * Input: a flags byte (peer kind, X-Forwarded-For absent, small output buffer, number of list
 * entries), an output-size byte, 16 peer address bytes, then newline-separated fields: the
 * trusted-list entries, the X-Forwarded-For value, and a request id.
 *
 * The model: entries are "unix" or ADDR[/PREFIX] (IPv4 or IPv6, prefix digits up to 32/128);
 * the peer is written as text (IPv4-mapped IPv6 as IPv4, "unix" for unix sockets); an
 * untrusted peer, or a missing X-Forwarded-For, gives the peer; otherwise X-Forwarded-For is
 * walked from the right, entries trimmed of spaces and tabs, each valid entry becomes the
 * answer and the walk goes on only while that entry is itself trusted; a malformed entry stops
 * the walk at the last good answer. The output is always NUL-terminated inside its size and
 * nothing past it is written (an output smaller than NETACL_ADDRSTRLEN truncates an entry like
 * snprintf, and leaves a peer address that does not fit empty, as inet_ntop does).
 *
 * Then the access line for such a request (access_format, without backends) must be one valid
 * JSON object whatever bytes the path, method and X-Forwarded-For carried, with the request
 * id used only when reqid_valid() accepted it, as httpd.c does. */
#include "access.h"
#include "reqid.h"
#include "buf.h"
#include "fuzz.h"
#include "jsonv.h"
#include "netacl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/un.h>

#define MAX_ENTRIES 8

struct mnet {
    uint8_t addr[16];
    unsigned prefix; /* over the 128-bit (IPv4-mapped) form */
};

struct macl {
    size_t n;
    bool unix_trusted;
    struct mnet nets[MAX_ENTRIES];
};

static bool m_parse_ip(const char *s, uint8_t out[16], unsigned *max)
{
    struct in_addr v4;
    if (inet_pton(AF_INET, s, &v4) == 1) {
        memset(out, 0, 16);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        *max = 32;
        return true;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        *max = 128;
        return true;
    }
    return false;
}

static bool m_add(struct macl *acl, const char *e)
{
    if (strcmp(e, "unix") == 0) {
        acl->unix_trusted = true;
        return true;
    }
    const char *slash = strchr(e, '/');
    size_t iplen = slash ? (size_t)(slash - e) : strlen(e);
    if (iplen == 0 || iplen >= INET6_ADDRSTRLEN)
        return false;
    char ip[INET6_ADDRSTRLEN];
    memcpy(ip, e, iplen);
    ip[iplen] = '\0';
    struct mnet net;
    unsigned max;
    if (!m_parse_ip(ip, net.addr, &max))
        return false;
    net.prefix = max;
    if (slash != NULL) {
        const char *d = slash + 1;
        if (*d == '\0')
            return false;
        unsigned long v = 0;
        for (; *d; d++) {
            if (*d < '0' || *d > '9')
                return false;
            v = v * 10 + (unsigned long)(*d - '0');
            if (v > 1000)
                v = 1000; /* saturate: anything this big is out of range anyway */
        }
        if (v > max)
            return false;
        net.prefix = (unsigned)v;
    }
    if (max == 32)
        net.prefix += 96;
    acl->nets[acl->n++] = net;
    return true;
}

static bool m_match(const struct macl *acl, const char *ip)
{
    uint8_t a[16];
    unsigned max;
    if (!m_parse_ip(ip, a, &max))
        return false;
    for (size_t i = 0; i < acl->n; i++) {
        bool eq = true;
        for (unsigned bit = 0; bit < acl->nets[i].prefix && eq; bit++) {
            unsigned byte = bit / 8, mask = 0x80u >> (bit % 8);
            eq = (a[byte] & mask) == (acl->nets[i].addr[byte] & mask);
        }
        if (eq)
            return true;
    }
    return false;
}

/* snprintf-like copy that truncates to outlen. */
static void put(char *out, size_t outlen, const char *s)
{
    size_t n = strlen(s);
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

static void model(const struct macl *acl, int kind, const uint8_t *pb, const char *xff, char *out,
                  size_t outlen)
{
    char text[INET6_ADDRSTRLEN] = "";
    bool trusted = false;
    out[0] = '\0';
    if (kind == 3) {
        put(out, outlen, "unix");
        trusted = acl->unix_trusted;
    } else {
        if (kind == 0 || (kind == 2))
            inet_ntop(AF_INET, kind == 0 ? pb : pb + 12, text, sizeof text);
        else if (pb[0] == 0 && !memcmp(pb, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12))
            inet_ntop(AF_INET, pb + 12, text, sizeof text);
        else
            inet_ntop(AF_INET6, pb, text, sizeof text);
        if (strlen(text) < outlen)
            put(out, outlen, text); /* inet_ntop writes nothing when the text does not fit */
    }
    if (!trusted)
        trusted = m_match(acl, out);
    if (!trusted || xff == NULL)
        return;
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *p = start, *q = end;
        while (p < q && (*p == ' ' || *p == '\t'))
            p++;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
            q--;
        size_t len = (size_t)(q - p);
        char hop[INET6_ADDRSTRLEN];
        uint8_t a[16];
        unsigned max;
        if (len == 0 || len >= sizeof hop)
            return;
        memcpy(hop, p, len);
        hop[len] = '\0';
        if (!m_parse_ip(hop, a, &max))
            return;
        put(out, outlen, hop);
        if (!m_match(acl, hop))
            return;
        end = start > xff ? start - 1 : xff;
    }
}

static bool m_rid_valid(const char *rid)
{
    size_t n = strlen(rid);
    if (n < 1 || n > REQID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = rid[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != '\0' && strchr("._:@/+=-", c) != NULL)))
            return false;
    }
    return true;
}

/* The next '\n'-terminated field (or the rest of the input), NUL-terminated and malloc'd. */
static char *field(struct cursor *c)
{
    const uint8_t *nl = c->left ? memchr(c->p, '\n', c->left) : NULL;
    size_t n = nl ? (size_t)(nl - c->p) : c->left;
    char *s = dup_n(c->p, n);
    c->p += n + (nl ? 1 : 0);
    c->left -= n + (nl ? 1 : 0);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cursor c = {data, size};
    uint8_t flags = cur_u8(&c);
    uint8_t outsel = cur_u8(&c);
    uint8_t pb[16] = {0};
    for (int i = 0; i < 16; i++)
        pb[i] = cur_u8(&c);
    int kind = flags & 3;
    bool no_xff = flags & 4;
    size_t outlen = (flags & 8) ? 1 + outsel % NETACL_ADDRSTRLEN : NETACL_ADDRSTRLEN;
    size_t nentries = (flags >> 4) % (MAX_ENTRIES + 1);

    struct netacl *acl = NULL;
    struct macl macl = {0};
    for (size_t i = 0; i < nentries; i++) {
        char *e = field(&c);
        int rc = netacl_add(&acl, e);
        bool ok = m_add(&macl, e);
        CHECK(rc == (ok ? 0 : -EINVAL), "netacl_add(\"%s\") = %d, model %s", e, rc,
              ok ? "valid" : "invalid");
        free(e);
    }
    CHECK(netacl_count(acl) == macl.n + (macl.unix_trusted ? 1 : 0), "count");
    char *xff = field(&c);
    char *rid = field(&c);

    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } peer;
    memset(&peer, 0, sizeof peer);
    if (kind == 0) {
        peer.in.sin_family = AF_INET;
        memcpy(&peer.in.sin_addr, pb, 4);
    } else if (kind == 1 || kind == 2) {
        peer.in6.sin6_family = AF_INET6;
        memcpy(&peer.in6.sin6_addr, pb, 16);
        if (kind == 2) {
            memset(&peer.in6.sin6_addr, 0, 10);
            peer.in6.sin6_addr.s6_addr[10] = peer.in6.sin6_addr.s6_addr[11] = 0xff;
        }
    } else {
        peer.un.sun_family = AF_UNIX;
    }

    char out[NETACL_ADDRSTRLEN + 16];
    memset(out, 'Z', sizeof out);
    netacl_client_addr(acl, &peer.sa, no_xff ? NULL : xff, out, outlen);
    for (size_t i = outlen; i < sizeof out; i++)
        CHECK(out[i] == 'Z', "wrote past outlen %zu", outlen);
    CHECK(memchr(out, '\0', outlen) != NULL, "not NUL-terminated");

    char want[NETACL_ADDRSTRLEN + 16];
    uint8_t mb[16];
    memcpy(mb, kind == 0 ? pb : (const uint8_t *)&peer.in6.sin6_addr, kind == 0 ? 4 : 16);
    model(&macl, kind, mb, no_xff ? NULL : xff, want, outlen);
    CHECK(strcmp(out, want) == 0, "client \"%s\", model \"%s\" (xff \"%s\", outlen %zu)", out, want,
          no_xff ? "(none)" : xff, outlen);
    if (outlen == NETACL_ADDRSTRLEN && kind != 3) {
        uint8_t a[16];
        unsigned max;
        CHECK(m_parse_ip(out, a, &max), "client \"%s\" is not an address", out);
    }
    /* netacl_match_text agrees with the model on what was answered. */
    CHECK(netacl_match_text(acl, out) == m_match(&macl, out), "match_text(\"%s\")", out);

    CHECK(reqid_valid(rid) == m_rid_valid(rid), "reqid_valid(\"%s\")", rid);
    CHECK(!reqid_valid(NULL), "NULL id valid");

    struct access_entry e = {
        .request_id = reqid_valid(rid) ? rid : "0123456789abcdef",
        .method = xff,
        .path = rid,
        .client = out,
        .status = 200 + flags,
        .usec = (uint64_t)outsel << 20,
        .bytes = size,
    };
    struct buf line = BUF_INIT;
    CHECK(access_format(&line, &e) == 0, "access_format failed");
    size_t vs, ve;
    CHECK(jsonv_check(line.data, line.len, &vs, &ve) == 0 && line.data[0] == '{',
          "access line is not one JSON object (bad byte %zu): %s", vs, line.data);
    buf_finish(&line);

    netacl_destroy(acl);
    free(xff);
    free(rid);
    return 0;
}
