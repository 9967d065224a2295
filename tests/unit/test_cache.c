/* The response cache (handler/cache.h) on a hand-driven clock: keys, freshness and the stale
 * windows, collapsed fills and their waiters, the LRU bound and the answers too large to store,
 * reloads keeping only known identities. Every answer handed out is released, and the test
 * ends with nothing left allocated (the sanitizer build checks). */
#include "buf.h"
#include "cache.h"
#include "clock.h"
#include "metrics.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t now_us;
static uint64_t fake_now(void *ctx)
{
    (void)ctx;
    return now_us;
}
static const struct clock clk = {fake_now, NULL};

struct waiter {
    struct cache_waiter w;
    int notified;
};

static void on_notify(void *arg)
{
    ((struct waiter *)arg)->notified++;
}

static void waiter_init(struct waiter *x)
{
    memset(x, 0, sizeof *x);
    x->w.notify = on_notify;
    x->w.arg = x;
}

static struct buf key_of(uint64_t ident, const char *path, const char *v)
{
    struct buf b = BUF_INIT;
    cache_key_begin(&b, ident);
    cache_key_part(&b, path, strlen(path));
    if (v != NULL)
        cache_key_part(&b, v, strlen(v));
    return b;
}

static struct cache_answer *make(struct cache *c, int status, bool complete, const char *body)
{
    return cache_answer_create(c, status, complete, strdup(body), strlen(body));
}

/* Looks key up; a MISS is filled at once with `body` (complete unless status != 200). */
static enum cache_result fetch(struct cache *c, struct buf *k, const struct cache_policy *p,
                               int status, const char *body, char *got, size_t gotlen)
{
    struct waiter x;
    struct cache_lookup lk;
    waiter_init(&x);
    if (cache_lookup(c, k->data, k->len, p, &x.w, &lk) < 0)
        return CACHE_NRESULTS;
    struct cache_answer *a = lk.answer;
    if (lk.fill != NULL) {
        struct cache_answer *n = make(c, status, status == 200, body);
        cache_fill_done(c, lk.fill, n);
        cache_answer_unref(n);
        if (lk.result == CACHE_MISS)
            a = x.w.answer;
    }
    snprintf(got, gotlen, "%.*s", a ? (int)a->len : 0, a ? a->body : "");
    if (lk.result == CACHE_STALE)
        cache_answer_unref(x.w.answer);
    cache_answer_unref(a);
    return lk.result;
}

static void test_keys_and_expiry(void)
{
    struct cache *c = cache_create(1 << 20, &clk, NULL, 7);
    struct cache_policy p = {1000, 0, 0};
    struct buf a = key_of(1, "/x", "a"), b = key_of(1, "/x", "b"), a2 = key_of(2, "/x", "a");
    /* "a" + "b" must not read as "ab" + "": parts carry their lengths. */
    struct buf ab = key_of(1, "/x", "ab"), ab2 = key_of(1, "/x", NULL);
    cache_key_part(&ab2, "a", 1);
    cache_key_part(&ab2, "b", 1);
    ok(ab.len != ab2.len || memcmp(ab.data, ab2.data, ab.len) != 0, "parts are delimited");
    char got[64];
    now_us = 1000000;
    ok(fetch(c, &a, &p, 200, "A1", got, sizeof got) == CACHE_MISS, "first lookup misses");
    is_str(got, "A1", "the miss gets the fill's answer");
    ok(fetch(c, &a, &p, 200, "A2", got, sizeof got) == CACHE_HIT, "second hits");
    is_str(got, "A1", "the hit gets the stored answer");
    ok(fetch(c, &b, &p, 200, "B1", got, sizeof got) == CACHE_MISS, "another value misses");
    ok(fetch(c, &a2, &p, 200, "X1", got, sizeof got) == CACHE_MISS, "another identity misses");
    now_us += 999999;
    ok(fetch(c, &a, &p, 200, "A3", got, sizeof got) == CACHE_HIT, "fresh until ttl_ms");
    now_us += 1;
    ok(fetch(c, &a, &p, 200, "A3", got, sizeof got) == CACHE_MISS, "expired at ttl_ms");
    is_str(got, "A3", "and refilled");
    size_t n, bytes;
    cache_usage(c, &n, &bytes);
    ok(n == 3, "three entries held (%zu)", n);
    struct waiter x;
    struct cache_lookup lk;
    waiter_init(&x);
    cache_lookup(c, b.data, b.len, &p, &x.w, &lk); /* expired: a fill for identity 1 runs */
    cache_keep(c, (uint64_t[]){2}, 1);
    cache_usage(c, &n, &bytes);
    ok(n == 1, "a reload keeping identity 2 only keeps its entry (%zu)", n);
    struct cache_answer *late = make(c, 200, true, "late");
    ok(!cache_fill_done(c, lk.fill, late) && x.w.answer == late,
       "a fill under a dropped identity answers its waiters and stores nothing");
    cache_answer_unref(late);
    cache_answer_unref(x.w.answer);
    buf_finish(&a);
    buf_finish(&b);
    buf_finish(&a2);
    buf_finish(&ab);
    buf_finish(&ab2);
    cache_destroy(c);
}

