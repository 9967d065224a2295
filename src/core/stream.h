/* Streamed answers: each call's outcome sent the moment it settles, as newline-delimited JSON
 * or as Server-Sent Events, then a last line that closes the stream. This is what goes on the
 * wire, built from the state machine's calls (agg_render_call()); no I/O. */
#ifndef GATHERD_STREAM_H
#define GATHERD_STREAM_H

#include <stddef.h>

struct agg;
struct buf;

enum stream_mode { STREAM_NONE, STREAM_NDJSON, STREAM_SSE };

/* The stream an Accept header asks for: application/x-ndjson or text/event-stream named
 * explicitly with a q above 0 (the higher q wins, then the first named); a wildcard never
 * selects one. STREAM_NONE (the plain join) for anything else, NULL included. */
enum stream_mode stream_negotiate(const char *accept);

/* The Content-Type of a mode's answer. */
const char *stream_content_type(enum stream_mode m);

/* Appends the line (NDJSON) or event (SSE: "event: result", "id:" the call's index or its item
 * percent-encoded, "data:" the JSON) for settled call i of a. 0 or -ENOMEM. */
int stream_append_call(struct buf *b, enum stream_mode m, const struct agg *a, size_t i);

/* Appends the closing line, {"done":true,"ok":ok,"failed":failed} (SSE: "event: done"). */
int stream_append_done(struct buf *b, enum stream_mode m, size_t ok, size_t failed);

/* An SSE comment that keeps proxies from cutting an idle stream. */
#define STREAM_KEEPALIVE ": keep-alive\n\n"

#endif
