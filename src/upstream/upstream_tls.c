/* How a pool's connections are made: HTTP version and TLS, from a connection profile
 * (config_tls.h) whose certificates and keys were parsed while the configuration loaded.
 *
 * curl 7.88 builds a new SSL_CTX for every connection and, given CURLOPT_CAINFO or
 * CURLOPT_CAINFO_BLOB, reads and parses the whole CA bundle into it on every handshake (its CA
 * cache skips blobs, and a cached file is only re-read after its timeout, on the loop). So curl
 * is given no CA, certificate or key at all: the SSL_CTX callback hands each new SSL_CTX the
 * profile's ready X509_STORE, certificate and key by reference, which costs a few atomic
 * increments, and nothing is read from disk on a worker. The price is that curl cannot tell
 * profiles apart when it matches connections and TLS sessions; they are kept apart instead by
 * giving each profile its own pools (a multi each, so a connection cache each) and each pool
 * its own TLS session cache (a share handle). */
#include "upstream_int.h"

#include "config_tls.h"

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Streams one HTTP/2 connection carries at once; set on the multi too, so both agree. */
#define STREAMS_PER_CONNECTION 100L

struct upstream__tls {
    char id[sizeof((struct config_tls *)0)->id];
    bool https, verify;
    long http_version; /* CURL_HTTP_VERSION_* */
    bool multiplex;    /* HTTP/2 by ALPN: transfers share connections as streams */
    bool h2c;          /* HTTP/2 by prior knowledge: a connection per transfer (see apply) */
    long sslversion;
    struct curl_slist connect_to; /* .data NULL: none */
    char *connect_to_text;
    CURLSH *sessions; /* this pool's TLS session cache (empty for http://) */
    X509_STORE *ca;
    X509 *cert;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
};

const char *upstream__tls_id(const struct config_tls *t)
{
    return t != NULL ? t->id : "";
}

/* Called by curl for each new TLS connection of the pool (arg): the profile's trust anchors,
 * client certificate and key, shared by reference. */
static CURLcode ssl_ctx_cb(CURL *e, void *sslctx, void *arg)
{
    struct upstream__tls *t = arg;
    SSL_CTX *ctx = sslctx;
    (void)e;
    if (t->ca != NULL) {
        if (X509_STORE_up_ref(t->ca) != 1)
            return CURLE_OUT_OF_MEMORY;
        SSL_CTX_set_cert_store(ctx, t->ca); /* takes that reference */
    } else if (t->verify) {
        return CURLE_SSL_CACERT_BADFILE; /* config_tls.c never lets this happen */
    }
    if (t->cert != NULL) {
        if (SSL_CTX_use_certificate(ctx, t->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, t->key) != 1)
            return CURLE_SSL_CERTPROBLEM;
        for (int i = 0; i < sk_X509_num(t->chain); i++)
            if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(t->chain, i)) != 1)
                return CURLE_SSL_CERTPROBLEM;
    }
    return CURLE_OK;
}

/* Shards an HTTP/1.1 pool may have: as many as its idle cap fills. */
static size_t shards_for(const struct upstream *u)
{
    long n = u->idle_connections / UPSTREAM__SHARD_CONNECTIONS;
    return n > 1 ? (size_t)n : 1;
}

void upstream__tls_multi_setup(const struct upstream__pool *p, CURLM *multi)
{
    if (p->tls->multiplex)
        curl_multi_setopt(multi, CURLMOPT_MAX_CONCURRENT_STREAMS, STREAMS_PER_CONNECTION);
}

