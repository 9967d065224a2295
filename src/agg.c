#include "agg.h"

#include "buf.h"
#include "config.h"
#include "jsonv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    enum agg_state state;
    enum agg_error error;
    long status;
    char *body; /* DONE: the upstream body; the value is body[vstart..vend) */
    size_t vstart, vend;
    char *message; /* FAILED/CANCELLED: malloc'd, or NULL for the kind's default */
};

struct agg {
    const struct config_endpoint *ep;
    size_t n;
    size_t remaining;
    struct slot slots[];
};

static const char *const error_names[AGG_E_COUNT] = {
    [AGG_E_NONE] = "none",
    [AGG_E_TIMEOUT] = "timeout",
    [AGG_E_CONNECT] = "connect",
    [AGG_E_HTTP_STATUS] = "http_status",
    [AGG_E_INVALID_JSON] = "invalid_json",
    [AGG_E_TOO_LARGE] = "too_large",
    [AGG_E_TRANSFER] = "transfer",
};

static const char *const default_messages[AGG_E_COUNT] = {
    [AGG_E_NONE] = "",
    [AGG_E_TIMEOUT] = "upstream did not answer in time",
    [AGG_E_CONNECT] = "could not connect to upstream",
    [AGG_E_HTTP_STATUS] = "upstream answered an error status",
    [AGG_E_INVALID_JSON] = "upstream body is not valid JSON",
    [AGG_E_TOO_LARGE] = "upstream body exceeds max_body_bytes",
    [AGG_E_TRANSFER] = "upstream transfer failed",
};

const char *agg_error_name(enum agg_error kind)
{
    return kind < AGG_E_COUNT ? error_names[kind] : "unknown";
}

struct agg *agg_create(const struct config_endpoint *ep)
{
    struct agg *a = calloc(1, sizeof *a + ep->nbackends * sizeof a->slots[0]);
    if (a == NULL)
        return NULL;
    a->ep = ep;
    a->n = ep->nbackends;
    a->remaining = ep->nbackends;
    return a;
}

void agg_destroy(struct agg *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->slots[i].body);
        free(a->slots[i].message);
    }
    free(a);
}

size_t agg_count(const struct agg *a)
{
    return a->n;
}

enum agg_state agg_state_of(const struct agg *a, size_t i)
{
    return a->slots[i].state;
}

enum agg_error agg_error_of(const struct agg *a, size_t i)
{
    return a->slots[i].error;
}

long agg_status_of(const struct agg *a, size_t i)
{
    return a->slots[i].status;
}

size_t agg_remaining(const struct agg *a)
{
    return a->remaining;
}

int agg_start(struct agg *a, size_t i)
{
    if (i >= a->n)
        return -EINVAL;
    if (a->slots[i].state != AGG_PENDING)
        return -EALREADY;
    a->slots[i].state = AGG_RUNNING;
    return 0;
}

/* Moves slot i to a terminal failure state. A message that cannot be copied falls back to the
 * kind's default text rather than failing the transition. */
static void settle_failed(struct agg *a, size_t i, enum agg_state state, enum agg_error kind,
                          const char *message)
{
    struct slot *s = &a->slots[i];
    s->state = state;
    s->error = kind;
    free(s->message);
    s->message = message ? strdup(message) : NULL;
    a->remaining--;
}

int agg_complete(struct agg *a, size_t i, long status, char *body, size_t len)
{
    if (i >= a->n || a->slots[i].state != AGG_RUNNING) {
        free(body);
        return i >= a->n ? -EINVAL : -EALREADY;
    }
    struct slot *s = &a->slots[i];
    s->status = status;
    if (status < 200 || status > 299) {
        char msg[64];
        snprintf(msg, sizeof msg, "upstream answered %ld", status);
        free(body);
        settle_failed(a, i, AGG_FAILED, AGG_E_HTTP_STATUS, msg);
        return 0;
    }
    size_t vs, ve;
    if (len == 0 || jsonv_check(body, len, &vs, &ve) < 0) {
        char msg[96];
        if (len == 0)
            snprintf(msg, sizeof msg, "upstream body is empty");
        else
            snprintf(msg, sizeof msg, "upstream body is not valid JSON (at byte %zu of %zu)", vs,
                     len);
        free(body);
        settle_failed(a, i, AGG_FAILED, AGG_E_INVALID_JSON, msg);
        return 0;
    }
    s->body = body;
    s->vstart = vs;
    s->vend = ve;
    s->state = AGG_DONE;
    a->remaining--;
    return 0;
}

int agg_fail(struct agg *a, size_t i, enum agg_error kind, const char *message)
{
    if (i >= a->n || kind == AGG_E_NONE || kind >= AGG_E_COUNT)
        return -EINVAL;
    if (a->slots[i].state != AGG_RUNNING)
        return -EALREADY;
    settle_failed(a, i, AGG_FAILED, kind, message);
    return 0;
}

int agg_cancel(struct agg *a, size_t i, enum agg_error kind, const char *message)
{
    if (i >= a->n || kind == AGG_E_NONE || kind >= AGG_E_COUNT)
        return -EINVAL;
    if (a->slots[i].state != AGG_PENDING && a->slots[i].state != AGG_RUNNING)
        return -EALREADY;
    settle_failed(a, i, AGG_CANCELLED, kind, message);
    return 0;
}

int agg_render(const struct agg *a, struct buf *out)
{
    size_t need = 32;
    bool any_ok = false;
    for (size_t i = 0; i < a->n; i++)
        need += a->slots[i].state == AGG_DONE ? a->slots[i].vend - a->slots[i].vstart + 1 : 160;
    if (buf_reserve(out, need) < 0)
        return -ENOMEM;

    int rc = buf_appends(out, "{\"results\":[");
    for (size_t i = 0; rc == 0 && i < a->n; i++) {
        const struct slot *s = &a->slots[i];
        if (i > 0)
            rc = buf_appendc(out, ',');
        if (rc == 0 && s->state == AGG_DONE) {
            any_ok = true;
            rc = buf_append(out, s->body + s->vstart, s->vend - s->vstart);
        } else if (rc == 0) {
            rc = buf_appends(out, "{}");
        }
    }
    if (rc == 0)
        rc = buf_appends(out, "],\"errors\":[");
    bool first = true;
    for (size_t i = 0; rc == 0 && i < a->n; i++) {
        const struct slot *s = &a->slots[i];
        if (s->state == AGG_DONE)
            continue;
        const char *name = a->ep->backends[i].name;
        const char *msg = s->message ? s->message : default_messages[s->error];
        if (s->state != AGG_FAILED && s->state != AGG_CANCELLED)
            msg = "backend never finished"; /* render() before agg_done(): a caller bug */
        rc = buf_printf(out, "%s{\"index\":%zu,\"name\":", first ? "" : ",", i);
        if (rc == 0)
            rc = jsonv_append_string(out, name, strlen(name));
        if (rc == 0)
            rc = buf_printf(out, ",\"error\":\"%s\"",
                            error_names[s->error ? s->error : AGG_E_TRANSFER]);
        if (rc == 0 && s->error == AGG_E_HTTP_STATUS)
            rc = buf_printf(out, ",\"status\":%ld", s->status);
        if (rc == 0)
            rc = buf_appends(out, ",\"message\":");
        if (rc == 0)
            rc = jsonv_append_string(out, msg, strlen(msg));
        if (rc == 0)
            rc = buf_appendc(out, '}');
        first = false;
    }
    if (rc == 0)
        rc = buf_appends(out, "]}");
    if (rc < 0)
        return rc;
    return any_ok ? 200 : 502;
}