static void test_incomplete_not_stored(void)
{
    struct cache *c = cache_create(1 << 20, &clk, NULL, 7);
    struct cache_policy p = {1000, 0, 0};
    struct buf k = key_of(1, "/x", NULL);
    char got[64];
    now_us = 1000000;
    ok(fetch(c, &k, &p, 502, "bad", got, sizeof got) == CACHE_MISS, "miss");
    is_str(got, "bad", "an incomplete answer is served as it is");
    ok(fetch(c, &k, &p, 200, "good", got, sizeof got) == CACHE_MISS, "and not stored");
    ok(fetch(c, &k, &p, 200, "other", got, sizeof got) == CACHE_HIT, "a complete one is");
    is_str(got, "good", "the complete one");
    buf_finish(&k);
    cache_destroy(c);
}

static void test_stale_windows(void)
{
    struct cache *c = cache_create(1 << 20, &clk, NULL, 7);
    struct cache_policy p = {1000, 2000, 5000};
    struct buf k = key_of(1, "/s", NULL);
    struct waiter x;
    struct cache_lookup lk;
    char got[64];
    now_us = 1000000;
    fetch(c, &k, &p, 200, "v1", got, sizeof got);
    now_us += 1500000; /* 0.5 s stale: within stale_while_revalidate */
    waiter_init(&x);
    ok(cache_lookup(c, k.data, k.len, &p, &x.w, &lk) == 0 && lk.result == CACHE_STALE,
       "stale within stale_while_revalidate_ms");
    ok(lk.answer != NULL && lk.answer->len == 2 && memcmp(lk.answer->body, "v1", 2) == 0,
       "the stale answer at once");
    ok(lk.fill != NULL && x.notified == 0, "with one background fill, nobody waiting on it");
    ok(lk.ttl_s == -1 && lk.age_s == 1, "ttl -1, age 1 (%ld, %ld)", lk.ttl_s, lk.age_s);
    struct cache_fill *bg = lk.fill;
    cache_answer_unref(lk.answer);
    struct waiter y;
    waiter_init(&y);
    ok(cache_lookup(c, k.data, k.len, &p, &y.w, &lk) == 0 && lk.result == CACHE_STALE &&
           lk.fill == NULL,
       "a second stale lookup starts no second fill");
    cache_answer_unref(lk.answer);
    struct cache_answer *v2 = make(c, 200, true, "v2");
    cache_fill_done(c, bg, v2);
    cache_answer_unref(v2);
    ok(fetch(c, &k, &p, 200, "v3", got, sizeof got) == CACHE_HIT, "refreshed: fresh again");
    is_str(got, "v2", "with the background fill's answer");

    /* Past stale_while_revalidate, within stale_if_error: a failed fill serves the old one. */
    now_us += 1000000 + 2500000;
    waiter_init(&x);
    ok(cache_lookup(c, k.data, k.len, &p, &x.w, &lk) == 0 && lk.result == CACHE_MISS &&
           lk.had_stale,
       "past stale_while_revalidate: a miss, with a stale answer held");
    waiter_init(&y);
    struct cache_lookup lk2;
    ok(cache_lookup(c, k.data, k.len, &p, &y.w, &lk2) == 0 && lk2.result == CACHE_COLLAPSED,
       "a concurrent lookup collapses onto the fill");
    struct cache_answer *bad = make(c, 502, false, "bad");
    cache_fill_done(c, lk.fill, bad);
    cache_answer_unref(bad);
    ok(x.notified == 1 && y.notified == 1, "both waiters notified once");
    ok(x.w.stale && x.w.answer != NULL && memcmp(x.w.answer->body, "v2", 2) == 0 &&
           x.w.fwd_status == 502,
       "stale_if_error: the last complete answer, and the new status");
    ok(y.w.stale && y.w.answer == x.w.answer, "the same for the collapsed waiter");
    cache_answer_unref(x.w.answer);
    cache_answer_unref(y.w.answer);

    /* Past stale_if_error: the new answer as it is. */
    now_us += 3000000;
    waiter_init(&x);
    ok(cache_lookup(c, k.data, k.len, &p, &x.w, &lk) == 0 && lk.result == CACHE_MISS &&
           !lk.had_stale,
       "past every window the old answer is dropped");
    bad = make(c, 502, false, "bad");
    cache_fill_done(c, lk.fill, bad);
    cache_answer_unref(bad);
    ok(!x.w.stale && x.w.answer != NULL && x.w.answer->status == 502, "the new answer as it is");
    cache_answer_unref(x.w.answer);
    buf_finish(&k);
    cache_destroy(c);
}

