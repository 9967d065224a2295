#include "log.h"

#include "buf.h"
#include "jsonv.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Past this many bytes waiting in a sink, new lines are dropped. */
#define SINK_CAP (4u << 20)
/* Past this many, the writer is woken instead of waiting for its next tick. */
#define SINK_WAKE (64u << 10)
#define TICK_MS 50

struct log_sink {
    struct log_writer *lg;
    pthread_mutex_t mu;
    struct buf out, err;
    atomic_uint_fast64_t dropped;
    struct log_sink *next;
};

struct log_writer {
    pthread_t thread;
    pthread_mutex_t mu; /* guards sinks list, stop, wake */
    pthread_cond_t cond;
    bool stop, wake;
    struct log_sink *sinks;
    atomic_int level;
};

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            return; /* EPIPE or a closed descriptor: nothing sensible to do with a log line */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Swaps each sink's buffers out under its lock, then writes with no lock held. */
static void flush_sinks(struct log_writer *lg, struct buf *out, struct buf *err)
{
    pthread_mutex_lock(&lg->mu);
    struct log_sink *s = lg->sinks;
    pthread_mutex_unlock(&lg->mu);
    for (; s != NULL; s = s->next) {
        pthread_mutex_lock(&s->mu);
        struct buf t = s->out;
        s->out = *out;
        *out = t;
        t = s->err;
        s->err = *err;
        *err = t;
        pthread_mutex_unlock(&s->mu);
        write_all(STDERR_FILENO, err->data, err->len);
        write_all(STDOUT_FILENO, out->data, out->len);
        err->len = out->len = 0;
    }
}

static void *writer_main(void *arg)
{
    struct log_writer *lg = arg;
    struct buf out = BUF_INIT, err = BUF_INIT;
    for (;;) {
        pthread_mutex_lock(&lg->mu);
        if (!lg->stop && !lg->wake) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += TICK_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&lg->cond, &lg->mu, &ts);
        }
        bool stop = lg->stop;
        lg->wake = false;
        pthread_mutex_unlock(&lg->mu);
        flush_sinks(lg, &out, &err);
        if (stop)
            break;
    }
    buf_finish(&out);
    buf_finish(&err);
    return NULL;
}

struct log_writer *log_create(enum loglevel level)
{
    struct log_writer *lg = calloc(1, sizeof *lg);
    if (lg == NULL)
        return NULL;
    pthread_mutex_init(&lg->mu, NULL);
    pthread_cond_init(&lg->cond, NULL);
    atomic_init(&lg->level, (int)level);
    if (pthread_create(&lg->thread, NULL, writer_main, lg) != 0) {
        pthread_cond_destroy(&lg->cond);
        pthread_mutex_destroy(&lg->mu);
        free(lg);
        return NULL;
    }
    return lg;
}

void log_destroy(struct log_writer *lg)
{
    if (lg == NULL)
        return;
    pthread_mutex_lock(&lg->mu);
    lg->stop = true;
    pthread_cond_signal(&lg->cond);
    pthread_mutex_unlock(&lg->mu);
    pthread_join(lg->thread, NULL);
    struct log_sink *s = lg->sinks;
    while (s != NULL) {
        struct log_sink *next = s->next;
        buf_finish(&s->out);
        buf_finish(&s->err);
        pthread_mutex_destroy(&s->mu);
        free(s);
        s = next;
    }
    pthread_cond_destroy(&lg->cond);
    pthread_mutex_destroy(&lg->mu);
    free(lg);
}

struct log_sink *log_sink_new(struct log_writer *lg)
{
    struct log_sink *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->lg = lg;
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->dropped, 0);
    pthread_mutex_lock(&lg->mu);
    s->next = lg->sinks;
    lg->sinks = s;
    pthread_mutex_unlock(&lg->mu);
    return s;
}

void log_set_level(struct log_writer *lg, enum loglevel level)
{
    atomic_store(&lg->level, (int)level);
}

bool log_enabled(const struct log_sink *s, enum loglevel level)
{
    return (int)level >= atomic_load_explicit(&s->lg->level, memory_order_relaxed);
}

uint64_t log_dropped(const struct log_writer *lg)
{
    uint64_t n = 0;
    pthread_mutex_lock((pthread_mutex_t *)&lg->mu);
    for (const struct log_sink *s = lg->sinks; s != NULL; s = s->next)
        n += atomic_load_explicit(&s->dropped, memory_order_relaxed);
    pthread_mutex_unlock((pthread_mutex_t *)&lg->mu);
    return n;
}

int log_append_time(struct buf *b)
{
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    return buf_printf(b, "\"time\":\"%s.%03ldZ\"", when, ts.tv_nsec / 1000000L);
}

static int format_event(struct buf *b, enum loglevel level, const char *msg, const char *fields)
{
    int rc = buf_appendc(b, '{');
    if (rc == 0)
        rc = log_append_time(b);
    if (rc == 0)
        rc = buf_printf(b, ",\"level\":\"%s\",\"msg\":", loglevel_name(level));
    if (rc == 0)
        rc = jsonv_append_string(b, msg, strlen(msg));
    if (rc == 0 && fields != NULL && fields[0] != '\0')
        rc = buf_printf(b, ",%s", fields);
    if (rc == 0)
        rc = buf_appends(b, "}\n");
    return rc;
}

static void wake(struct log_writer *lg)
{
    pthread_mutex_lock(&lg->mu);
    lg->wake = true;
    pthread_cond_signal(&lg->cond);
    pthread_mutex_unlock(&lg->mu);
}

void log_event(struct log_sink *s, enum loglevel level, const char *msg, const char *fields)
{
    if (!log_enabled(s, level))
        return;
    pthread_mutex_lock(&s->mu);
    size_t before = s->err.len;
    if (s->err.len > SINK_CAP || format_event(&s->err, level, msg, fields) < 0) {
        s->err.len = before;
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->mu);
    wake(s->lg);
}

void log_access(struct log_sink *s, const char *line, size_t len)
{
    bool full = false;
    pthread_mutex_lock(&s->mu);
    size_t before = s->out.len;
    if (s->out.len > SINK_CAP || buf_append(&s->out, line, len) < 0 ||
        buf_appendc(&s->out, '\n') < 0) {
        s->out.len = before;
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
    }
    full = s->out.len > SINK_WAKE;
    pthread_mutex_unlock(&s->mu);
    if (full)
        wake(s->lg);
}
