/* plan_items() and plan_match_path(), the two readers of what a client puts in a request
 * target, against their contracts (plan.h). Input: a raw query string (a query for "sn"), or,
 * after a first byte of 0xff, a raw path matched against "/t/{a}/x/{b}".
 *
 * Checked: no crash or leak on any input; items are distinct, non-empty, free of ',' and NUL,
 * at most max; each item occurs in the decoded values of the query; a refusal says why; a path
 * match yields values that re-encode to segments of the path's shape; substituting values
 * never leaves a URL component (no '/', '?', '#', '&' outside the template's own). */
#include "buf.h"
#include "config.h"
#include "fuzz.h"
#include "pct.h"
#include "plan.h"

#include <errno.h>
#include <stdbool.h>

static struct config *cfg;

static void setup(void)
{
    static const char json[] =
        "{\"endpoints\":[{\"path\":\"/t/{a}/x/{b}\",\"params\":{\"a\":\".*\",\"b\":\".*\"},"
        "\"backends\":[{\"name\":\"n\",\"url\":\"http://u/p/{a}?q={b}\"}]}]}";
    char err[256];
    CHECK(config_parse(json, strlen(json), "fuzz", &cfg, err, sizeof err) == 0, "%s", err);
}

static void check_items(const char *query, size_t max)
{
    char *store = NULL, err[300] = "";
    size_t n = 0;
    int rc = plan_items(query, "sn", max, &store, &n, err, sizeof err);
    if (rc < 0) {
        CHECK(rc == -EINVAL, "plan_items: %d", rc);
        CHECK(strstr(err, "sn") != NULL, "a refusal names the parameter: %s", err);
        return;
    }
    CHECK(n >= 1 && n <= max, "%zu items for max %zu", n, max);
    const char *p = store;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(p);
        CHECK(len > 0, "empty item %zu", i);
        CHECK(strchr(p, ',') == NULL, "item %zu has a comma", i);
        const char *q = store;
        for (size_t j = 0; j < i; j++) {
            CHECK(strcmp(q, p) != 0, "item %zu repeats item %zu", i, j);
            q += strlen(q) + 1;
        }
        p += len + 1;
    }
    free(store);
}

static void check_path(const char *path, size_t plen)
{
    const struct config_endpoint *ep = &cfg->endpoints[0];
    char **v = NULL;
    size_t bad = 0;
    int rc = plan_match_path(ep, path, plen, &v, &bad);
    CHECK(rc == 0 || rc == 1 || (rc == -EINVAL && bad < 2), "plan_match_path: %d", rc);
    if (rc != 1)
        return;
    /* Re-encoded, the values rebuild a path of the same shape that matches to the same values. */
    struct buf b = BUF_INIT;
    CHECK(buf_appends(&b, "/t/") == 0 && pct_encode(&b, v[0], strlen(v[0])) == 0 &&
              buf_appends(&b, "/x/") == 0 && pct_encode(&b, v[1], strlen(v[1])) == 0,
          "out of memory");
    char **w = NULL;
    CHECK(plan_match_path(ep, b.data, b.len, &w, &bad) == 1, "re-encoded path %s does not match",
          b.data);
    CHECK(strcmp(v[0], w[0]) == 0 && strcmp(v[1], w[1]) == 0, "values changed");
    const char *params[] = {v[0], v[1]};
    struct plan *p = NULL;
    CHECK(plan_build(ep, &(struct plan_request){NULL, params}, &p, NULL, 0) == 0, "plan");
    const char *url = p->calls[0].url;
    CHECK(strncmp(url, "http://u/p/", 11) == 0, "prefix of %s", url);
    CHECK(strpbrk(url + 11, "/#&") == NULL, "a value left its component: %s", url);
    CHECK(strchr(url + 11, '?') != NULL && strchr(strchr(url + 11, '?') + 1, '?') == NULL,
          "one query in %s", url);
    plan_destroy(p);
    free(w);
    free(v);
    buf_finish(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cfg == NULL)
        setup();
    if (size > 0 && data[0] == 0xff) {
        char *path = dup_n(data + 1, size - 1);
        check_path(path, strlen(path));
        free(path);
        return 0;
    }
    size_t max = size > 0 ? (size_t)(data[0] % 8) + 1 : 1;
    char *query = dup_n(size > 0 ? data + 1 : data, size > 0 ? size - 1 : 0);
    check_items(query, max);
    check_items(query, 1000);
    free(query);
    return 0;
}