static void test_waiters(void)
{
    struct cache *c = cache_create(1 << 20, &clk, NULL, 7);
    struct cache_policy p = {1000, 0, 0};
    struct buf k = key_of(1, "/w", NULL);
    struct waiter w[5];
    struct cache_lookup lk[5];
    now_us = 1000000;
    for (int i = 0; i < 5; i++) {
        waiter_init(&w[i]);
        cache_lookup(c, k.data, k.len, &p, &w[i].w, &lk[i]);
    }
    ok(lk[0].result == CACHE_MISS && lk[0].fill != NULL, "the first misses and fills");
    int collapsed = 0;
    for (int i = 1; i < 5; i++)
        collapsed += lk[i].result == CACHE_COLLAPSED && lk[i].fill == NULL;
    ok(collapsed == 4, "the others collapse onto it");
    cache_waiter_cancel(c, &w[2].w);
    cache_waiter_cancel(c, &w[0].w); /* the filler's own client left; the fill goes on */
    struct cache_answer *a = make(c, 200, true, "ans");
    cache_fill_done(c, lk[0].fill, a);
    ok(w[0].notified == 0 && w[2].notified == 0, "cancelled waiters are not notified");
    ok(w[1].notified == 1 && w[3].notified == 1 && w[4].notified == 1, "the others are, once");
    ok(w[1].w.answer == a && w[1].w.stored, "with the new answer, stored");
    for (int i = 1; i < 5; i++)
        if (i != 2)
            cache_answer_unref(w[i].w.answer);
    cache_waiter_cancel(c, &w[1].w); /* after the notification: harmless */
    ok(atomic_load(&a->refs) == 2, "only the caller and the cache hold the answer");
    cache_answer_unref(a);

    /* Abandoned at shutdown: waiters are told, with no answer. */
    struct buf k2 = key_of(1, "/w2", NULL);
    waiter_init(&w[0]);
    cache_lookup(c, k2.data, k2.len, &p, &w[0].w, &lk[0]);
    cache_fill_abandon(c, lk[0].fill);
    ok(w[0].notified == 1 && w[0].w.answer == NULL, "an abandoned fill tells its waiters");
    size_t n, bytes;
    cache_usage(c, &n, &bytes);
    ok(n == 1, "and leaves nothing behind (%zu entries)", n);
    buf_finish(&k);
    buf_finish(&k2);
    cache_destroy(c);
}

