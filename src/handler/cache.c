#include "cache.h"

#include "buf.h"
#include "clock.h"
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One key: its stored answer (in the LRU list while it has one) and its running fill. A slot
 * with neither is freed. */
struct slot {
    struct slot *hnext; /* in its bucket */
    struct slot *lru_prev, *lru_next;
    uint64_t hash;
    struct cache_answer *answer; /* NULL: none stored */
    struct cache_policy policy;  /* the answer's, as of its storing */
    size_t charge;               /* bytes counted against the bound for the answer */
    struct cache_fill *fill;     /* NULL: none running */
    size_t klen;
    char key[];
};

struct cache_fill {
    struct slot *slot;
    struct cache_policy policy;
    struct cache_waiter *waiters;
};

struct cache {
    pthread_mutex_t mu;
    const struct clock *clock;
    struct metrics_cache *m;
    uint64_t seed;
    size_t max_bytes, bytes, entries;
    struct slot **buckets; /* a power of two */
    size_t nbuckets, nslots;
    struct slot *lru_head, *lru_tail; /* head: most recently used */
    uint64_t *warm;                   /* identities whose refresher has run once */
    size_t nwarm, warm_cap;
    uint64_t *kept; /* the identities cache_keep() last kept, or NULL: any */
    size_t nkept;
};

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Keys are chosen by clients: the seed keeps them from aiming at one bucket, and the final mix
 * spreads FNV's weak low bits over the mask. */
