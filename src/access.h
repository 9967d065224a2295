/* The access log line and the request id: what one finished request leaves behind. */
#ifndef GATHERD_ACCESS_H
#define GATHERD_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct config_endpoint;
struct fanout;

#define ACCESS_RID_MAX 128

/* Whether a client-supplied X-Request-Id may be used as ours: 1 to ACCESS_RID_MAX characters
 * from [A-Za-z0-9._:@/+=-], so it is safe in headers, logs and JSON without escaping. */
bool access_rid_valid(const char *rid);

struct access_entry {
    const char *request_id, *method, *path, *client;
    int status;
    int worker; /* the loop that served it */
    uint64_t usec;
    size_t bytes;
    const struct config_endpoint *ep; /* NULL for gatherd's own paths */
    const struct fanout *fanout;      /* NULL unless the request fanned out */
    bool client_gone;
};

/* Appends the access line as one JSON object, without a newline. 0 or -ENOMEM. */
int access_format(struct buf *b, const struct access_entry *e);

#endif