static void test_bound(void)
{
    struct metrics_cache m;
    memset(&m, 0, sizeof m);
    size_t bound = 64 * 1024;
    struct cache *c = cache_create(bound, &clk, &m, 7);
    struct cache_policy p = {60000, 0, 0};
    char body[1000], got[8];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    now_us = 1000000;
    for (int i = 0; i < 10000; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        struct buf k = key_of(1, "/b", v);
        fetch(c, &k, &p, 200, body, got, sizeof got);
        buf_finish(&k);
        size_t n, bytes;
        cache_usage(c, &n, &bytes);
        if (bytes > bound) {
            ok(0, "over the bound after %d keys: %zu", i, bytes);
            break;
        }
    }
    size_t n, bytes;
    cache_usage(c, &n, &bytes);
    ok(bytes <= bound && n > 10, "10,000 keys stay under the bound (%zu entries, %zu bytes)", n,
       bytes);
    ok(atomic_load(&m.evictions) == 10000 - n, "the rest were evicted (%llu)",
       (unsigned long long)atomic_load(&m.evictions));
    ok(atomic_load(&m.bytes) == (int64_t)bytes && atomic_load(&m.entries) == (int64_t)n,
       "the gauges say so");

    /* Least recently used goes first: touch the oldest, add one, it survives. */
    struct buf oldest = key_of(1, "/b", "9999");
    for (int i = 10000 - (int)n; i < 10000; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        struct buf k = key_of(1, "/b", v);
        if (i == 10000 - (int)n) {
            buf_finish(&oldest);
            oldest = k;
        } else
            buf_finish(&k);
    }
    ok(fetch(c, &oldest, &p, 200, body, got, sizeof got) == CACHE_HIT, "the oldest is held");
    struct buf fresh = key_of(1, "/b", "new");
    fetch(c, &fresh, &p, 200, body, got, sizeof got);
    ok(fetch(c, &oldest, &p, 200, body, got, sizeof got) == CACHE_HIT,
       "touched, it outlives a newer one");

    /* Over an eighth of the bound: served, not stored. */
    char *big = malloc(bound / 8 + 1);
    memset(big, 'y', bound / 8);
    big[bound / 8] = '\0';
    struct buf kb = key_of(1, "/big", NULL);
    char got2[4];
    ok(fetch(c, &kb, &p, 200, big, got2, sizeof got2) == CACHE_MISS &&
           fetch(c, &kb, &p, 200, big, got2, sizeof got2) == CACHE_MISS,
       "an answer over an eighth of the bound is never stored");
    cache_set_max_bytes(c, 0);
    cache_usage(c, &n, &bytes);
    ok(n == 0 && bytes == 0, "a bound of 0 empties it");
    free(big);
    buf_finish(&kb);
    buf_finish(&fresh);
    buf_finish(&oldest);
    cache_destroy(c);
    ok(atomic_load(&m.bytes) == 0 && atomic_load(&m.entries) == 0, "destroyed: gauges at 0");
}

static void test_refresh_and_warm(void)
{
    struct cache *c = cache_create(1 << 20, &clk, NULL, 7);
    struct cache_policy p = {1000, 0, 0};
    struct buf k = key_of(5, "/r", NULL);
    struct cache_fill *f, *g;
    now_us = 1000000;
    ok(cache_refresh(c, k.data, k.len, &p, &f) == 0 && f != NULL, "a refresh of a cold key fills");
    struct waiter x;
    struct cache_lookup lk;
    waiter_init(&x);
    ok(cache_lookup(c, k.data, k.len, &p, &x.w, &lk) == 0 && lk.result == CACHE_COLLAPSED,
       "a request meanwhile waits for it");
    ok(cache_refresh(c, k.data, k.len, &p, &g) == 0 && g == NULL, "never two at once");
    struct cache_answer *a = make(c, 200, true, "r1");
    ok(cache_fill_done(c, f, a), "stored");
    cache_answer_unref(a);
    ok(x.notified == 1 && x.w.answer != NULL, "the waiter got it");
    cache_answer_unref(x.w.answer);
    ok(cache_refresh(c, k.data, k.len, &p, &f) == 0 && f != NULL, "a held key refreshes too");
    a = make(c, 502, false, "bad");
    ok(!cache_fill_done(c, f, a), "an incomplete refresh is not stored");
    cache_answer_unref(a);
    char got[8];
    ok(fetch(c, &k, &p, 200, "x", got, sizeof got) == CACHE_HIT, "the old answer stays");
    is_str(got, "r1", "r1");

    ok(!cache_is_warm(c, 5), "cold at first");
    ok(cache_mark_warm(c, 5) == 0 && cache_mark_warm(c, 5) == 0 && cache_is_warm(c, 5),
       "warm once marked (twice is harmless)");
    for (uint64_t id = 100; id < 120; id++)
        cache_mark_warm(c, id);
    cache_keep(c, (uint64_t[]){5, 110}, 2);
    ok(cache_is_warm(c, 5) && cache_is_warm(c, 110) && !cache_is_warm(c, 100),
       "a reload forgets the identities it drops");
    buf_finish(&k);
    cache_destroy(c);
}

static void test_etag(void)
{
    const char *e = "\"0123456789abcdef\"";
    ok(cache_etag_matches("\"0123456789abcdef\"", e), "exact");
    ok(cache_etag_matches("\"x\", W/\"0123456789abcdef\"", e), "in a list, weak compare");
    ok(cache_etag_matches("*", e), "*");
    ok(!cache_etag_matches("\"0123456789abcdee\"", e), "another tag");
    ok(!cache_etag_matches("", e), "empty");
    ok(!cache_etag_matches("\"0123456789abcdef", e), "unterminated");
}

int main(void)
{
    test_keys_and_expiry();
    test_incomplete_not_stored();
    test_stale_windows();
    test_waiters();
    test_bound();
    test_refresh_and_warm();
    test_etag();
    return tap_done();
}
