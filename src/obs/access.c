#include "access.h"

#include "buf.h"
#include "jsonv.h"
#include "log.h"

#include <string.h>

static int format_legs(struct buf *b, const struct access_entry *e)
{
    int rc = buf_appends(b, ",\"backends\":[");
    for (size_t i = 0; rc == 0 && i < e->nlegs; i++) {
        struct access_leg leg = {0};
        e->leg(e->leg_arg, i, &leg);
        rc = buf_appends(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = jsonv_append_string(b, leg.name, strlen(leg.name));
        if (rc == 0)
            rc = buf_printf(b, ",\"result\":\"%s\"", leg.result);
        if (rc == 0 && leg.status != 0)
            rc = buf_printf(b, ",\"status\":%ld", leg.status);
        if (rc == 0)
            rc = buf_printf(b, ",\"ms\":%.2f", (double)leg.usec / 1e3);
        if (rc == 0)
            rc = buf_appends(b, leg.joined ? ",\"joined\":true}" : "}");
    }
    if (rc == 0)
        rc = buf_appendc(b, ']');
    return rc;
}

int access_format(struct buf *b, const struct access_entry *e)
{
    int rc = buf_appendc(b, '{');
    if (rc == 0)
        rc = log_append_time(b);
    /* request_id and method are safe by construction; path and client are escaped. */
    if (rc == 0)
        rc = buf_printf(b, ",\"request_id\":\"%s\",\"method\":", e->request_id);
    if (rc == 0)
        rc = jsonv_append_string(b, e->method, strlen(e->method));
    if (rc == 0)
        rc = buf_appends(b, ",\"path\":");
    if (rc == 0)
        rc = jsonv_append_string(b, e->path, strlen(e->path));
    if (rc == 0)
        rc = buf_printf(b,
                        ",\"status\":%d,\"duration_ms\":%.2f,\"bytes\":%zu,\"worker\":%d,"
                        "\"client\":",
                        e->status, (double)e->usec / 1e3, e->bytes, e->worker);
    if (rc == 0)
        rc = jsonv_append_string(b, e->client, strlen(e->client));
    if (rc == 0 && e->nlegs > 0)
        rc = format_legs(b, e);
    if (rc == 0)
        rc = buf_appendc(b, '}');
    return rc;
}
