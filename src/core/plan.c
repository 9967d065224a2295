#include "plan.h"

#include "agg.h"
#include "buf.h"
#include "config.h"
#include "jsonptr.h"
#include "pct.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Distinct items are found through a small open-addressing set of their offsets in the store,
 * so a request of 1,000 items costs 1,000 lookups, not half a million comparisons. */
struct item_set {
    size_t *slot; /* offset + 1; 0 is empty */
    size_t cap;   /* a power of two, at least twice max */
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* Adds piece[0..n) to the store unless it is there; 1 added, 0 duplicate, -ENOMEM. */
static int add_item(struct buf *store, struct item_set *set, const char *piece, size_t n)
{
    size_t i = (size_t)fnv1a(piece, n) & (set->cap - 1);
    for (; set->slot[i] != 0; i = (i + 1) & (set->cap - 1)) {
        const char *have = store->data + set->slot[i] - 1;
        if (strlen(have) == n && memcmp(have, piece, n) == 0)
            return 0;
    }
    size_t at = store->len;
    if (buf_append(store, piece, n) < 0 || buf_appendc(store, '\0') < 0)
        return -ENOMEM;
    set->slot[i] = at + 1;
    return 1;
}

int plan_items(const char *query, const char *param, size_t max, char **out, size_t *count,
               char *err, size_t errlen)
{
    struct buf store = BUF_INIT;
    struct item_set set = {NULL, 16};
    while (set.cap < max * 2)
        set.cap *= 2;
    char *value = NULL;
    size_t n = 0, plen = strlen(param);
    int rc = 0;
    if ((set.slot = calloc(set.cap, sizeof *set.slot)) == NULL)
        return -ENOMEM;
    for (const char *p = query ? query : ""; rc == 0 && *p != '\0';) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        char key[128];
        size_t kdec = 0;
        /* A key longer than any parameter name cannot be it. */
        if (klen < sizeof key && pct_decode(p, klen, key, &kdec) == 0 && kdec == plen &&
            memcmp(key, param, plen) == 0 && eq != NULL) {
            size_t vlen = len - klen - 1, dlen;
            free(value);
            if ((value = malloc(vlen + 1)) == NULL) {
                rc = -ENOMEM;
                break;
            }
            if (pct_decode(eq + 1, vlen, value, &dlen) < 0) {
                snprintf(err, errlen, "query parameter %s is not valid percent-encoding", param);
                rc = -EINVAL;
                break;
            }
            for (size_t s = 0; s <= dlen && rc == 0;) {
                size_t e = s;
                while (e < dlen && value[e] != ',')
                    e++;
                if (e > s) {
                    int added = add_item(&store, &set, value + s, e - s);
                    if (added < 0)
                        rc = -ENOMEM;
                    else if ((n += (size_t)added) > max) {
                        snprintf(err, errlen, "query parameter %s has more than %zu distinct items",
                                 param, max);
                        rc = -EINVAL;
                    }
                }
                s = e + 1;
            }
        }
        p += len;
        if (*p == '&')
            p++;
    }
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "query parameter %s names no items (give %s=A,B or %s=A&%s=B)", param,
                 param, param, param);
        rc = -EINVAL;
    }
    free(value);
    free(set.slot);
    if (rc < 0) {
        buf_finish(&store);
        return rc;
    }
    *out = buf_steal(&store, NULL);
    *count = n;
    return *out != NULL ? 0 : -ENOMEM;
}

/* The value of a {backend:/pointer} reference in a's answers, appended percent-encoded.
 * -EINVAL with the reason in err when the pointer finds no string or number. */
