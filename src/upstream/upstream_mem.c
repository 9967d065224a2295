#include "upstream_int.h"

#include <curl/curl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* curl 7.88 makes about forty allocations per transfer, nearly all small enough for glibc's
 * per-thread cache (tcache, up to 1,032 bytes), and two that are not: the connection it builds
 * for every transfer and throws away when it finds a kept one to reuse (1,288 bytes), and its
 * receive buffer, allocated when the transfer starts and freed when it ends (2 or 16 KiB).
 * glibc serves a request of that size from its bins, after first merging every chunk its fast
 * bins hold; with thousands of transfers in flight that merging and the bin sorting after it
 * were 10-16 % of a worker's CPU at K=20 (perf, bench/RESULTS.md), and grew with the transfers
 * in flight.
 *
 * So curl's allocations go through these functions (curl_global_init_mem()), which keep a few
 * freed chunks of such sizes per thread and hand them out again to requests of the same size:
 * the transfer's allocations then stay out of glibc's bins, as the small ones do through its
 * tcache. Everything else goes to glibc as it is. Chunks are glibc's own, so glibc may free or
 * grow one that was handed out from here; a thread's cached chunks are given back to glibc by
 * upstream__mem_drain(). */

/* Chunks of these usable sizes are kept: above tcache's range, up to a 16 KiB buffer. */
#define MEM_MIN_USABLE 1024
#define MEM_MAX_USABLE (16 * 1024 + 64)
/* A kept chunk serves a request at most this much smaller than its usable size. */
#define MEM_SLACK 64
#define MEM_CLASSES 8
#define MEM_DEPTH 64

struct mem_class {
    size_t usable; /* of every chunk kept here; 0 while the class is unused */
    int n;
    void *chunk[MEM_DEPTH];
};

/* A class whose chunks have all been handed out may be taken over by another size. */
static _Thread_local struct mem_class classes[MEM_CLASSES];
/* Only threads that run an upstream client's loop keep chunks, and they give them back when
 * the client is destroyed: a thread of curl's resolver, say, would take its chunks with it. */
static _Thread_local bool keeping;

/* The class that holds a chunk for a request of size bytes; NULL when none does. */
static struct mem_class *class_for_request(size_t size)
{
    if (size < MEM_MIN_USABLE - MEM_SLACK || size > MEM_MAX_USABLE)
        return NULL;
    for (int i = 0; i < MEM_CLASSES; i++) {
        struct mem_class *c = &classes[i];
        if (c->n > 0 && c->usable >= size && c->usable - size < MEM_SLACK)
            return c;
    }
    return NULL;
}

void *upstream__mem_malloc(size_t size)
{
    struct mem_class *c = class_for_request(size);
    return c != NULL ? c->chunk[--c->n] : malloc(size);
}

void *upstream__mem_calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return NULL;
    struct mem_class *c = class_for_request(total);
    if (c == NULL)
        return calloc(n, size);
    void *p = c->chunk[--c->n];
    memset(p, 0, total);
    return p;
}

void upstream__mem_free(void *p)
{
    if (p == NULL)
        return;
    size_t usable = keeping ? malloc_usable_size(p) : 0;
    if (usable >= MEM_MIN_USABLE && usable <= MEM_MAX_USABLE) {
        struct mem_class *spare = NULL;
        for (int i = 0; i < MEM_CLASSES; i++) {
            struct mem_class *c = &classes[i];
            if (c->usable == usable) {
                spare = c;
                break;
            }
            if (spare == NULL && c->n == 0)
                spare = c;
        }
        if (spare != NULL && spare->n < MEM_DEPTH) {
            spare->usable = usable;
            spare->chunk[spare->n++] = p;
            return;
        }
    }
    free(p);
}

static void *mem_realloc(void *p, size_t size)
{
    return realloc(p, size);
}

static char *mem_strdup(const char *s)
{
    return strdup(s);
}

int upstream_global_init(void)
{
    return curl_global_init_mem(CURL_GLOBAL_DEFAULT, upstream__mem_malloc, upstream__mem_free,
                                mem_realloc, mem_strdup, upstream__mem_calloc) == CURLE_OK
               ? 0
               : -1;
}

void upstream__mem_keep(void)
{
    keeping = true;
}

void upstream__mem_drain(void)
{
    keeping = false;
    for (int i = 0; i < MEM_CLASSES; i++) {
        struct mem_class *c = &classes[i];
        while (c->n > 0)
            free(c->chunk[--c->n]);
        c->usable = 0;
    }
}
