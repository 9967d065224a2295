#include "access.h"

#include "agg.h"
#include "buf.h"
#include "config.h"
#include "fanout.h"
#include "jsonv.h"
#include "log.h"

#include <string.h>

bool access_rid_valid(const char *rid)
{
    if (rid == NULL)
        return false;
    size_t n = 0;
    for (const char *p = rid; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("._:@/+=-", c) != NULL;
        if (!ok || n >= ACCESS_RID_MAX)
            return false;
    }
    return n > 0;
}

static const char *result_name(const struct agg *a, size_t i, bool client_gone)
{
    switch (agg_state_of(a, i)) {
    case AGG_DONE:
        return "ok";
    case AGG_CANCELLED:
        return client_gone ? "cancelled" : agg_error_name(agg_error_of(a, i));
    case AGG_FAILED:
        return agg_error_name(agg_error_of(a, i));
    default:
        return "running";
    }
}

static int format_backends(struct buf *b, const struct access_entry *e)
{
    const struct agg *a = fanout_agg(e->fanout);
    int rc = buf_appends(b, ",\"backends\":[");
    for (size_t i = 0; rc == 0 && i < agg_count(a); i++) {
        const char *name = e->ep->backends[i].name;
        rc = buf_appends(b, i ? ",{\"name\":" : "{\"name\":");
        if (rc == 0)
            rc = jsonv_append_string(b, name, strlen(name));
        if (rc == 0)
            rc = buf_printf(b, ",\"result\":\"%s\"", result_name(a, i, e->client_gone));
        if (rc == 0 && agg_status_of(a, i) != 0)
            rc = buf_printf(b, ",\"status\":%ld", agg_status_of(a, i));
        if (rc == 0)
            rc = buf_printf(b, ",\"ms\":%.2f", (double)fanout_backend_usec(e->fanout, i) / 1e3);
        if (rc == 0)
            rc = buf_appends(b, fanout_backend_joined(e->fanout, i) ? ",\"joined\":true}" : "}");
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
    if (rc == 0 && e->fanout != NULL && e->ep != NULL)
        rc = format_backends(b, e);
    if (rc == 0)
        rc = buf_appendc(b, '}');
    return rc;
}
