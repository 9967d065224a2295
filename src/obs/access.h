/* The access log line: what one finished request leaves behind. */
#ifndef GATHERD_ACCESS_H
#define GATHERD_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* One upstream call of the request, as the line shows it. */
struct access_leg {
    const char *name;   /* the backend's configured name */
    const char *result; /* "ok", an error kind, "cancelled" or "running" */
    long status;        /* the upstream's HTTP status; 0 when none arrived */
    uint64_t usec;
    bool joined;      /* it shared a transfer another request had started */
    const char *item; /* the item it was for ("each" requests), or NULL */
    bool dependent;   /* it waited for other calls' answers: "start_ms" shows when it began */
    uint64_t start_usec;
};

/* Fills *out with call i of the request, 0 <= i < nlegs. */
typedef void (*access_leg_fn)(const void *arg, size_t i, struct access_leg *out);

struct access_entry {
    const char *request_id, *method, *path, *client;
    int status;
    int worker; /* the loop that served it */
    uint64_t usec;
    size_t bytes;
    size_t nlegs; /* 0: no "backends" member (gatherd's own paths, requests refused early) */
    access_leg_fn leg;
    const void *leg_arg;
    /* Summarise the calls instead of listing them: "legs": {"total", "outcomes": {result:
     * count}, "slowest_ms", "slowest_item"}. For "each" requests, which may make 1,000. */
    bool summarise;
    const char *stream; /* "ndjson" or "sse" for a streamed answer; NULL otherwise */
    const char *cache;  /* the response cache's verdict ("hit", ...); NULL: no "cache" member */
};

/* Appends the access line as one JSON object, without a newline. 0 or -ENOMEM. */
int access_format(struct buf *b, const struct access_entry *e);

#endif
