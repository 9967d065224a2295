/* A growable byte buffer. init/finish pairs: the struct lives wherever the caller puts it,
 * buf_finish() frees its storage. Every appending function returns 0, or -ENOMEM and leaves
 * the buffer as it was. */
#ifndef GATHERD_BUF_H
#define GATHERD_BUF_H

#include <stddef.h>

struct buf {
    char *data; /* NUL-terminated whenever len > 0 or after buf_reserve() */
    size_t len;
    size_t cap;
};

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Makes room for at least `extra` more bytes plus a terminating NUL. */
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_appends(struct buf *b, const char *s);
int buf_appendc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the storage to the caller (free() it); the buffer is empty afterwards. Never NULL
 * unless allocation of an empty string fails. */
char *buf_steal(struct buf *b, size_t *len);

/* Frees the storage; the buffer may be reused. Accepts an already finished buffer. */
void buf_finish(struct buf *b);

#endif
