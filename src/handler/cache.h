/* The response cache: process-wide, shared by every worker. A hash map of keys (an endpoint's
 * identity and whatever of a request selects its answer) to immutable, refcounted answers, kept
 * in least-recently-used order under a byte bound, and beside each key at most one fill: the
 * fan-out one worker runs for it while the key is missing or expired, which every other request
 * for the key, on any worker, waits for (collapsed forwarding).
 *
 * One mutex guards the map, the LRU list and the fills' waiter lists. It is held only for map
 * operations and for waking waiters (the notify callback, which must only signal a loop), never
 * across I/O. Answers are read without it: once published an answer never changes, and a
 * reference keeps it alive however the map changes.
 *
 * No I/O, no libevent: the caller runs the fill's fan-out and wakes its waiters' loops. */
#ifndef GATHERD_CACHE_H
#define GATHERD_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache;
struct clock;
struct metrics_cache;

/* An answer as the cache holds it. Immutable once created; freed with its last reference. */
struct cache_answer {
    int status;
    bool complete;      /* 200 with no call failed: the only kind stored */
    uint64_t stored_us; /* when it was made, on the cache's clock */
    char etag[20];      /* strong, from the body: "0123456789abcdef" with its quotes */
    size_t len;
    char *body;
    atomic_int refs; /* private */
};

/* Takes over body (malloc'd; freed with the answer, also when this fails). NULL when out of
 * memory. One reference. */
struct cache_answer *cache_answer_create(struct cache *c, int status, bool complete, char *body,
                                         size_t len);
struct cache_answer *cache_answer_ref(struct cache_answer *a);
/* Accepts NULL. Safe from any thread. */
void cache_answer_unref(struct cache_answer *a);

/* How long an answer serves, from the endpoint's "cache" object. */
struct cache_policy {
    long ttl_ms; /* fresh for this long after it was stored */
    long swr_ms; /* then served stale while one background fill refreshes it */
    long sie_ms; /* then, or meanwhile, served when a fill is not complete */
};

struct cache_fill;

/* A request waiting for a fill. The waiter's owner allocates it and must keep it until it is
 * notified or cancelled. */
struct cache_waiter {
    /* Set by the owner. notify runs once, from the thread that completes the fill and with the
     * cache's lock held: it must do no more than wake the waiter's loop (event_active()). */
    void (*notify)(void *arg);
    void *arg;
    /* Set before notify: the answer to send (a reference the waiter owns; NULL when the fill
     * was abandoned at shutdown), whether it is the fill's new answer and was stored, or the
     * last complete one served because the new one was not complete (stale-if-error). */
    struct cache_answer *answer;
    bool stored;
    bool stale;
    int fwd_status; /* the new answer's status */
    /* Private. */
    struct cache_waiter *prev, *next;
    struct cache_fill *fill;
};

enum cache_result {
    CACHE_HIT,       /* fresh: answer it */
    CACHE_STALE,     /* stale but within stale_while_revalidate: answer it now */
    CACHE_MISS,      /* missing or expired: the caller runs the fill, and waits as waiter */
    CACHE_COLLAPSED, /* another request's fill is running: the caller waits as waiter */
    CACHE_NRESULTS,
};

struct cache_lookup {
    enum cache_result result;
    struct cache_answer *answer; /* HIT, STALE: a reference the caller owns */
    struct cache_fill *fill;     /* non-NULL: the caller must run it, then cache_fill_done() */
    bool had_stale;              /* MISS, COLLAPSED: an expired answer was held for the key */
    long age_s, ttl_s;           /* HIT, STALE: Age, and freshness left (negative when stale) */
};

/* `max_bytes` 0 stores nothing. `clk` NULL: the monotonic clock. `m` (may be NULL) receives the
 * bytes and entries held and the evictions. `seed` keys the hash against chosen collisions.
 * NULL when out of memory. */
struct cache *cache_create(size_t max_bytes, const struct clock *clk, struct metrics_cache *m,
                           uint64_t seed);
/* Every fill must be done or abandoned, every answer handed out may still be held. Accepts
 * NULL. */
void cache_destroy(struct cache *c);

/* A new bound (at reload); evicts down to it at once. */
void cache_set_max_bytes(struct cache *c, size_t max_bytes);
size_t cache_max_bytes(const struct cache *c);

/* Drops every stored answer whose key does not begin with one of the n identities (an
 * endpoint's definition, as cache_key_begin() writes it): at reload, for endpoints that changed
 * or went. Running fills are left to finish, for their waiters: what they bring for a dropped
 * identity is not stored. */
void cache_keep(struct cache *c, const uint64_t *idents, size_t n);

/* Looks `key` up as of now under `p`. For MISS and COLLAPSED, `w` is registered and will be
 * notified; for HIT and STALE it is not. STALE may come with a fill for the caller to run in
 * the background (nobody waits for it). 0, or -ENOMEM (nothing registered). */
int cache_lookup(struct cache *c, const char *key, size_t klen, const struct cache_policy *p,
                 struct cache_waiter *w, struct cache_lookup *out);

/* A background refresh of `key`: *out is a new fill (nobody waits for it) for the caller to
 * run, or NULL when one is already running for the key. 0 or -ENOMEM. */
int cache_refresh(struct cache *c, const char *key, size_t klen, const struct cache_policy *p,
                  struct cache_fill **out);

/* The fill's fan-out ended with `a` (borrowed). A complete answer no larger than an eighth of
 * the bound is stored (and evicts others to make room); every waiter is notified with the new
 * answer, or with the last complete one while within stale_if_error when the new one is not
 * complete. The fill is freed. Whether a was stored. */
bool cache_fill_done(struct cache *c, struct cache_fill *f, struct cache_answer *a);

/* The fill will not end (shutdown): its waiters are notified with no answer; freed. */
void cache_fill_abandon(struct cache *c, struct cache_fill *f);

/* The waiter's request ended before its notification: it is unregistered, and no notify
 * follows. Harmless after notify; w->answer is then still the caller's to drop. */
void cache_waiter_cancel(struct cache *c, struct cache_waiter *w);

/* Readiness: an endpoint identity whose refresher has finished its first fan-out. Forgotten
 * by cache_keep() when the identity goes. */
int cache_mark_warm(struct cache *c, uint64_t ident);
bool cache_is_warm(struct cache *c, uint64_t ident);

/* Entries and bytes held now. */
void cache_usage(struct cache *c, size_t *entries, size_t *bytes);

/* Key building, so that distinct requests never share a key: the identity, then each part
 * with its length. */
struct buf;
int cache_key_begin(struct buf *b, uint64_t ident);
int cache_key_part(struct buf *b, const char *s, size_t n);

/* Whether an If-None-Match header value names etag (weak comparison, as RFC 9110 asks). */
bool cache_etag_matches(const char *if_none_match, const char *etag);

#endif
