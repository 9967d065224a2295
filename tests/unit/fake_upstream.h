/* A fake upstream client behind the upstream operations seam (upstream.h): it records every
 * transfer started and lets a test finish or fail it by hand, as curl would from the loop. A
 * test ends with fake_upstream_idle() to assert no transfer is left running. */
#ifndef GATHERD_TEST_FAKE_UPSTREAM_H
#define GATHERD_TEST_FAKE_UPSTREAM_H

#include "upstream.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_MAX 256

struct upstream_xfer {
    upstream_done_fn done;
    void *arg;
    char url[256];
    char rid[160];
    size_t nheaders;
    char first_header[128];
    char body[1024]; /* a POST's body (cut to fit), "" for a GET */
    bool post;
    long timeout_ms;
    bool running, cancelled, finished;
};

struct fake_upstream {
    struct upstream_xfer x[FAKE_MAX];
    size_t n;        /* started so far */
    bool fail_start; /* the next start fails, as out of memory would */
};

static struct upstream_xfer *fake_start(void *ctx, const struct upstream_req *req,
                                        upstream_done_fn done, void *arg)
{
    struct fake_upstream *f = ctx;
    if (f->fail_start || f->n == FAKE_MAX) {
        f->fail_start = false;
        return NULL;
    }
    struct upstream_xfer *x = &f->x[f->n++];
    memset(x, 0, sizeof *x);
    x->done = done;
    x->arg = arg;
    snprintf(x->url, sizeof x->url, "%s", req->url);
    snprintf(x->rid, sizeof x->rid, "%s", req->request_id);
    x->nheaders = req->nheaders;
    if (req->nheaders > 0)
        snprintf(x->first_header, sizeof x->first_header, "%s", req->headers[0]);
    x->post = req->body != NULL;
    if (x->post)
        snprintf(x->body, sizeof x->body, "%.*s", (int)req->body_len, req->body);
    x->timeout_ms = req->timeout_ms;
    x->running = true;
    return x;
}

static void fake_cancel(void *ctx, struct upstream_xfer *x)
{
    (void)ctx;
    if (x == NULL)
        return;
    x->running = false;
    x->cancelled = true;
}

static const struct upstream_ops fake_ops = {fake_start, fake_cancel};

/* Finishes transfer i with an HTTP answer (body copied: the callee owns what it gets). */
static void fake_answer(struct fake_upstream *f, size_t i, long status, const char *body)
{
    struct upstream_xfer *x = &f->x[i];
    size_t len = strlen(body);
    char *copy = malloc(len + 1);
    memcpy(copy, body, len + 1);
    struct upstream_result res = {ERRKIND_NONE, status, copy, len, NULL, TLSFAIL_NONE};
    x->running = false;
    x->finished = true;
    x->done(x->arg, &res);
}

/* Finishes transfer i with a transport error. */
static void fake_fail(struct fake_upstream *f, size_t i, enum errkind kind, const char *message)
{
    struct upstream_xfer *x = &f->x[i];
    struct upstream_result res = {kind, 0, NULL, 0, message, TLSFAIL_NONE};
    x->running = false;
    x->finished = true;
    x->done(x->arg, &res);
}

/* Transfers still running. */
static size_t fake_running(const struct fake_upstream *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++)
        n += f->x[i].running;
    return n;
}

#endif
