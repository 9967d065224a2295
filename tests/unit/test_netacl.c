#include "envsubst.h"
#include "netacl.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/un.h>

static const char *client(const struct netacl *acl, const char *peer, const char *xff)
{
    static char out[NETACL_ADDRSTRLEN];
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    struct sockaddr_un su = {.sun_family = AF_UNIX};
    const struct sockaddr *sa;
    if (strcmp(peer, "unix") == 0)
        sa = (struct sockaddr *)&su;
    else if (inet_pton(AF_INET, peer, &s4.sin_addr) == 1)
        sa = (struct sockaddr *)&s4;
    else {
        inet_pton(AF_INET6, peer, &s6.sin6_addr);
        sa = (struct sockaddr *)&s6;
    }
    netacl_client_addr(acl, sa, xff, out, sizeof out);
    return out;
}

static const char *env_lookup(const char *name, void *ctx)
{
    (void)ctx;
    return strcmp(name, "A") == 0 ? "alpha" : strcmp(name, "EMPTY") == 0 ? "" : NULL;
}

int main(void)
{
    struct netacl *acl = NULL;
    ok(netacl_add(&acl, "127.0.0.1") == 0, "add host");
    ok(netacl_add(&acl, "10.0.0.0/8") == 0, "add v4 net");
    ok(netacl_add(&acl, "fd00::/8") == 0, "add v6 net");
    ok(netacl_add(&acl, "unix") == 0, "add unix");
    ok(netacl_add(&acl, "10.0.0.0/40") == -EINVAL, "prefix too long");
    ok(netacl_add(&acl, "nonsense") == -EINVAL, "garbage");
    ok(netacl_add(&acl, "1.2.3.4/") == -EINVAL, "empty prefix");
    ok(netacl_count(acl) == 4, "four entries");

    is_str(client(acl, "203.0.113.1", "1.1.1.1"), "203.0.113.1", "untrusted peer: XFF ignored");
    is_str(client(acl, "127.0.0.1", NULL), "127.0.0.1", "trusted peer, no XFF");
    is_str(client(acl, "127.0.0.1", "203.0.113.7"), "203.0.113.7", "trusted peer: XFF used");
    is_str(client(acl, "127.0.0.1", "6.6.6.6, 203.0.113.7, 10.1.1.1"), "203.0.113.7",
           "rightmost untrusted hop wins; the forged left part is ignored");
    is_str(client(acl, "127.0.0.1", "10.0.0.2, 10.0.0.3"), "10.0.0.2", "all trusted: the leftmost");
    is_str(client(acl, "127.0.0.1", "garbage, 203.0.113.9"), "203.0.113.9",
           "garbage left of the client is never reached");
    is_str(client(acl, "127.0.0.1", "203.0.113.9, garbage"), "127.0.0.1",
           "garbage from a trusted hop: stop at the last good address");
    is_str(client(acl, "::ffff:127.0.0.1", "198.51.100.1"), "198.51.100.1", "v4-mapped peer");
    is_str(client(acl, "fd00::1", " 2001:db8::5 "), "2001:db8::5", "v6 hop, trimmed");
    is_str(client(acl, "unix", "198.51.100.2"), "198.51.100.2", "trusted unix peer");
    netacl_destroy(acl);
    is_str(client(NULL, "unix", "198.51.100.2"), "unix", "untrusted unix peer");
    is_str(client(NULL, "127.0.0.1", "198.51.100.2"), "127.0.0.1", "no list: peer only");

    char *out = NULL, err[128];
    ok(envsubst_expand("x${A}y$${A}$z$", env_lookup, NULL, &out, err, sizeof err) == 0, "expand");
    is_str(out, "xalphay${A}$z$", "expansion, $$ and lone $");
    free(out);
    ok(envsubst_expand("${EMPTY}", env_lookup, NULL, &out, err, sizeof err) == 0 && out[0] == 0,
       "set but empty is allowed");
    free(out);
    ok(envsubst_expand("${B}", env_lookup, NULL, &out, err, sizeof err) == -ENOENT, "unset");
    ok(strstr(err, "B is not set") != NULL, "message names the variable");
    ok(envsubst_expand("${1A}", env_lookup, NULL, &out, err, sizeof err) == -EINVAL, "bad name");
    ok(envsubst_expand("${A", env_lookup, NULL, &out, err, sizeof err) == -EINVAL, "unclosed");
    ok(envsubst_expand("${A-b}", env_lookup, NULL, &out, err, sizeof err) == -EINVAL,
       "no shell defaults");
    return tap_done();
}