static int append_dep(struct buf *b, const struct config_ref *ref, const struct plan *p,
                      const struct agg *a, char *err, size_t errlen)
{
    const char *body, *name = plan_call_name(&p->calls[ref->dep]);
    size_t n, vs = 0, ve = 0;
    if (agg_body_of(a, ref->dep, &body, &n) < 0) {
        snprintf(err, errlen, "dependency \"%.200s\" has no answer", name);
        return -EINVAL;
    }
    enum jsonptr_type t = jsonptr_find(body, n, ref->pointer, &vs, &ve);
    if (t == JSONPTR_STRING) {
        struct buf s = BUF_INIT;
        int rc = jsonptr_unescape(&s, body + vs, ve - vs);
        if (rc == 0)
            rc = pct_encode(b, s.data ? s.data : "", s.len);
        buf_finish(&s);
        return rc;
    }
    if (t == JSONPTR_NUMBER)
        return pct_encode(b, body + vs, ve - vs);
    snprintf(err, errlen, "{%.200s:%.200s} found %s in that answer; it needs a string or a number",
             name, ref->pointer, jsonptr_type_name(t));
    return -EINVAL;
}

/* Appends be->url with each placeholder replaced by its value, percent-encoded; dependency
 * references need the plan and the agg (NULL for calls that have none). */
static int expand_url(struct buf *b, const struct config_backend *be, const char *item,
                      const char *const *params, const struct plan *p, const struct agg *a,
                      char *err, size_t errlen)
{
    size_t at = 0;
    int rc = 0;
    for (size_t r = 0; rc == 0 && r < be->nrefs; r++) {
        const struct config_ref *ref = &be->refs[r];
        rc = buf_append(b, be->url + at, ref->start - at);
        if (rc == 0 && ref->param == CONFIG_REF_DEP) {
            rc = append_dep(b, ref, p, a, err, errlen);
        } else if (rc == 0) {
            const char *v = ref->param == CONFIG_REF_ITEM ? item : params[ref->param];
            rc = pct_encode(b, v, strlen(v));
        }
        at = ref->end;
    }
    if (rc == 0)
        rc = buf_appends(b, be->url + at);
    if (rc == 0)
        rc = buf_appendc(b, '\0');
    return rc;
}

static void set_call(struct plan_call *c, const struct config_backend *be, size_t index)
{
    *c = (struct plan_call){
        .be = be,
        .url = be->url,
        .headers = be->headers,
        .nheaders = be->nheaders,
        .timeout_ms = be->timeout_ms,
        .max_body = be->max_body_bytes,
        .coalesce = be->coalesce,
        .required = be->required,
        .index = index,
        .ndeps = be->ndeps,
        .deps = be->deps,
    };
    for (size_t r = 0; r < be->nrefs; r++)
        c->chained |= be->refs[r].param == CONFIG_REF_DEP;
    if (c->chained)
        c->url = NULL;
}

/* A copy of the request's path parameter values, for chained calls: one allocation. */
static char **copy_params(const struct config_endpoint *ep, const char *const *params)
{
    size_t n = ep->nparams, bytes = n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        bytes += strlen(params[i]) + 1;
    char **copy = malloc(bytes);
    if (copy == NULL)
        return NULL;
    char *s = (char *)(copy + n);
    for (size_t i = 0; i < n; i++) {
        copy[i] = s;
        s = stpcpy(s, params[i]) + 1;
    }
    return copy;
}

int plan_chain_url(const struct plan *p, size_t i, const struct agg *a, char **url, char *err,
                   size_t errlen)
{
    const struct plan_call *c = &p->calls[i];
    struct buf b = BUF_INIT;
    int rc = expand_url(&b, c->be, c->item, (const char *const *)p->params, p, a, err, errlen);
    if (rc < 0) {
        buf_finish(&b);
        return rc;
    }
    *url = buf_steal(&b, NULL);
    return *url != NULL ? 0 : -ENOMEM;
}

