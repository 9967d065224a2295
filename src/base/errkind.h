/* The kinds of failure a backend call can end in: the vocabulary that the aggregation, the
 * upstream client, the access line and the metrics share. A leaf: it includes nothing. */
#ifndef GATHERD_ERRKIND_H
#define GATHERD_ERRKIND_H

enum errkind {
    ERRKIND_NONE,
    ERRKIND_TIMEOUT,
    ERRKIND_CONNECT,
    ERRKIND_HTTP_STATUS,
    ERRKIND_INVALID_JSON,
    ERRKIND_TOO_LARGE,
    ERRKIND_TRANSFER,
    ERRKIND_CANCELLED,  /* cut off when a failure ended the request early */
    ERRKIND_DEPENDENCY, /* a call it reads from failed, or did not have the field it needs */
    ERRKIND_COUNT
};

/* Stable lower-case names used in answers, logs and metrics ("timeout", ...); "unknown" for a
 * value out of range. */
const char *errkind_name(enum errkind kind);

/* The message an error entry carries when nothing more precise is known. */
const char *errkind_default_message(enum errkind kind);

#endif
