#include "validate.h"

#include <string.h>
#include <strings.h>

/* A deliberately narrow URL check: an http(s) scheme, a non-empty host, an optional numeric
 * port, and no white space or control characters. curl parses the rest at request time. */
const char *validate_url(const char *url)
{
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0)
        p = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        p = url + 8;
    else
        return "must be an http:// or https:// URL";
    for (const char *q = url; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return "must not contain white space or control characters";
    size_t alen = strcspn(p, "/?#");
    const char *at = memchr(p, '@', alen);
    if (at != NULL) {
        alen -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    const char *hend;
    if (alen > 0 && *p == '[') {
        hend = memchr(p, ']', alen);
        if (hend == NULL || hend == p + 1)
            return "has a malformed IPv6 host";
        hend++;
    } else {
        hend = p;
        while (hend < p + alen && *hend != ':')
            hend++;
        if (hend == p)
            return "has no host";
    }
    if (hend < p + alen) {
        if (*hend != ':' || hend + 1 == p + alen)
            return "has a malformed port";
        long port = 0;
        for (const char *q = hend + 1; q < p + alen; q++) {
            if (*q < '0' || *q > '9')
                return "has a malformed port";
            port = port * 10 + (*q - '0');
            if (port > 65535)
                return "has a port above 65535";
        }
        if (port == 0)
            return "has port 0";
    }
    return NULL;
}

bool validate_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static const char *const reserved_paths[] = {"/healthz", "/readyz", "/metrics", NULL};

const char *validate_path(const char *path)
{
    if (path[0] != '/')
        return "must start with '/'";
    if (strlen(path) > 1024)
        return "must be at most 1024 characters";
    for (const char *q = path; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f || *q == '?' || *q == '#')
            return "must not contain '?', '#', white space or control characters";
    for (const char *const *r = reserved_paths; *r; r++)
        if (strcmp(*r, path) == 0)
            return "is reserved for gatherd's own use";
    return NULL;
}
