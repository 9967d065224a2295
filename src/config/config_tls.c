#include "config_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A PEM file larger than this is not a certificate bundle (the system's is about 200 KiB). */
#define MAX_FILE_BYTES (16u << 20)

enum kind { KIND_CA, KIND_CERT, KIND_KEY };

/* A file read and parsed once per configuration, whoever names it. */
struct loaded {
    enum kind kind;
    char *path;
    char *passphrase;         /* KIND_KEY: what it was decrypted with, or NULL */
    unsigned char digest[32]; /* SHA-256 of the file's bytes */
    X509_STORE *store;        /* KIND_CA */
    X509 *cert;               /* KIND_CERT: the first certificate */
    STACK_OF(X509) * chain;   /* KIND_CERT: the rest, or NULL */
    EVP_PKEY *key;            /* KIND_KEY */
    struct loaded *next;
};

struct config_tls_set {
    struct loaded *files;
    struct config_tls **profiles;
    size_t n, cap;
};

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, const char *key,
                                                      const char *fmt, ...)
{
    char reason[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", key, reason);
    return -EINVAL;
}

/* OpenSSL's reason for the last error, and an empty queue: errors of one file must not be
 * reported against the next. */
static const char *ssl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return buf;
}

void config_tls_opts_init(struct config_tls_opts *o)
{
    *o = (struct config_tls_opts){.verify = true, .min_version = 12, .http2 = CONFIG_HTTP2_AUTO};
}

struct config_tls_set *config_tls_set_create(void)
{
    return calloc(1, sizeof(struct config_tls_set));
}

static void loaded_free(struct loaded *f)
{
    X509_STORE_free(f->store);
    X509_free(f->cert);
    sk_X509_pop_free(f->chain, X509_free);
    EVP_PKEY_free(f->key);
    if (f->passphrase != NULL)
        OPENSSL_cleanse(f->passphrase, strlen(f->passphrase));
    free(f->passphrase);
    free(f->path);
    free(f);
}

void config_tls_set_destroy(struct config_tls_set *s)
{
    if (s == NULL)
        return;
    for (struct loaded *f = s->files, *next; f != NULL; f = next) {
        next = f->next;
        loaded_free(f);
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->profiles[i]->server_name);
        free(s->profiles[i]->connect_to);
        free(s->profiles[i]);
    }
    free(s->profiles);
    free(s);
}

/* The whole file in a malloc'd buffer. 0, or -errno with the reason in why. */
static int read_all(const char *path, char **out, size_t *outlen, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    char *data = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_FILE_BYTES) {
                snprintf(why, whylen, "%s is larger than %u MiB", path, MAX_FILE_BYTES >> 20);
                rc = -EFBIG;
                break;
            }
            cap = cap ? cap * 2 : 16384;
            char *grown = realloc(data, cap + 1);
            if (grown == NULL) {
                rc = -ENOMEM;
                break;
            }
            data = grown;
        }
        size_t n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                int e = errno ? errno : EIO;
                snprintf(why, whylen, "cannot read %s: %s", path, strerror(e));
                rc = -e;
            }
            break;
        }
    }
    fclose(f);
    if (rc < 0) {
        free(data);
        return rc;
    }
    data[len] = '\0';
    *out = data;
    *outlen = len;
    return 0;
}

/* Every certificate of a PEM text, in order; NULL with the reason in why when there is none or
 * the text is not PEM. */
