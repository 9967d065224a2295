#include "agg.h"

#include "buf.h"
#include "plan.h"
#include "jsonv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    enum agg_state state;
    enum errkind error;
    long status;
    char *body; /* DONE: the upstream body; the value is body[vstart..vend) */
    size_t vstart, vend;
    char *message; /* FAILED/CANCELLED: malloc'd, or NULL for the kind's default */
};

struct agg {
    const struct plan *plan;
    size_t n;
    size_t remaining;
    size_t running;
    size_t cursor;  /* no PENDING slot before it */
    size_t decider; /* the failed call that decided the request, or AGG_NONE */
    bool dropped;   /* agg_drop_bodies() was called */
    struct slot slots[];
};

struct agg *agg_create(const struct plan *plan)
{
    struct agg *a = calloc(1, sizeof *a + plan->ncalls * sizeof a->slots[0]);
    if (a == NULL)
        return NULL;
    a->plan = plan;
    a->n = plan->ncalls;
    a->remaining = plan->ncalls;
    a->decider = AGG_NONE;
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

const struct plan *agg_plan(const struct agg *a)
{
    return a->plan;
}

enum agg_state agg_state_of(const struct agg *a, size_t i)
{
    return a->slots[i].state;
}

enum errkind agg_error_of(const struct agg *a, size_t i)
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

size_t agg_running(const struct agg *a)
{
    return a->running;
}

bool agg_decided(const struct agg *a)
{
    return a->decider != AGG_NONE;
}

size_t agg_decider(const struct agg *a)
{
    return a->decider;
}

static bool deps_done(const struct agg *a, size_t i)
{
    const struct plan_call *c = &a->plan->calls[i];
    for (size_t d = 0; d < c->ndeps; d++)
        if (a->slots[c->deps[d]].state != AGG_DONE)
            return false;
    return true;
}

size_t agg_next(const struct agg *a)
{
    if (a->decider != AGG_NONE)
        return AGG_NONE;
    if (a->plan->concurrency > 0 && a->running >= a->plan->concurrency)
        return AGG_NONE;
    for (size_t i = a->cursor; i < a->n; i++)
        if (a->slots[i].state == AGG_PENDING && deps_done(a, i))
            return i;
    return AGG_NONE;
}

void agg_drop_bodies(struct agg *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->slots[i].body);
        a->slots[i].body = NULL;
    }
    a->dropped = true;
}

int agg_body_of(const struct agg *a, size_t i, const char **s, size_t *n)
{
    if (i >= a->n || a->slots[i].state != AGG_DONE || a->dropped)
        return -EINVAL;
    *s = a->slots[i].body + a->slots[i].vstart;
    *n = a->slots[i].vend - a->slots[i].vstart;
    return 0;
}

/* Moves the cursor past slots that are no longer PENDING. */
static void advance(struct agg *a)
{
    while (a->cursor < a->n && a->slots[a->cursor].state != AGG_PENDING)
        a->cursor++;
}

int agg_start(struct agg *a, size_t i)
{
    if (i >= a->n)
        return -EINVAL;
    if (a->slots[i].state != AGG_PENDING)
        return -EALREADY;
    a->slots[i].state = AGG_RUNNING;
    a->running++;
    advance(a);
    return 0;
}

/* Slot i leaves RUNNING or PENDING for a terminal state. */
static void settle(struct agg *a, size_t i, enum agg_state state)
{
    if (a->slots[i].state == AGG_RUNNING)
        a->running--;
    a->slots[i].state = state;
    a->remaining--;
    advance(a);
}

/* Moves slot i to a terminal failure state. A message that cannot be copied falls back to the
 * kind's default text rather than failing the transition. A failed call decides the request
 * under fail_fast, or when it is required. */
static void settle_failed(struct agg *a, size_t i, enum agg_state state, enum errkind kind,
                          const char *message)
{
    struct slot *s = &a->slots[i];
    s->error = kind;
    free(s->message);
    s->message = message ? strdup(message) : NULL;
    settle(a, i, state);
    if (state == AGG_FAILED && a->decider == AGG_NONE &&
        (a->plan->fail_fast || a->plan->calls[i].required))
        a->decider = i;
    if (state != AGG_FAILED || a->decider != AGG_NONE)
        return; /* a cancel settles everything anyway; a decided request is cancelled whole */
    /* Calls waiting on this one can never start. Dependencies point backwards or forwards, so
     * every PENDING call is looked at; the recursion is as deep as the chain. */
    for (size_t j = 0; j < a->n; j++) {
        const struct plan_call *c = &a->plan->calls[j];
        if (a->slots[j].state != AGG_PENDING)
            continue;
        for (size_t d = 0; d < c->ndeps; d++)
            if (c->deps[d] == i) {
                char msg[300];
                snprintf(msg, sizeof msg, "dependency \"%.200s\" did not succeed",
                         plan_call_name(&a->plan->calls[i]));
                settle_failed(a, j, AGG_FAILED, ERRKIND_DEPENDENCY, msg);
                break;
            }
    }
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
        settle_failed(a, i, AGG_FAILED, ERRKIND_HTTP_STATUS, msg);
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
        settle_failed(a, i, AGG_FAILED, ERRKIND_INVALID_JSON, msg);
        return 0;
    }
    s->body = body;
    s->vstart = vs;
    s->vend = ve;
    settle(a, i, AGG_DONE);
    return 0;
}

int agg_fail(struct agg *a, size_t i, enum errkind kind, const char *message)
{
    if (i >= a->n || kind == ERRKIND_NONE || kind >= ERRKIND_COUNT)
        return -EINVAL;
    if (a->slots[i].state != AGG_RUNNING && a->slots[i].state != AGG_PENDING)
        return -EALREADY;
    settle_failed(a, i, AGG_FAILED, kind, message);
    return 0;
}

