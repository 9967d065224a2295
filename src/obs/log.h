/* Structured logging. Every line is one JSON object: access lines go to stdout, everything else
 * to stderr. Loop threads never write to a descriptor themselves: they append to their own sink
 * (one per thread, so workers share nothing but an uncontended mutex with the writer), and one
 * logger thread writes. When a reader is slow and a sink is full, lines are dropped and counted
 * rather than stalling a loop. */
#ifndef GATHERD_LOG_H
#define GATHERD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loglevel.h"

struct buf;
struct log_writer;
struct log_sink;

/* Starts the writer thread. NULL on failure. */
struct log_writer *log_create(enum loglevel level);

/* Flushes every sink, stops the thread and frees the logger and its sinks; accepts NULL. No
 * sink may be used concurrently or afterwards. */
void log_destroy(struct log_writer *lg);

/* A new sink for the calling thread's exclusive use, owned by the logger. NULL on failure. */
struct log_sink *log_sink_new(struct log_writer *lg);

/* Minimum level of event lines; may be changed from any thread (a reload does). */
void log_set_level(struct log_writer *lg, enum loglevel level);
bool log_enabled(const struct log_sink *s, enum loglevel level);

/* Lines dropped because a sink was full, summed over sinks. */
uint64_t log_dropped(const struct log_writer *lg);

/* Writes an event line to stderr: {"time":..,"level":..,"msg":<msg>, <fields>}. `fields` is
 * NULL or a JSON fragment of members without braces ("\"addr\":\"1.2.3.4\""). Levels at WARN
 * and above, and every event line, wake the writer at once. */
void log_event(struct log_sink *s, enum loglevel level, const char *msg, const char *fields);

/* Appends `"time":"<now, RFC 3339 UTC with ms>"` to b. 0 or -ENOMEM. */
int log_append_time(struct buf *b);

/* Queues a complete access line (a JSON object without the newline) for stdout. The writer
 * picks it up within 50 ms, or sooner when the sink fills. */
void log_access(struct log_sink *s, const char *line, size_t len);

#endif