static STACK_OF(X509) * read_certs(const char *data, size_t len, char *why, size_t whylen)
{
    char r[160];
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (bio == NULL || certs == NULL) {
        BIO_free(bio);
        sk_X509_free(certs);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (sk_X509_push(certs, x) == 0) {
            X509_free(x);
            break;
        }
    BIO_free(bio);
    unsigned long e = ERR_peek_last_error();
    bool at_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    if (sk_X509_num(certs) > 0 && at_end) {
        ERR_clear_error();
        return certs;
    }
    if (sk_X509_num(certs) == 0 && at_end)
        snprintf(why, whylen, "contains no PEM certificate");
    else
        snprintf(why, whylen, "is not a valid PEM certificate file: %s", ssl_reason(r, sizeof r));
    ERR_clear_error();
    sk_X509_pop_free(certs, X509_free);
    return NULL;
}

struct pass {
    const char *text;
    bool asked;
};

/* OpenSSL asks for a passphrase only when the key is encrypted; without one it must fail
 * rather than prompt on a terminal, which is what a NULL callback would do. */
static int pass_cb(char *buf, int size, int rwflag, void *arg)
{
    struct pass *p = arg;
    (void)rwflag;
    p->asked = true;
    if (p->text == NULL || strlen(p->text) > (size_t)size)
        return -1;
    memcpy(buf, p->text, strlen(p->text));
    return (int)strlen(p->text);
}

static int parse_into(struct loaded *f, const char *data, size_t len, char *why, size_t whylen)
{
    char r[160];
    if (f->kind == KIND_KEY) {
        ERR_clear_error();
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        struct pass p = {f->passphrase, false};
        f->key = bio ? PEM_read_bio_PrivateKey(bio, NULL, pass_cb, &p) : NULL;
        BIO_free(bio);
        if (f->key != NULL) {
            ERR_clear_error();
            return 0;
        }
        if (p.asked && p.text == NULL)
            snprintf(why, whylen, "is encrypted: give its passphrase in client_key_passphrase");
        else if (p.asked)
            snprintf(why, whylen, "cannot be decrypted with client_key_passphrase: %s",
                     ssl_reason(r, sizeof r));
        else
            snprintf(why, whylen, "contains no PEM private key: %s", ssl_reason(r, sizeof r));
        ERR_clear_error();
        return -EINVAL;
    }
    STACK_OF(X509) *certs = read_certs(data, len, why, whylen);
    if (certs == NULL)
        return -EINVAL;
    if (f->kind == KIND_CERT) {
        f->cert = sk_X509_shift(certs);
        if (sk_X509_num(certs) > 0)
            f->chain = certs;
        else
            sk_X509_free(certs);
        return 0;
    }
    f->store = X509_STORE_new();
    int ok = f->store != NULL;
    for (int i = 0; ok && i < sk_X509_num(certs); i++)
        ok = X509_STORE_add_cert(f->store, sk_X509_value(certs, i));
    sk_X509_pop_free(certs, X509_free);
    if (!ok) {
        snprintf(why, whylen, "cannot be used as trust anchors: %s", ssl_reason(r, sizeof r));
        return -EINVAL;
    }
    /* As curl does by default: a certificate in the bundle is an anchor even when it is not
     * self-signed, so that an intermediate or a pinned leaf can be trusted on its own. */
    X509_STORE_set_flags(f->store, X509_V_FLAG_PARTIAL_CHAIN);
    return 0;
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The file at path, parsed as kind, read once per set. key names it in errors. */
static int load(struct config_tls_set *s, enum kind kind, const char *path, const char *passphrase,
                const char *key, struct loaded **out, char *err, size_t errlen)
{
    for (struct loaded *f = s->files; f != NULL; f = f->next)
        if (f->kind == kind && strcmp(f->path, path) == 0 &&
            (kind != KIND_KEY || same(f->passphrase, passphrase))) {
            *out = f;
            return 0;
        }
    if (path[0] == '\0')
        return fail(err, errlen, key, "must name a file");
    char why[400];
    char *data = NULL;
    size_t len = 0;
    int rc = read_all(path, &data, &len, why, sizeof why);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return fail(err, errlen, key, "%s", why);
    struct loaded *f = calloc(1, sizeof *f);
    if (f != NULL)
        f->kind = kind;
    if (f == NULL || (f->path = strdup(path)) == NULL ||
        (passphrase != NULL && (f->passphrase = strdup(passphrase)) == NULL) ||
        EVP_Digest(data, len, f->digest, NULL, EVP_sha256(), NULL) != 1)
        rc = -ENOMEM;
    else
        rc = parse_into(f, data, len, why, sizeof why);
    OPENSSL_cleanse(data, len); /* it may hold a private key */
    free(data);
    if (rc < 0) {
        if (f != NULL)
            loaded_free(f);
        return rc == -ENOMEM ? rc : fail(err, errlen, key, "%s: %s", path, why);
    }
    f->next = s->files;
    s->files = f;
    *out = f;
    return 0;
}

/* The CA bundle when none is configured: what OpenSSL itself would use. */
static const char *system_ca(void)
{
    const char *env = getenv(X509_get_default_cert_file_env());
    return env != NULL && env[0] != '\0' ? env : CONFIG_TLS_SYSTEM_CA;
}

struct files {
    struct loaded *ca, *cert, *key;
};

static int load_files(struct config_tls_set *s, const struct config_tls_opts *o, bool need_ca,
                      struct files *fs, char *err, size_t errlen)
{
    char k[360];
    int rc;
    if (o->ca_file != NULL) {
        snprintf(k, sizeof k, "%s.ca_file", o->ca_file_at);
        if ((rc = load(s, KIND_CA, o->ca_file, NULL, k, &fs->ca, err, errlen)) < 0)
            return rc;
    } else if (need_ca) {
        const char *path = system_ca();
        rc = load(s, KIND_CA, path, NULL, "tls.ca_file", &fs->ca, err, errlen);
        if (rc == -EINVAL) {
            char why[700];
            snprintf(why, sizeof why, "%s", err);
            return fail(err, errlen, "tls.ca_file",
                        "not set, and the system CA bundle cannot be used (%s): install "
                        "ca-certificates or set tls.ca_file",
                        why + strlen("tls.ca_file: "));
        }
        if (rc < 0)
            return rc;
    }
    if ((o->client_cert == NULL) != (o->client_key == NULL)) {
        bool cert = o->client_cert != NULL;
        snprintf(k, sizeof k, "%s.%s", cert ? o->client_cert_at : o->client_key_at,
                 cert ? "client_key" : "client_cert");
        return fail(err, errlen, k, "is required with %s", cert ? "client_cert" : "client_key");
    }
    if (o->client_cert == NULL)
        return 0;
    snprintf(k, sizeof k, "%s.client_cert", o->client_cert_at);
    if ((rc = load(s, KIND_CERT, o->client_cert, NULL, k, &fs->cert, err, errlen)) < 0)
        return rc;
    snprintf(k, sizeof k, "%s.client_key", o->client_key_at);
    if ((rc = load(s, KIND_KEY, o->client_key, o->passphrase, k, &fs->key, err, errlen)) < 0)
        return rc;
    ERR_clear_error();
    if (X509_check_private_key(fs->cert->cert, fs->key->key) != 1) {
        ERR_clear_error();
        return fail(err, errlen, k, "%s is not the key of the certificate in %s", o->client_key,
                    o->client_cert);
    }
    return 0;
}

int config_tls_load(struct config_tls_set *s, const struct config_tls_opts *o, char *err,
                    size_t errlen)
{
    struct files fs = {0};
    return load_files(s, o, false, &fs, err, errlen);
}

/* A DNS name: dot-separated labels of letters, digits, '-' and '_', at most 253 bytes. */
static bool valid_name(const char *n)
{
    size_t len = strlen(n), label = 0;
    if (len == 0 || len > 253 || n[0] == '.' || n[len - 1] == '.')
        return false;
    for (const char *p = n; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_';
        if (*p == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (!ok || ++label > 63) {
            return false;
        }
    }
    return true;
}

/* With server_name: the URL names it instead of its host, and connect_to sends the connection
 * to the host the URL named (curl's CURLOPT_CONNECT_TO), so the certificate, SNI and Host are
 * checked and sent for server_name whatever address is dialled. Nothing to do when the URL
 * already names it. */
static int retarget(const char *name, char **url, char **connect_to)
{
    char *u = *url;
    char *auth = strstr(u, "://") + 3;
    size_t alen = strcspn(auth, "/?#");
    char *at = memchr(auth, '@', alen);
    char *host = at ? at + 1 : auth, *end = auth + alen;
    char *hend = host;
    if (*host == '[')
        hend = (char *)memchr(host, ']', (size_t)(end - host)) + 1;
    else
        while (hend < end && *hend != ':')
            hend++;
    size_t hlen = (size_t)(hend - host);
    if (hlen == strlen(name) && strncasecmp(host, name, hlen) == 0)
        return 0;
    const char *port = hend < end ? hend + 1 : "443";
    int plen = hend < end ? (int)(end - hend - 1) : 3;
    size_t clen = strlen(name) + hlen + 2 * (size_t)plen + 4;
    size_t ulen = strlen(u) - hlen + strlen(name) + 1;
    char *ct = malloc(clen), *nu = malloc(ulen);
    if (ct == NULL || nu == NULL) {
        free(ct);
        free(nu);
        return -ENOMEM;
    }
    snprintf(ct, clen, "%s:%.*s:%.*s:%.*s", name, plen, port, (int)hlen, host, plen, port);
    snprintf(nu, ulen, "%.*s%s%s", (int)(host - u), u, name, hend);
    free(u);
    *url = nu;
    *connect_to = ct;
    return 0;
}

/* The hex SHA-256 of everything that makes connections of a profile different from another's.
 * Passphrases are left out: equal key files that both decrypted hold the same key. */
static int profile_id(const struct config_tls *t, const struct files *fs, char *id, size_t idlen)
{
    static const unsigned char none[32];
    unsigned char md[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char head[128];
    int n = snprintf(head, sizeof head, "https=%d verify=%d min=%d http2=%d", t->https, t->verify,
                     t->min_version, (int)t->http2);
    const char *sn = t->server_name ? t->server_name : "", *ct = t->connect_to ? t->connect_to : "";
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, head, (size_t)n + 1) == 1 &&
             EVP_DigestUpdate(ctx, sn, strlen(sn) + 1) == 1 &&
             EVP_DigestUpdate(ctx, ct, strlen(ct) + 1) == 1 &&
             EVP_DigestUpdate(ctx, fs->ca ? fs->ca->digest : none, 32) == 1 &&
             EVP_DigestUpdate(ctx, fs->cert ? fs->cert->digest : none, 32) == 1 &&
             EVP_DigestUpdate(ctx, fs->key ? fs->key->digest : none, 32) == 1 &&
             EVP_DigestFinal_ex(ctx, md, NULL) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -ENOMEM;
    int at = snprintf(id, idlen, "%s", t->https ? "tls-" : "h2c-");
    for (size_t i = 0; i < sizeof md && (size_t)at + 2 < idlen; i++)
        at += snprintf(id + at, idlen - (size_t)at, "%02x", md[i]);
    return 0;
}

/* The set's profile equal to t (whose strings it takes), added when it is new. */
static int intern(struct config_tls_set *s, struct config_tls *t, const struct config_tls **out)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->profiles[i]->id, t->id) == 0) {
            free(t->server_name);
            free(t->connect_to);
            *out = s->profiles[i];
            return 0;
        }
    struct config_tls *copy = malloc(sizeof *copy);
    if (copy == NULL)
        return -ENOMEM;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct config_tls **grown = realloc(s->profiles, cap * sizeof *grown);
        if (grown == NULL) {
            free(copy);
            return -ENOMEM;
        }
        s->profiles = grown;
        s->cap = cap;
    }
    *copy = *t;
    s->profiles[s->n++] = copy;
    *out = copy;
    return 0;
}

