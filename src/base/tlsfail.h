/* Why a TLS exchange with an upstream failed: the reasons gatherd tells apart in error messages
 * and counts in gatherd_upstream_tls_failures_total. The error kind of such a call stays
 * `connect` (or `timeout` for a stalled handshake); this says which TLS failure it was, so that
 * a certificate problem never passes as a plain connection failure. A leaf: it includes
 * nothing. */
#ifndef GATHERD_TLSFAIL_H
#define GATHERD_TLSFAIL_H

enum tlsfail {
    TLSFAIL_NONE,
    TLSFAIL_UNKNOWN_ISSUER,    /* no trusted CA signed the chain (or it is self-signed) */
    TLSFAIL_NAME_MISMATCH,     /* the certificate is not for the name gatherd connected to */
    TLSFAIL_EXPIRED,           /* past its notAfter */
    TLSFAIL_NOT_YET_VALID,     /* before its notBefore */
    TLSFAIL_UNTRUSTED,         /* verification failed for another reason */
    TLSFAIL_HANDSHAKE,         /* no verdict on the certificate: an alert, a reset, no common
                                  protocol version or cipher, a refused client certificate */
    TLSFAIL_HANDSHAKE_TIMEOUT, /* connected, but the handshake did not finish in time */
    TLSFAIL_COUNT
};

/* Stable lower-case names used in messages and metrics ("unknown_issuer", ...); "unknown" for a
 * value out of range. */
const char *tlsfail_name(enum tlsfail reason);

/* Whether the reason is a verdict on the upstream's certificate. */
static inline int tlsfail_is_verification(enum tlsfail reason)
{
    return reason >= TLSFAIL_UNKNOWN_ISSUER && reason <= TLSFAIL_UNTRUSTED;
}

#endif
