/* Shared by the libFuzzer harnesses: a check that aborts with a message (libFuzzer then keeps
 * the input as a crash reproducer), and a cursor over the fuzz input. */
#ifndef GATHERD_FUZZ_H
#define GATHERD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Reads the fuzz input front to back; past the end every read yields zeros. */
struct cursor {
    const uint8_t *p;
    size_t left;
};

static inline uint8_t cur_u8(struct cursor *c)
{
    if (c->left == 0)
        return 0;
    c->left--;
    return *c->p++;
}

static inline uint16_t cur_u16(struct cursor *c)
{
    uint16_t hi = cur_u8(c);
    return (uint16_t)(hi << 8 | cur_u8(c));
}

/* Up to `max` bytes (fewer at the end of the input); returns how many, sets *out. */
static inline size_t cur_bytes(struct cursor *c, size_t max, const uint8_t **out)
{
    size_t n = max < c->left ? max : c->left;
    *out = c->p;
    c->p += n;
    c->left -= n;
    return n;
}

/* A malloc'd NUL-terminated copy of n bytes. */
static inline char *dup_n(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    CHECK(s != NULL, "out of memory");
    if (n > 0)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

#endif