/* Plain HTTP/1.1, the profile of every http:// backend that does not ask for h2c. */
static const struct config_tls plain = {
    .verify = true, .min_version = 12, .http2 = CONFIG_HTTP2_OFF};

int config_tls_resolve(struct config_tls_set *s, const struct config_tls_opts *o,
                       const char *url_key, char **url, const struct config_tls **out, char *err,
                       size_t errlen)
{
    char k[360];
    struct config_tls t = plain;
    struct files fs = {0};
    int rc;
    t.https = strncasecmp(*url, "https://", 8) == 0;
    if (!t.https) {
        if (o->own_at != NULL)
            return fail(err, errlen, o->own_at, "applies only to https:// URLs; %s is %.*s",
                        url_key, 7, *url);
        if (o->http2 != CONFIG_HTTP2_PRIOR_KNOWLEDGE) {
            *out = &plain;
            return 0;
        }
        t.http2 = CONFIG_HTTP2_PRIOR_KNOWLEDGE;
        t.verify = false;
    } else {
        t.verify = o->verify;
        t.min_version = o->min_version;
        t.http2 = o->http2;
        if (t.http2 == CONFIG_HTTP2_PRIOR_KNOWLEDGE && o->http2_at != NULL) {
            snprintf(k, sizeof k, "%s.http2", o->http2_at);
            return fail(err, errlen, k,
                        "\"prior_knowledge\" is for http:// upstreams (h2c); an https:// "
                        "upstream negotiates HTTP/2 by ALPN with \"auto\"");
        }
        if (t.http2 == CONFIG_HTTP2_PRIOR_KNOWLEDGE)
            t.http2 = CONFIG_HTTP2_AUTO; /* the top level's h2c is for http:// backends */
        if ((rc = load_files(s, o, t.verify, &fs, err, errlen)) < 0)
            return rc;
        if (!t.verify)
            fs.ca = NULL;
        t.ca = fs.ca ? fs.ca->store : NULL;
        t.cert = fs.cert ? fs.cert->cert : NULL;
        t.chain = fs.cert ? fs.cert->chain : NULL;
        t.key = fs.key ? fs.key->key : NULL;
        if (o->server_name != NULL) {
            snprintf(k, sizeof k, "%s.server_name", o->own_at ? o->own_at : "tls");
            if (!valid_name(o->server_name))
                return fail(err, errlen, k,
                            "must be a DNS name (letters, digits, '-', '_' and dots)");
            if ((t.server_name = strdup(o->server_name)) == NULL)
                return -ENOMEM;
            if ((rc = retarget(o->server_name, url, &t.connect_to)) < 0) {
                free(t.server_name);
                return rc;
            }
        }
    }
    if ((rc = profile_id(&t, &fs, t.id, sizeof t.id)) < 0 || (rc = intern(s, &t, out)) < 0) {
        free(t.server_name);
        free(t.connect_to);
    }
    return rc;
}
