#include "tlsfail.h"

static const char *const names[TLSFAIL_COUNT] = {
    [TLSFAIL_NONE] = "none",
    [TLSFAIL_UNKNOWN_ISSUER] = "unknown_issuer",
    [TLSFAIL_NAME_MISMATCH] = "name_mismatch",
    [TLSFAIL_EXPIRED] = "expired",
    [TLSFAIL_NOT_YET_VALID] = "not_yet_valid",
    [TLSFAIL_UNTRUSTED] = "untrusted",
    [TLSFAIL_HANDSHAKE] = "handshake",
    [TLSFAIL_HANDSHAKE_TIMEOUT] = "handshake_timeout",
};

const char *tlsfail_name(enum tlsfail reason)
{
    return (unsigned)reason < TLSFAIL_COUNT ? names[reason] : "unknown";
}