int upstream__tls_pool_init(struct upstream__pool *p, const struct config_tls *c)
{
    struct upstream__tls *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    p->tls = t;
    p->tls_id = t->id;
    p->max_running = p->u->max_host_connections;
    p->max_shards = shards_for(p->u);
    t->http_version = CURL_HTTP_VERSION_1_1;
    /* Every pool, plain ones too: curl 7.88 gives a handle without a share a session cache of
     * its own on its first transfer, and leaks it when the handle is later given a share. */
    if ((t->sessions = curl_share_init()) == NULL ||
        curl_share_setopt(t->sessions, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
        return -1;
    if (c == NULL)
        return 0;
    snprintf(t->id, sizeof t->id, "%s", c->id);
    t->https = c->https;
    t->verify = c->verify;
    t->sslversion = c->min_version >= 13 ? CURL_SSLVERSION_TLSv1_3 : CURL_SSLVERSION_TLSv1_2;
    if (c->http2 == CONFIG_HTTP2_PRIOR_KNOWLEDGE && !c->https)
        t->http_version = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    else if (c->http2 == CONFIG_HTTP2_AUTO && c->https)
        t->http_version = CURL_HTTP_VERSION_2TLS;
    t->multiplex = t->http_version == CURL_HTTP_VERSION_2TLS;
    t->h2c = t->http_version == CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    if (t->multiplex || t->h2c)
        p->max_shards = 1; /* its connections carry many transfers each */
    if (c->connect_to != NULL) {
        if ((t->connect_to_text = strdup(c->connect_to)) == NULL)
            return -1;
        t->connect_to.data = t->connect_to_text;
    }
    if (!c->https)
        return 0;
    if (c->ca != NULL && X509_STORE_up_ref(c->ca) == 1)
        t->ca = c->ca;
    if (c->cert != NULL && X509_up_ref(c->cert) == 1)
        t->cert = c->cert;
    if (c->key != NULL && EVP_PKEY_up_ref(c->key) == 1)
        t->key = c->key;
    if (c->chain != NULL)
        t->chain = X509_chain_up_ref(c->chain);
    if ((c->ca != NULL && t->ca == NULL) || (c->cert != NULL && t->cert == NULL) ||
        (c->key != NULL && t->key == NULL) || (c->chain != NULL && t->chain == NULL))
        return -1;
    return 0;
}

void upstream__tls_pool_finish(struct upstream__pool *p)
{
    struct upstream__tls *t = p->tls;
    if (t == NULL)
        return;
    if (t->sessions != NULL)
        curl_share_cleanup(t->sessions);
    X509_STORE_free(t->ca);
    X509_free(t->cert);
    sk_X509_pop_free(t->chain, X509_free);
    EVP_PKEY_free(t->key);
    free(t->connect_to_text);
    free(t);
    p->tls = NULL;
    p->tls_id = "";
}

void upstream__tls_easy_defaults(CURL *e)
{
    /* No CA file or directory for curl to read: ssl_ctx_cb gives it the parsed store. */
    curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
}

void upstream__tls_apply(const struct upstream__pool *p, CURL *e)
{
    const struct upstream__tls *t = p->tls;
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, t->http_version);
    /* With HTTP/2, a transfer waits for a connection being set up rather than open another,
     * so that the legs of a request to one origin share one connection. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, t->multiplex ? 1L : 0L);
    /* curl 7.88.1 sends nothing when it reuses an h2c (prior knowledge) connection, for a
     * second stream or a later transfer alike, and the transfer fails with "Error in the HTTP2
     * framing layer" (tests/tls/test_tls_http2.py): so h2c gets a connection per transfer. */
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, t->h2c ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, t->connect_to.data ? &t->connect_to : NULL);
    curl_easy_setopt(e, CURLOPT_SHARE, t->sessions);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, t);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, t->verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, t->verify ? 2L : 0L);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, t->sslversion);
}

void upstream__tls_learn(struct upstream__pool *p, CURL *e)
{
    long cap = p->u->max_host_connections;
    if (!p->tls->multiplex || cap == 0)
        return;
    long version = 0;
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
    p->max_running = version == CURL_HTTP_VERSION_2_0 ? cap * STREAMS_PER_CONNECTION : cap;
}

/* What a failed verification means, from OpenSSL's verdict and curl's message (curl checks
 * the name itself, after OpenSSL accepted the chain). */
static enum tlsfail verify_reason(long result, const char *detail)
{
    switch (result) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return TLSFAIL_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return TLSFAIL_NOT_YET_VALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
        return TLSFAIL_UNKNOWN_ISSUER;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return TLSFAIL_NAME_MISMATCH;
    default:
        return strstr(detail, "target host name") != NULL ? TLSFAIL_NAME_MISMATCH
                                                          : TLSFAIL_UNTRUSTED;
    }
}

static const char *const verdicts[TLSFAIL_COUNT] = {
    [TLSFAIL_UNKNOWN_ISSUER] = "unknown issuer (no trusted CA signed the upstream's certificate)",
    [TLSFAIL_NAME_MISMATCH] = "name mismatch (the certificate is not for the name connected to)",
    [TLSFAIL_EXPIRED] = "expired certificate",
    [TLSFAIL_NOT_YET_VALID] = "certificate not yet valid",
    [TLSFAIL_UNTRUSTED] = "untrusted certificate",
};

enum tlsfail upstream__tls_failure(const struct upstream__pool *p, CURL *e, CURLcode rc,
                                   const char *detail, enum errkind *kind, char *msg, size_t len)
{
    if (!p->tls->https)
        return TLSFAIL_NONE;
    enum tlsfail why = TLSFAIL_NONE;
    /* curl 7.88 counts the handshake as part of connecting: CONNECT_TIME stays 0 until it is
     * over, but the peer's port is known once the TCP connection is up. */
    curl_off_t secured = 0, sent = 0;
    long port = 0;
    curl_easy_getinfo(e, CURLINFO_PRIMARY_PORT, &port);
    curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &secured);
    curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &sent);
    bool connected = port != 0;
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION: {
        long result = X509_V_OK;
        curl_easy_getinfo(e, CURLINFO_SSL_VERIFYRESULT, &result);
        why = verify_reason(result, detail);
        snprintf(msg, len, "TLS certificate verification failed: %s: %s", verdicts[why], detail);
        *kind = ERRKIND_CONNECT;
        return why;
    }
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
        why = TLSFAIL_HANDSHAKE;
        break;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
        /* Cut off after connecting and before the handshake ended, or an alert right after it
         * (a TLS 1.3 server refusing a client certificate says so on the first read). */
        if ((connected && secured == 0) || strstr(detail, " alert ") != NULL)
            why = TLSFAIL_HANDSHAKE;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        if (connected && secured == 0 && sent == 0) {
            snprintf(msg, len, "TLS handshake did not complete in time: %s", detail);
            return TLSFAIL_HANDSHAKE_TIMEOUT; /* the kind stays timeout */
        }
        break;
    default:
        break;
    }
    if (why == TLSFAIL_HANDSHAKE) {
        snprintf(msg, len, "TLS handshake failed: %s", detail);
        *kind = ERRKIND_CONNECT;
    }
    return why;
}