int agg_cancel(struct agg *a, size_t i, enum errkind kind, const char *message)
{
    if (i >= a->n || kind == ERRKIND_NONE || kind >= ERRKIND_COUNT)
        return -EINVAL;
    if (a->slots[i].state != AGG_PENDING && a->slots[i].state != AGG_RUNNING)
        return -EALREADY;
    settle_failed(a, i, AGG_CANCELLED, kind, message);
    return 0;
}

/* The status the join deserves; see agg_render(). */
static int status_of(const struct agg *a)
{
    bool any_ok = false;
    if (a->decider != AGG_NONE)
        return 502;
    for (size_t i = 0; i < a->n; i++) {
        bool ok = a->slots[i].state == AGG_DONE;
        any_ok |= ok;
        if (!ok && (a->plan->fail_fast || a->plan->calls[i].required))
            return 502;
    }
    return any_ok ? 200 : 502;
}

/* The label of call i in the join: "index":i, or "item":"..." for an each plan. */
static int append_label(struct buf *out, const struct plan_call *call, bool each)
{
    if (!each)
        return buf_printf(out, "\"index\":%zu", call->index);
    int rc = buf_appends(out, "\"item\":");
    return rc == 0 ? jsonv_append_string(out, call->item, strlen(call->item)) : rc;
}

/* ,"error":..,"status":..,"message":.. of a failed or cancelled slot. */
static int append_error(struct buf *out, const struct slot *s)
{
    const char *msg = s->message ? s->message : errkind_default_message(s->error);
    int rc =
        buf_printf(out, ",\"error\":\"%s\"", errkind_name(s->error ? s->error : ERRKIND_TRANSFER));
    if (rc == 0 && s->error == ERRKIND_HTTP_STATUS)
        rc = buf_printf(out, ",\"status\":%ld", s->status);
    if (rc == 0)
        rc = buf_appends(out, ",\"message\":");
    if (rc == 0)
        rc = jsonv_append_string(out, msg, strlen(msg));
    return rc;
}

int agg_render_call(const struct agg *a, size_t i, struct buf *out)
{
    const struct slot *s = &a->slots[i];
    if (i >= a->n || s->state == AGG_PENDING || s->state == AGG_RUNNING || a->dropped)
        return -EINVAL;
    const struct plan_call *call = &a->plan->calls[i];
    const char *name = plan_call_name(call);
    int rc = buf_appendc(out, '{');
    if (rc == 0)
        rc = append_label(out, call, a->plan->each);
    if (rc == 0)
        rc = buf_appends(out, ",\"name\":");
    if (rc == 0)
        rc = jsonv_append_string(out, name, strlen(name));
    if (rc == 0 && s->state == AGG_DONE) {
        rc = buf_appends(out, ",\"result\":");
        if (rc == 0)
            rc = buf_append(out, s->body + s->vstart, s->vend - s->vstart);
    } else if (rc == 0) {
        rc = append_error(out, s);
    }
    if (rc == 0)
        rc = buf_appendc(out, '}');
    return rc;
}

int agg_render(const struct agg *a, struct buf *out)
{
    if (a->dropped)
        return -EINVAL;
    bool each = a->plan->each;
    size_t need = 32;
    for (size_t i = 0; i < a->n; i++) {
        need += a->slots[i].state == AGG_DONE ? a->slots[i].vend - a->slots[i].vstart + 1 : 160;
        if (each)
            need += strlen(a->plan->calls[i].item) + 8;
    }
    if (buf_reserve(out, need) < 0)
        return -ENOMEM;

    int rc = buf_appends(out, each ? "{\"results\":{" : "{\"results\":[");
    for (size_t i = 0; rc == 0 && i < a->n; i++) {
        const struct slot *s = &a->slots[i];
        if (i > 0)
            rc = buf_appendc(out, ',');
        if (rc == 0 && each) {
            const char *item = a->plan->calls[i].item;
            rc = jsonv_append_string(out, item, strlen(item));
            if (rc == 0)
                rc = buf_appendc(out, ':');
        }
        if (rc == 0 && s->state == AGG_DONE)
            rc = buf_append(out, s->body + s->vstart, s->vend - s->vstart);
        else if (rc == 0)
            rc = buf_appends(out, "{}");
    }
    if (rc == 0)
        rc = buf_appends(out, each ? "},\"errors\":[" : "],\"errors\":[");
    bool first = true;
    for (size_t i = 0; rc == 0 && i < a->n; i++) {
        const struct slot *s = &a->slots[i];
        if (s->state == AGG_DONE)
            continue;
        const struct plan_call *call = &a->plan->calls[i];
        const char *name = plan_call_name(call);
        rc = buf_appends(out, first ? "{" : ",{");
        if (rc == 0)
            rc = append_label(out, call, each);
        if (rc == 0)
            rc = buf_appends(out, ",\"name\":");
        if (rc == 0)
            rc = jsonv_append_string(out, name, strlen(name));
        if (rc == 0 && s->state != AGG_FAILED && s->state != AGG_CANCELLED)
            rc = buf_appends(out, ",\"error\":\"transfer\",\"message\":\"backend never "
                                  "finished\""); /* render() before agg_done(): a caller bug */
        else if (rc == 0)
            rc = append_error(out, s);
        if (rc == 0)
            rc = buf_appendc(out, '}');
        first = false;
    }
    if (rc == 0)
        rc = buf_appends(out, "]}");
    if (rc < 0)
        return rc;
    return status_of(a);
}
