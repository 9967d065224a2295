/* Internal to the configuration parser: what config.c (the top level and the public API),
 * config_read.c (strict readers over the parse state), config_tlskeys.c (the tls and http2 keys)
 * and config_endpoint.c (an endpoint and its backends) share. Names that cross these files start
 * with config__; nothing outside them includes this header.
 *
 * Every function that takes a struct config__ctx returns 0, -EINVAL with "origin: key: reason"
 * in the context's err, or -ENOMEM (the caller words that one). Tests compare the messages, so
 * a key path or reason is part of the contract. */
#ifndef GATHERD_CONFIG_INT_H
#define GATHERD_CONFIG_INT_H

#include "config.h"
#include "config_tls.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parsing state: where errors go and the key path of what is being read. */
struct config__ctx {
    const char *origin;
    char *err;
    size_t errlen;
    struct config *cfg;
    struct config_tls_opts tls; /* the top level's tls and http2, which backends inherit */
    char *tls_pass;             /* its expanded client_key_passphrase, owned */
    char tls_at[320];           /* "tls", where the top level's values come from */
};

/* config_read.c: strict readers. `path` is the key path of the object read from ("" at the
 * top level); a value's own key is joined to it for messages. */

/* Fails with "origin: key: reason", the reason formatted from fmt. Always -EINVAL. */
__attribute__((format(printf, 3, 4))) int config__read_fail(struct config__ctx *c, const char *key,
                                                            const char *fmt, ...);

/* Key paths are only for messages: a path too long for the buffer is cut, never overflowed. */
void config__read_join_key(char *out, size_t outlen, const char *parent, const char *key);

/* Fails with "unknown key" on a key of obj (an object) that is not in `allowed`
 * (NULL-terminated). */
int config__read_check_keys(struct config__ctx *c, json_t *obj, const char *path,
                            const char *const *allowed);

/* An object whose keys are all in `allowed`. */
int config__read_check_object(struct config__ctx *c, json_t *obj, const char *path,
                              const char *const *allowed);

/* Reads an optional integer in [min, max]; leaves *out alone when absent. */
int config__read_int(struct config__ctx *c, json_t *obj, const char *path, const char *key,
                     long long min, long long max, long long *out);

/* Reads an optional boolean; leaves *out alone when absent. */
int config__read_bool(struct config__ctx *c, json_t *obj, const char *path, const char *key,
                      bool *out);

/* Reads a string without NUL characters into *out, borrowed from obj; NULL when absent and not
 * required. */
int config__read_string(struct config__ctx *c, json_t *obj, const char *path, const char *key,
                        bool required, const char **out);

/* Expands ${VAR} in `in` from the environment into *out (malloc'd, the caller's); `key` names
 * the value in a message. */
int config__read_expand(struct config__ctx *c, const char *key, const char *in, char **out);

/* Whether s has a control character (below 0x20, or DEL). */
bool config__read_has_ctl(const char *s);

/* Reads obj into *out (n lines in *nout). `posted`: the headers are a notification's. */
int config__read_headers(struct config__ctx *c, json_t *obj, const char *path, char ***out,
                         size_t *nout, bool posted);

/* config_tlskeys.c: the tls and http2 keys, read into struct config_tls_opts */

/* Reads parent's "tls" and "http2" over *o. `path` is parent's key path ("" at the top level);
 * `at` (at least 320 bytes) receives the tls object's and must outlive o; an expanded passphrase
 * lands in *pass, which the caller frees. */
int config__tlskeys_parse(struct config__ctx *c, json_t *parent, const char *path,
                          struct config_tls_opts *o, char *at, char **pass);

/* An error from config_tls.c ("key: reason"), prefixed with the origin as config__read_fail()
 * does. */
int config__tlskeys_fail(struct config__ctx *c, int rc, const char *why);

/* The backend's connection profile: its own tls and http2 over the top level's. May rewrite
 * be->url for server_name; placeholders, all after the authority, move with it. */
int config__tlskeys_backend(struct config__ctx *c, json_t *obj, const char *path,
                            struct config_backend *be);

/* config_endpoint.c: one entry of "endpoints", its backends with it */

/* Reads obj, the endpoint at key path `path`, into *ep, counting its backends, parameters and
 * notification sink into cfg's totals. What it allocated stays in *ep on failure too, for the
 * configuration's free to release. */
int config__endpoint_parse(struct config__ctx *c, json_t *obj, const char *path, struct config *cfg,
                           struct config_endpoint *ep);

/* The endpoint's identity (config.h): what a reload compares to keep its cached answers.
 * Never 0, which no key begins with. */
uint64_t config__endpoint_ident(json_t *root, json_t *obj, const struct config_endpoint *ep);

#endif
