#include "netacl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* Every network is kept as IPv6; IPv4 as ::ffff:a.b.c.d, so one comparison serves both. */
struct net {
    uint8_t addr[16];
    unsigned prefix;
};

struct netacl {
    size_t n;
    bool unix_trusted;
    struct net nets[];
};

static int parse_ip(const char *s, uint8_t out[16], unsigned *max_prefix)
{
    struct in_addr v4;
    if (inet_pton(AF_INET, s, &v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        *max_prefix = 32;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out) == 1) {
        *max_prefix = 128;
        return 0;
    }
    return -EINVAL;
}

int netacl_add(struct netacl **aclp, const char *cidr)
{
    struct netacl *acl = *aclp;
    size_t n = acl ? acl->n : 0;

    if (strcmp(cidr, "unix") == 0) {
        if (acl == NULL && (acl = calloc(1, sizeof *acl)) == NULL)
            return -ENOMEM;
        acl->unix_trusted = true;
        *aclp = acl;
        return 0;
    }

    char ip[INET6_ADDRSTRLEN];
    const char *slash = strchr(cidr, '/');
    size_t iplen = slash ? (size_t)(slash - cidr) : strlen(cidr);
    if (iplen == 0 || iplen >= sizeof ip)
        return -EINVAL;
    memcpy(ip, cidr, iplen);
    ip[iplen] = '\0';

    struct net net;
    unsigned max;
    if (parse_ip(ip, net.addr, &max) < 0)
        return -EINVAL;
    net.prefix = max;
    if (slash != NULL) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || errno != 0 || v > max)
            return -EINVAL;
        net.prefix = (unsigned)v;
    }
    if (max == 32)
        net.prefix += 96;

    struct netacl *grown = realloc(acl, sizeof *acl + (n + 1) * sizeof acl->nets[0]);
    if (grown == NULL)
        return -ENOMEM;
    if (acl == NULL)
        grown->unix_trusted = false;
    grown->nets[n] = net;
    grown->n = n + 1;
    *aclp = grown;
    return 0;
}

void netacl_destroy(struct netacl *acl)
{
    free(acl);
}

size_t netacl_count(const struct netacl *acl)
{
    return acl ? acl->n + (acl->unix_trusted ? 1 : 0) : 0;
}

static bool match_bytes(const struct netacl *acl, const uint8_t a[16])
{
    for (size_t i = 0; acl != NULL && i < acl->n; i++) {
        const struct net *net = &acl->nets[i];
        unsigned full = net->prefix / 8, rest = net->prefix % 8;
        if (memcmp(a, net->addr, full) != 0)
            continue;
        if (rest == 0)
            return true;
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((a[full] & mask) == (net->addr[full] & mask))
            return true;
    }
    return false;
}

bool netacl_match_text(const struct netacl *acl, const char *ip)
{
    uint8_t a[16];
    unsigned max;
    return parse_ip(ip, a, &max) == 0 && match_bytes(acl, a);
}

/* Copies the trimmed entry [p, q) into out if it is a valid address; returns whether it is. */
static bool take_entry(const char *p, const char *q, char *out, size_t outlen)
{
    while (p < q && (*p == ' ' || *p == '\t'))
        p++;
    while (q > p && (q[-1] == ' ' || q[-1] == '\t'))
        q--;
    char ip[INET6_ADDRSTRLEN];
    size_t len = (size_t)(q - p);
    uint8_t a[16];
    unsigned max;
    if (len == 0 || len >= sizeof ip || len >= outlen)
        return false;
    memcpy(ip, p, len);
    ip[len] = '\0';
    if (parse_ip(ip, a, &max) < 0)
        return false;
    memcpy(out, ip, len + 1);
    return true;
}

void netacl_client_addr(const struct netacl *acl, const struct sockaddr *peer, const char *xff,
                        char *out, size_t outlen)
{
    bool trusted = false;
    uint8_t a[16];
    unsigned max;

    if (outlen == 0)
        return;
    out[0] = '\0';
    if (peer == NULL) {
        snprintf(out, outlen, "unknown");
    } else if (peer->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, out, (socklen_t)outlen);
    } else if (peer->sa_family == AF_INET6) {
        const struct in6_addr *v6 = &((const struct sockaddr_in6 *)peer)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(v6))
            inet_ntop(AF_INET, &v6->s6_addr[12], out, (socklen_t)outlen);
        else
            inet_ntop(AF_INET6, v6, out, (socklen_t)outlen);
    } else if (peer->sa_family == AF_UNIX) {
        snprintf(out, outlen, "unix");
        trusted = acl != NULL && acl->unix_trusted;
    } else {
        snprintf(out, outlen, "unknown");
    }
    if (!trusted && parse_ip(out, a, &max) == 0)
        trusted = match_bytes(acl, a);
    if (!trusted || xff == NULL)
        return;

    /* Walk from the right: each hop is believed only while the one that reported it is. */
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        char hop[NETACL_ADDRSTRLEN];
        if (!take_entry(start, end, hop, sizeof hop))
            return;
        snprintf(out, outlen, "%s", hop);
        if (!netacl_match_text(acl, hop))
            return;
        end = start > xff ? start - 1 : xff;
    }
}
