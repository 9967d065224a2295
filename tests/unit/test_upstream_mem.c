/* curl's allocator (upstream_mem.c): a loop thread keeps freed chunks of a few mid-size classes
 * and hands each out again once, to a request of its size, zeroed for calloc; everything else
 * goes to glibc; a thread gives its chunks back when told. Run on a thread of its own, so that
 * under LeakSanitizer a chunk the drain forgot is a leak. */
#include "tap.h"
#include "upstream_int.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static void *run(void *arg)
{
    (void)arg;
    /* Not keeping yet: a free goes to glibc. */
    void *a = upstream__mem_malloc(2049);
    upstream__mem_free(a);

    upstream__mem_keep();
    a = upstream__mem_malloc(2049);
    memset(a, 0xab, 2049);
    upstream__mem_free(a);
    void *b = upstream__mem_malloc(2049);
    ok(b == a, "a freed 2,049-byte chunk serves the next request of that size");
    upstream__mem_free(b);
    unsigned char *z = upstream__mem_calloc(1, 2049);
    ok((void *)z == a && all_zero(z, 2049), "and a calloc of it, zeroed");

    /* Much smaller requests do not take a kept chunk. */
    upstream__mem_free(z);
    void *small = upstream__mem_malloc(1000);
    ok(small != a, "a 1,000-byte request does not take the 2 KiB chunk");
    upstream__mem_free(small);
    void *again = upstream__mem_malloc(2049);
    ok(again == a, "which is still kept for its size");

    /* Each kept chunk is handed out once. */
    enum { N = 70 };
    void *c[N];
    c[0] = again;
    for (int i = 1; i < N; i++)
        c[i] = upstream__mem_malloc(2049);
    for (int i = 0; i < N; i++)
        upstream__mem_free(c[i]);
    void *d[N];
    for (int i = 0; i < N; i++)
        d[i] = upstream__mem_malloc(2049);
    bool distinct = true;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            distinct &= d[i] != d[j];
    ok(distinct, "70 frees and 70 requests of one size: every chunk handed out once");
    for (int i = 0; i < N; i++)
        upstream__mem_free(d[i]);

    /* More sizes than classes: the extra ones go to glibc, and a class whose chunks were all
     * handed out is taken over by the next size freed. */
    enum { SIZES = 10 };
    void *s[SIZES];
    for (int i = 0; i < SIZES; i++)
        s[i] = upstream__mem_malloc(4096 + 512 * (size_t)i);
    for (int i = 0; i < SIZES; i++)
        upstream__mem_free(s[i]);
    int reused = 0;
    for (int i = 0; i < SIZES; i++) {
        void *p = upstream__mem_malloc(4096 + 512 * (size_t)i);
        reused += p == s[i];
        upstream__mem_free(p);
    }
    ok(reused >= 1 && reused <= SIZES, "sizes beyond the classes pass through (%d reused)", reused);

    /* Outside the classes' range nothing is kept, and big chunks stay glibc's. */
    void *big = upstream__mem_malloc(1 << 20);
    upstream__mem_free(big);
    void *tiny = upstream__mem_calloc(3, 7);
    ok(tiny != NULL && all_zero(tiny, 21), "a small calloc is glibc's, zeroed");
    upstream__mem_free(tiny);
    ok(upstream__mem_calloc(SIZE_MAX / 2, 4) == NULL, "an overflowing calloc fails");

    upstream__mem_drain(); /* LeakSanitizer: every kept chunk goes back here */
    return NULL;
}

int main(void)
{
    pthread_t t;
    ok(pthread_create(&t, NULL, run, NULL) == 0, "thread started");
    pthread_join(t, NULL);
    return tap_done();
}