static uint64_t key_hash(const struct cache *c, const char *key, size_t klen)
{
    uint64_t h = hash_bytes(14695981039346656037ull ^ c->seed, key, klen);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void publish(struct cache *c)
{
    if (c->m == NULL)
        return;
    atomic_store_explicit(&c->m->bytes, (int_fast64_t)c->bytes, memory_order_relaxed);
    atomic_store_explicit(&c->m->entries, (int_fast64_t)c->entries, memory_order_relaxed);
}

struct cache_answer *cache_answer_create(struct cache *c, int status, bool complete, char *body,
                                         size_t len)
{
    struct cache_answer *a = calloc(1, sizeof *a);
    if (a == NULL) {
        free(body);
        return NULL;
    }
    a->status = status;
    a->complete = complete;
    a->stored_us = clock_now(c->clock);
    snprintf(a->etag, sizeof a->etag, "\"%016llx\"",
             (unsigned long long)hash_bytes(14695981039346656037ull, body, len));
    a->body = body;
    a->len = len;
    atomic_init(&a->refs, 1);
    return a;
}

struct cache_answer *cache_answer_ref(struct cache_answer *a)
{
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

void cache_answer_unref(struct cache_answer *a)
{
    if (a == NULL || atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(a->body);
    free(a);
}

struct cache *cache_create(size_t max_bytes, const struct clock *clk, struct metrics_cache *m,
                           uint64_t seed)
{
    struct cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->nbuckets = 64;
    if ((c->buckets = calloc(c->nbuckets, sizeof *c->buckets)) == NULL) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->clock = clk;
    c->m = m;
    c->seed = seed;
    c->max_bytes = max_bytes;
    return c;
}

static void unlink_lru(struct cache *c, struct slot *s)
{
    if (s->lru_prev != NULL)
        s->lru_prev->lru_next = s->lru_next;
    else
        c->lru_head = s->lru_next;
    if (s->lru_next != NULL)
        s->lru_next->lru_prev = s->lru_prev;
    else
        c->lru_tail = s->lru_prev;
    s->lru_prev = s->lru_next = NULL;
}

static void push_lru(struct cache *c, struct slot *s)
{
    s->lru_prev = NULL;
    s->lru_next = c->lru_head;
    if (c->lru_head != NULL)
        c->lru_head->lru_prev = s;
    else
        c->lru_tail = s;
    c->lru_head = s;
}

/* Frees the slot when nothing is left in it. */
static void maybe_free_slot(struct cache *c, struct slot *s)
{
    if (s->answer != NULL || s->fill != NULL)
        return;
    struct slot **pp = &c->buckets[s->hash & (c->nbuckets - 1)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    c->nslots--;
    free(s);
}

/* Drops the slot's stored answer (its holders keep their references). */
static void drop_answer(struct cache *c, struct slot *s)
{
    if (s->answer == NULL)
        return;
    unlink_lru(c, s);
    cache_answer_unref(s->answer);
    s->answer = NULL;
    c->bytes -= s->charge;
    c->entries--;
    s->charge = 0;
}

static void evict_to(struct cache *c, size_t bound)
{
    while (c->bytes > bound && c->lru_tail != NULL) {
        struct slot *s = c->lru_tail;
        drop_answer(c, s);
        maybe_free_slot(c, s);
        if (c->m != NULL)
            metrics_add(&c->m->evictions, 1);
    }
}

void cache_destroy(struct cache *c)
{
    if (c == NULL)
        return;
    for (size_t b = 0; b < c->nbuckets; b++)
        for (struct slot *s = c->buckets[b], *next; s != NULL; s = next) {
            next = s->hnext;
            cache_answer_unref(s->answer);
            free(s);
        }
    c->bytes = c->entries = 0;
    publish(c);
    pthread_mutex_destroy(&c->mu);
    free(c->warm);
    free(c->kept);
    free(c->buckets);
    free(c);
}

void cache_set_max_bytes(struct cache *c, size_t max_bytes)
{
    pthread_mutex_lock(&c->mu);
    c->max_bytes = max_bytes;
    evict_to(c, max_bytes);
    publish(c);
    pthread_mutex_unlock(&c->mu);
}

size_t cache_max_bytes(const struct cache *c)
{
    pthread_mutex_lock((pthread_mutex_t *)&c->mu);
    size_t n = c->max_bytes;
    pthread_mutex_unlock((pthread_mutex_t *)&c->mu);
    return n;
}

static bool known(const uint64_t *idents, size_t n, uint64_t id)
{
    size_t i = 0;
    while (i < n && idents[i] != id)
        i++;
    return i < n;
}

static uint64_t key_ident(const struct slot *s)
{
    uint64_t id = 0;
    if (s->klen >= sizeof id)
        memcpy(&id, s->key, sizeof id);
    return id;
}

void cache_keep(struct cache *c, const uint64_t *idents, size_t n)
{
    pthread_mutex_lock(&c->mu);
    for (struct slot *s = c->lru_head, *next; s != NULL; s = next) {
        next = s->lru_next;
        if (!known(idents, n, key_ident(s))) {
            drop_answer(c, s);
            maybe_free_slot(c, s);
        }
    }
    size_t kept = 0;
    for (size_t i = 0; i < c->nwarm; i++)
        if (known(idents, n, c->warm[i]))
            c->warm[kept++] = c->warm[i];
    c->nwarm = kept;
    /* Fills still running under a dropped identity must not store what nobody can look up
     * any more. Out of memory: they may, and their answers age out by LRU. */
    uint64_t *copy = malloc((n + 1) * sizeof *copy);
    if (copy != NULL) {
        memcpy(copy, idents, n * sizeof *copy);
        free(c->kept);
        c->kept = copy;
        c->nkept = n;
    }
    publish(c);
    pthread_mutex_unlock(&c->mu);
}

static int grow(struct cache *c)
{
    size_t n = c->nbuckets * 2;
    struct slot **nb = calloc(n, sizeof *nb);
    if (nb == NULL)
        return -ENOMEM;
    for (size_t b = 0; b < c->nbuckets; b++)
        for (struct slot *s = c->buckets[b], *next; s != NULL; s = next) {
            next = s->hnext;
            s->hnext = nb[s->hash & (n - 1)];
            nb[s->hash & (n - 1)] = s;
        }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
    return 0;
}

static struct slot *find(struct cache *c, uint64_t h, const char *key, size_t klen)
{
    for (struct slot *s = c->buckets[h & (c->nbuckets - 1)]; s != NULL; s = s->hnext)
        if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    return NULL;
}

/* A fill for key, in slot s (NULL: a new slot). NULL when out of memory. */
static struct cache_fill *new_fill(struct cache *c, struct slot *s, uint64_t h, const char *key,
                                   size_t klen, const struct cache_policy *p)
{
    if (s == NULL) {
        if (c->nslots >= c->nbuckets && grow(c) < 0)
            return NULL;
        if ((s = calloc(1, sizeof *s + klen)) == NULL)
            return NULL;
        s->hash = h;
        s->klen = klen;
        memcpy(s->key, key, klen);
        s->hnext = c->buckets[h & (c->nbuckets - 1)];
        c->buckets[h & (c->nbuckets - 1)] = s;
        c->nslots++;
    }
    struct cache_fill *f = calloc(1, sizeof *f);
    if (f == NULL) {
        maybe_free_slot(c, s);
        return NULL;
    }
    f->slot = s;
    f->policy = *p;
    s->fill = f;
    return f;
}

static void add_waiter(struct cache_fill *f, struct cache_waiter *w)
{
    w->fill = f;
    w->prev = NULL;
    w->next = f->waiters;
    if (f->waiters != NULL)
        f->waiters->prev = w;
    f->waiters = w;
    w->answer = NULL;
    w->stored = w->stale = false;
}

static long ms_to_s_floor(int64_t us)
{
    return us >= 0 ? (long)(us / 1000000) : -(long)((-us + 999999) / 1000000);
}

int cache_lookup(struct cache *c, const char *key, size_t klen, const struct cache_policy *p,
                 struct cache_waiter *w, struct cache_lookup *out)
{
    uint64_t h = key_hash(c, key, klen);
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    uint64_t now = clock_now(c->clock);
    struct slot *s = find(c, h, key, klen);
    if (s != NULL && s->answer != NULL) {
        const struct cache_policy *sp = &s->policy;
        int64_t age = (int64_t)(now - s->answer->stored_us);
        int64_t left = (int64_t)sp->ttl_ms * 1000 - age;
        long keep_ms = sp->swr_ms > sp->sie_ms ? sp->swr_ms : sp->sie_ms;
        if (left > 0 || -left < (int64_t)sp->swr_ms * 1000) {
            out->result = left > 0 ? CACHE_HIT : CACHE_STALE;
            out->answer = cache_answer_ref(s->answer);
            out->age_s = ms_to_s_floor(age);
            out->ttl_s = ms_to_s_floor(left);
            unlink_lru(c, s);
            push_lru(c, s);
            /* Out of memory: served stale all the same, refreshed by a later request. */
            if (out->result == CACHE_STALE && s->fill == NULL)
                out->fill = new_fill(c, s, h, key, klen, p);
            pthread_mutex_unlock(&c->mu);
            return 0;
        }
        if (-left >= (int64_t)keep_ms * 1000) { /* of no use any more */
            drop_answer(c, s);
            publish(c);
        } else
            out->had_stale = true;
    }
    if (s != NULL && s->fill != NULL) {
        add_waiter(s->fill, w);
        out->result = CACHE_COLLAPSED;
        out->had_stale = s->answer != NULL;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    struct cache_fill *f = new_fill(c, s, h, key, klen, p);
    if (f != NULL) {
        add_waiter(f, w);
        out->result = CACHE_MISS;
        out->fill = f;
    }
    pthread_mutex_unlock(&c->mu);
    return f != NULL ? 0 : -ENOMEM;
}

int cache_refresh(struct cache *c, const char *key, size_t klen, const struct cache_policy *p,
                  struct cache_fill **out)
{
    uint64_t h = key_hash(c, key, klen);
    pthread_mutex_lock(&c->mu);
    struct slot *s = find(c, h, key, klen);
    *out = NULL;
    int rc = 0;
    if (s == NULL || s->fill == NULL)
        rc = (*out = new_fill(c, s, h, key, klen, p)) != NULL ? 0 : -ENOMEM;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Hands every waiter of f its answer (a reference each; a may be NULL) and wakes it. */
static void notify_all(struct cache_fill *f, struct cache_answer *a, bool stored, bool stale,
                       int fwd_status)
{
    for (struct cache_waiter *w = f->waiters, *next; w != NULL; w = next) {
        next = w->next;
        w->answer = a != NULL ? cache_answer_ref(a) : NULL;
        w->stored = stored;
        w->stale = stale;
        w->fwd_status = fwd_status;
        w->fill = NULL;
        w->prev = w->next = NULL;
        w->notify(w->arg);
    }
    f->waiters = NULL;
}

bool cache_fill_done(struct cache *c, struct cache_fill *f, struct cache_answer *a)
{
    pthread_mutex_lock(&c->mu);
    struct slot *s = f->slot;
    uint64_t now = clock_now(c->clock);
    size_t charge = sizeof *s + s->klen + sizeof *a + a->len;
    bool stored = false;
    struct cache_answer *send = a;
    bool current = c->kept == NULL || known(c->kept, c->nkept, key_ident(s));
    if (a->complete && current && c->max_bytes > 0 && charge <= c->max_bytes / 8) {
        drop_answer(c, s);
        s->answer = cache_answer_ref(a);
        s->policy = f->policy;
        s->charge = charge;
        c->bytes += charge;
        c->entries++;
        push_lru(c, s);
        stored = true;
        /* The new answer is at the head: the bound holds, so it is never the one evicted. */
        evict_to(c, c->max_bytes);
        publish(c);
    } else if (!a->complete && s->answer != NULL) {
        int64_t over = (int64_t)(now - s->answer->stored_us) - (int64_t)s->policy.ttl_ms * 1000;
        if (over < (int64_t)s->policy.sie_ms * 1000)
            send = s->answer;
    }
    notify_all(f, send, stored, send != a, a->status);
    s->fill = NULL;
    free(f);
    maybe_free_slot(c, s);
    pthread_mutex_unlock(&c->mu);
    return stored;
}

void cache_fill_abandon(struct cache *c, struct cache_fill *f)
{
    pthread_mutex_lock(&c->mu);
    struct slot *s = f->slot;
    notify_all(f, NULL, false, false, 0);
    s->fill = NULL;
    free(f);
    maybe_free_slot(c, s);
    pthread_mutex_unlock(&c->mu);
}

void cache_waiter_cancel(struct cache *c, struct cache_waiter *w)
{
    pthread_mutex_lock(&c->mu);
    struct cache_fill *f = w->fill;
    if (f != NULL) {
        if (w->prev != NULL)
            w->prev->next = w->next;
        else
            f->waiters = w->next;
        if (w->next != NULL)
            w->next->prev = w->prev;
        w->prev = w->next = NULL;
        w->fill = NULL;
    }
    pthread_mutex_unlock(&c->mu);
}

int cache_mark_warm(struct cache *c, uint64_t ident)
{
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (!known(c->warm, c->nwarm, ident)) {
        if (c->nwarm == c->warm_cap) {
            size_t cap = c->warm_cap ? c->warm_cap * 2 : 8;
            uint64_t *w = realloc(c->warm, cap * sizeof *w);
            if (w != NULL) {
                c->warm = w;
                c->warm_cap = cap;
            }
        }
        if (c->nwarm < c->warm_cap)
            c->warm[c->nwarm++] = ident;
        else
            rc = -ENOMEM;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

bool cache_is_warm(struct cache *c, uint64_t ident)
{
    pthread_mutex_lock(&c->mu);
    bool warm = known(c->warm, c->nwarm, ident);
    pthread_mutex_unlock(&c->mu);
    return warm;
}

void cache_usage(struct cache *c, size_t *entries, size_t *bytes)
{
    pthread_mutex_lock(&c->mu);
    *entries = c->entries;
    *bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

int cache_key_begin(struct buf *b, uint64_t ident)
{
    return buf_append(b, &ident, sizeof ident);
}

int cache_key_part(struct buf *b, const char *s, size_t n)
{
    uint32_t len = (uint32_t)n;
    if (buf_append(b, &len, sizeof len) < 0 || buf_append(b, s, n) < 0)
        return -ENOMEM;
    return 0;
}

bool cache_etag_matches(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;
    while (p != NULL && *p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        size_t n = strcspn(p, ",");
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == elen && memcmp(p, etag, n) == 0)
            return true;
        p = strchr(p, ',');
    }
    return false;
}
