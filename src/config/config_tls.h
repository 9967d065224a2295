/* How a backend's connections are made: TLS (trust anchors, verification, client certificate,
 * minimum version, the name to verify) and the HTTP version. config_tlskeys.c reads the keys;
 * this file turns them into a connection profile, reading and parsing every file it names while the
 * configuration loads (at start and on SIGHUP, on the control thread), never on the request
 * path, so that a missing, unreadable or malformed file is a configuration error naming its key
 * and the workers hand curl objects that are already parsed.
 *
 * Backends whose settings are the same share one profile; a profile's `id` differs whenever
 * anything about the connection differs, the contents of its files included, so the upstream
 * client keeps connections (and TLS sessions) of different profiles apart by it. */
#ifndef GATHERD_CONFIG_TLS_H
#define GATHERD_CONFIG_TLS_H

#include <stdbool.h>
#include <stddef.h>

/* OpenSSL's types (X509_STORE, X509, STACK_OF(X509), EVP_PKEY), opaque here. */
struct x509_store_st;
struct x509_st;
struct stack_st_X509;
struct evp_pkey_st;

enum config_http2 {
    CONFIG_HTTP2_AUTO,            /* https: offered by ALPN, HTTP/1.1 if refused; http: HTTP/1.1 */
    CONFIG_HTTP2_OFF,             /* HTTP/1.1 only */
    CONFIG_HTTP2_PRIOR_KNOWLEDGE, /* http:// only: h2c without negotiation */
};

/* The system's CA bundle, used when no ca_file is given; $SSL_CERT_FILE overrides it, as it
 * does for OpenSSL itself. */
#define CONFIG_TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

/* A connection profile. Immutable and owned by the configuration's set; the OpenSSL objects
 * are shared read-only by every worker (an X509_STORE is safe to share), and the upstream
 * client takes its own references to them. */
struct config_tls {
    bool https;
    bool verify;     /* check the certificate chain and the name (only false when configured) */
    int min_version; /* 12 or 13: TLS 1.2 or 1.3 */
    enum config_http2 http2;
    char *server_name; /* the name to verify (and send as SNI and Host); NULL: the URL's host */
    char *connect_to;  /* with server_name: "NAME:PORT:HOST:PORT", where to really connect */
    struct x509_store_st *ca;    /* trust anchors; NULL for http:// or when verify is false */
    struct x509_st *cert;        /* client certificate (mutual TLS); NULL without */
    struct stack_st_X509 *chain; /* the intermediates that came with it; NULL when none */
    struct evp_pkey_st *key;     /* its private key, decrypted; NULL without */
    char id[72];                 /* "" for plain HTTP/1.1, else a digest of everything above */
};

/* The tls keys and http2 as configured, before files are read. Strings are borrowed. Each
 * *_at is the key path a value came from (the top level's "tls" or a backend's), so that a
 * problem with an inherited value names the key where it was written. */
struct config_tls_opts {
    const char *ca_file, *client_cert, *client_key, *passphrase;
    const char *ca_file_at, *client_cert_at, *client_key_at, *http2_at;
    bool verify;
    int min_version;
    enum config_http2 http2;
    const char *server_name;
    const char *own_at; /* the key of the backend's own tls object; NULL when it has none */
};

/* The defaults: verify, TLS 1.2 at least, HTTP/2 "auto", the system's CA bundle. */
void config_tls_opts_init(struct config_tls_opts *o);

/* The profiles of one configuration and the files they were built from. */
struct config_tls_set;

/* NULL when out of memory. */
struct config_tls_set *config_tls_set_create(void);

/* Frees every profile and parsed file; accepts NULL. */
void config_tls_set_destroy(struct config_tls_set *s);

/* Reads and checks the files o names (not the system bundle), so that a top-level value that no
 * backend uses is still checked. 0; -EINVAL with "key: reason" in err; -ENOMEM. */
int config_tls_load(struct config_tls_set *s, const struct config_tls_opts *o, char *err,
                    size_t errlen);

/* The profile for a backend with settings o and URL *url (owned, malloc'd), whose key path is
 * url_key: checks o against the scheme, reads the files o names (each file once per set),
 * and, with server_name, rewrites *url to name it instead of the host it connects to (refs
 * into the URL after its authority shift by the difference in length). 0 and *out; -EINVAL
 * with "key: reason" in err; -ENOMEM. */
int config_tls_resolve(struct config_tls_set *s, const struct config_tls_opts *o,
                       const char *url_key, char **url, const struct config_tls **out, char *err,
                       size_t errlen);

#endif
