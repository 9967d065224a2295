#include "errkind.h"

static const char *const names[ERRKIND_COUNT] = {
    [ERRKIND_NONE] = "none",
    [ERRKIND_TIMEOUT] = "timeout",
    [ERRKIND_CONNECT] = "connect",
    [ERRKIND_HTTP_STATUS] = "http_status",
    [ERRKIND_INVALID_JSON] = "invalid_json",
    [ERRKIND_TOO_LARGE] = "too_large",
    [ERRKIND_TRANSFER] = "transfer",
    [ERRKIND_CANCELLED] = "cancelled",
    [ERRKIND_DEPENDENCY] = "dependency",
};

static const char *const default_messages[ERRKIND_COUNT] = {
    [ERRKIND_NONE] = "",
    [ERRKIND_TIMEOUT] = "upstream did not answer in time",
    [ERRKIND_CONNECT] = "could not connect to upstream",
    [ERRKIND_HTTP_STATUS] = "upstream answered an error status",
    [ERRKIND_INVALID_JSON] = "upstream body is not valid JSON",
    [ERRKIND_TOO_LARGE] = "upstream body exceeds max_body_bytes",
    [ERRKIND_TRANSFER] = "upstream transfer failed",
    [ERRKIND_CANCELLED] = "cancelled: the request ended early",
    [ERRKIND_DEPENDENCY] = "a call this one depends on failed",
};

const char *errkind_name(enum errkind kind)
{
    return (unsigned)kind < ERRKIND_COUNT ? names[kind] : "unknown";
}

const char *errkind_default_message(enum errkind kind)
{
    return (unsigned)kind < ERRKIND_COUNT ? default_messages[kind] : "";
}
