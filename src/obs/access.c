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
        if (rc == 0 && leg.dependent)
            rc = buf_printf(b, ",\"start_ms\":%.2f", (double)leg.start_usec / 1e3);
        if (rc == 0)
            rc = buf_appends(b, leg.joined ? ",\"joined\":true}" : "}");
    }
    if (rc == 0)
        rc = buf_appendc(b, ']');
    return rc;
}

static int format_summary(struct buf *b, const struct access_entry *e)
{
    /* Outcomes are a handful of constant names: count them by name. */
    const char *names[16];
    size_t counts[16], nnames = 0;
    struct access_leg slowest = {0};
    for (size_t i = 0; i < e->nlegs; i++) {
        struct access_leg leg = {0};
        e->leg(e->leg_arg, i, &leg);
        size_t k = 0;
        while (k < nnames && strcmp(names[k], leg.result) != 0)
            k++;
        if (k == nnames && nnames < 16) {
            names[nnames] = leg.result;
            counts[nnames++] = 0;
        }
        if (k < nnames)
            counts[k]++;
        if (i == 0 || leg.usec > slowest.usec)
            slowest = leg;
    }
    int rc = buf_printf(b, ",\"legs\":{\"total\":%zu,\"outcomes\":{", e->nlegs);
    for (size_t k = 0; rc == 0 && k < nnames; k++)
        rc = buf_printf(b, "%s\"%s\":%zu", k ? "," : "", names[k], counts[k]);
    if (rc == 0)
        rc = buf_printf(b, "},\"slowest_ms\":%.2f", (double)slowest.usec / 1e3);
    if (rc == 0 && slowest.item != NULL) {
        rc = buf_appends(b, ",\"slowest_item\":");
        if (rc == 0)
            rc = jsonv_append_string(b, slowest.item, strlen(slowest.item));
    }
    if (rc == 0)
        rc = buf_appendc(b, '}');
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
    if (rc == 0 && e->stream != NULL)
        rc = buf_printf(b, ",\"stream\":\"%s\"", e->stream);
    if (rc == 0 && e->cache != NULL) {
        rc = buf_appends(b, ",\"cache\":");
        if (rc == 0)
            rc = jsonv_append_string(b, e->cache, strlen(e->cache));
    }
    if (rc == 0 && e->nlegs > 0)
        rc = e->summarise ? format_summary(b, e) : format_legs(b, e);
    if (rc == 0)
        rc = buf_appendc(b, '}');
    return rc;
}