int plan_build(const struct config_endpoint *ep, const struct plan_request *req, struct plan **out,
               char *err, size_t errlen)
{
    char *items = NULL;
    size_t nitems = 0, ncalls = ep->nbackends;
    if (ep->each_param != NULL) {
        int rc =
            plan_items(req->query, ep->each_param, ep->max_items, &items, &nitems, err, errlen);
        if (rc < 0)
            return rc;
        ncalls = nitems;
    }
    struct plan *p = malloc(sizeof *p + ncalls * sizeof p->calls[0]);
    if (p == NULL) {
        free(items);
        return -ENOMEM;
    }
    p->ep = ep;
    p->deadline_ms = ep->timeout_ms;
    p->fail_fast = ep->on_error == CONFIG_ON_ERROR_FAIL_FAST;
    p->concurrency = (size_t)ep->concurrency;
    p->each = ep->each_param != NULL;
    p->store = NULL;
    p->items = NULL;
    p->params = NULL;
    p->ncalls = ncalls;

    /* URLs with placeholders go into one buffer; offsets first, pointers once it stops
     * moving. */
    struct buf urls = BUF_INIT;
    size_t *at = NULL;
    const char *item = items;
    for (size_t i = 0; i < ncalls; i++) {
        const struct config_backend *be = &ep->backends[p->each ? 0 : i];
        set_call(&p->calls[i], be, i);
        if (p->each) {
            p->calls[i].item = item;
            item += strlen(item) + 1;
        }
        if (be->nrefs == 0 || p->calls[i].chained)
            continue;
        if (at == NULL && (at = calloc(ncalls, sizeof *at)) == NULL)
            goto nomem;
        at[i] = urls.len + 1;
        if (expand_url(&urls, be, p->calls[i].item, req->params, NULL, NULL, NULL, 0) < 0)
            goto nomem;
    }
    if (at != NULL) {
        p->store = buf_steal(&urls, NULL);
        if (p->store == NULL)
            goto nomem;
        for (size_t i = 0; i < ncalls; i++)
            if (at[i] != 0)
                p->calls[i].url = p->store + at[i] - 1;
        free(at);
    }
    p->items = items;
    if (ep->nparams > 0 && (p->params = copy_params(ep, req->params)) == NULL) {
        plan_destroy(p);
        return -ENOMEM;
    }
    *out = p;
    return 0;

nomem:
    free(at);
    buf_finish(&urls);
    free(items);
    free(p->store);
    free(p);
    return -ENOMEM;
}

void plan_destroy(struct plan *p)
{
    if (p == NULL)
        return;
    free(p->store);
    free(p->items);
    free(p->params);
    free(p);
}

/* Matches a raw path against ep's segments: each literal segment equal to the decoded raw one,
 * each parameter one whole raw segment, decoded. On a structural match, the decoded values go
 * into *values (one allocation: the pointers, then the strings; the caller frees it) and 1 is
 * returned; 0 when the path has another shape; -ENOMEM. */
int plan_match_path(const struct config_endpoint *ep, const char *path, size_t plen, char ***values,
                    size_t *bad)
{
    size_t nsegs = 0;
    for (size_t i = 0; i < plen; i++)
        nsegs += path[i] == '/';
    if (nsegs != ep->nsegs || plen == 0 || path[0] != '/')
        return 0;
    char **v = malloc(ep->nparams * sizeof *v + plen + 1);
    if (v == NULL)
        return -ENOMEM;
    char *dec = (char *)(v + ep->nparams);
    const char *p = path + 1;
    bool shape = true, readable = true;
    for (size_t s = 0; s < ep->nsegs && shape; s++) {
        size_t len = strcspn(p, "/"), dlen = 0;
        if (p + len > path + plen)
            len = (size_t)(path + plen - p);
        const struct config_seg *seg = &ep->segs[s];
        bool decoded = pct_decode(p, len, dec, &dlen) == 0;
        if (seg->param < 0) {
            /* A literal segment matches its decoded text only. */
            shape = decoded && strlen(seg->text) == dlen && memcmp(seg->text, dec, dlen) == 0;
        } else {
            /* A value that cannot be read still has this endpoint's shape: its 400, not a
             * 404, unless a later literal segment says it is another shape. */
            if (!decoded && readable) {
                readable = false;
                *bad = (size_t)seg->param;
                dlen = 0;
            }
            dec[decoded ? dlen : 0] = '\0';
            v[seg->param] = dec;
            dec += (decoded ? dlen : 0) + 1;
        }
        p += len + 1;
    }
    if (!shape || !readable) {
        free(v);
        return shape ? -EINVAL : 0;
    }
    *values = v;
    return 1;
}

const char *plan_call_name(const struct plan_call *c)
{
    return c->be->name;
}
