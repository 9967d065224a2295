#include "stream.h"

#include "agg.h"
#include "buf.h"
#include "pct.h"
#include "plan.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The q of one media range's parameters ("; q=0.5; x=y"), 1 when absent, 0 when malformed. */
static double qvalue(const char *params, size_t n)
{
    double q = 1.0;
    for (size_t i = 0; i < n; i++) {
        if (params[i] != ';')
            continue;
        size_t j = i + 1;
        while (j < n && (params[j] == ' ' || params[j] == '\t'))
            j++;
        if (j + 1 < n && (params[j] == 'q' || params[j] == 'Q') && params[j + 1] == '=') {
            char num[8] = "";
            size_t k = 0;
            for (j += 2; j < n && k < sizeof num - 1 && strchr("0123456789.", params[j]); j++)
                num[k++] = params[j];
            q = k > 0 ? strtod(num, NULL) : 0.0;
        }
    }
    return q;
}

enum stream_mode stream_negotiate(const char *accept)
{
    enum stream_mode best = STREAM_NONE;
    double best_q = 0.0;
    for (const char *p = accept ? accept : ""; *p != '\0';) {
        size_t len = strcspn(p, ",");
        const char *t = p;
        while (t < p + len && (*t == ' ' || *t == '\t'))
            t++;
        size_t tlen = strcspn(t, ";, \t");
        if (t + tlen > p + len)
            tlen = (size_t)(p + len - t);
        enum stream_mode m = STREAM_NONE;
        if (tlen == 20 && strncasecmp(t, "application/x-ndjson", 20) == 0)
            m = STREAM_NDJSON;
        else if (tlen == 17 && strncasecmp(t, "text/event-stream", 17) == 0)
            m = STREAM_SSE;
        if (m != STREAM_NONE) {
            double q = qvalue(t + tlen, (size_t)(p + len - t - tlen));
            if (q > best_q) {
                best = m;
                best_q = q;
            }
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return best;
}

const char *stream_content_type(enum stream_mode m)
{
    return m == STREAM_SSE ? "text/event-stream" : "application/x-ndjson";
}

int stream_append_call(struct buf *b, enum stream_mode m, const struct agg *a, size_t i)
{
    int rc = 0;
    if (m == STREAM_SSE) {
        const struct plan_call *c = agg_plan(a)->calls + i;
        rc = buf_appends(b, "event: result\nid: ");
        if (rc == 0 && c->item != NULL)
            rc = pct_encode(b, c->item, strlen(c->item)); /* never a line break in the id */
        else if (rc == 0)
            rc = buf_printf(b, "%zu", c->index);
        if (rc == 0)
            rc = buf_appends(b, "\ndata: ");
    }
    if (rc == 0)
        rc = agg_render_call(a, i, b);
    if (rc == 0)
        rc = buf_appends(b, m == STREAM_SSE ? "\n\n" : "\n");
    return rc;
}

int stream_append_done(struct buf *b, enum stream_mode m, size_t ok, size_t failed)
{
    return buf_printf(b, "%s{\"done\":true,\"ok\":%zu,\"failed\":%zu}%s",
                      m == STREAM_SSE ? "event: done\ndata: " : "", ok, failed,
                      m == STREAM_SSE ? "\n\n" : "\n");
}
