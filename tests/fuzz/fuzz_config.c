/* config_parse() on arbitrary bytes. A rejected input must leave *out alone and give a
 * NUL-terminated, non-empty message naming the origin; an accepted one must satisfy every
 * documented constraint (ranges, URL schemes, unique names and paths, timeouts, expanded
 * headers), and reference counting must free it (LeakSanitizer checks). */
#include "config.h"
#include "config_tls.h"
#include "fuzz.h"
#include "laddr.h"
#include "netacl.h"

#include <errno.h>
#include <strings.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Variables the seed corpus refers to in ${VAR}; FUZZ_UNSET stays unset. */
    setenv("FUZZ_TOKEN", "s3cr3t-token", 1);
    setenv("FUZZ_EMPTY", "", 1);
    setenv("FUZZ_HOST", "127.0.0.1:8080", 1);
    setenv("FUZZ_CTL", "bad\nvalue", 1);
    setenv("FUZZ_DOLLAR", "${FUZZ_TOKEN}", 1);
    unsetenv("FUZZ_UNSET");
    return 0;
}

static int has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static void check_config(const struct config *cfg)
{
    CHECK(atomic_load(&cfg->refs) == 1, "refs %d", atomic_load(&cfg->refs));
    CHECK(cfg->workers >= 0 && cfg->workers <= 256, "workers %d", cfg->workers);
    CHECK(cfg->log_level >= LOGLEVEL_DEBUG && cfg->log_level <= LOGLEVEL_ERROR, "log level");
    CHECK(cfg->worker_connections >= 1 && cfg->worker_connections <= 1000000, "worker_connections");
    CHECK(cfg->idle_timeout_ms >= 100 && cfg->idle_timeout_ms <= 3600000, "idle_timeout_ms");
    CHECK(cfg->drain_timeout_ms >= 0 && cfg->drain_timeout_ms <= 3600000, "drain_timeout_ms");
    CHECK(cfg->max_body_bytes >= 1 && cfg->max_body_bytes <= (1u << 30), "max_body_bytes");
    CHECK(cfg->upstream_max_host_connections >= 0 && cfg->upstream_max_host_connections <= 100000,
          "upstream_max_host_connections");
    CHECK(cfg->upstream_idle_connections >= 1 && cfg->upstream_idle_connections <= 100000,
          "upstream_idle_connections");
    CHECK(cfg->listen == NULL || laddr_check(cfg->listen) == NULL, "bad listen %s accepted",
          cfg->listen);
    CHECK(cfg->nendpoints >= 1, "no endpoints accepted");
    size_t total = 0;
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        const struct config_endpoint *ep = &cfg->endpoints[i];
        CHECK(ep->path != NULL && ep->path[0] == '/', "path");
        CHECK(strlen(ep->path) <= 1024, "path length");
        CHECK(strpbrk(ep->path, "?# ") == NULL && !has_ctl(ep->path), "path %s", ep->path);
        CHECK(strcmp(ep->path, "/healthz") && strcmp(ep->path, "/readyz") &&
                  strcmp(ep->path, "/metrics"),
              "reserved path %s accepted", ep->path);
        /* config_find() serves literal paths; those with placeholders are routed by segment. */
        CHECK(config_find(cfg, ep->path) == (ep->segs == NULL ? ep : NULL),
              "config_find(%s) is another endpoint", ep->path);
        CHECK((ep->segs != NULL) == (ep->nparams > 0), "segments without parameters: %s", ep->path);
        for (size_t b = 0; b < ep->nbackends; b++)
            for (size_t r = 0; r < ep->backends[b].nrefs; r++) {
                const struct config_ref *ref = &ep->backends[b].refs[r];
                const char *url = ep->backends[b].url;
                const char *auth = strstr(url, "://") + 3;
                CHECK(url + ref->start >= auth + strcspn(auth, "/?#"),
                      "a placeholder in the scheme or authority of %s", url);
                CHECK(ref->param != CONFIG_REF_DEP || ref->dep != b, "a self reference in %s", url);
                CHECK(ref->param != CONFIG_REF_ITEM || ep->each_param != NULL, "{item} in %s", url);
            }
        CHECK(ep->concurrency >= 0 && ep->concurrency <= CONFIG_MAX_CONCURRENCY, "concurrency");
        if (ep->each_param != NULL)
            CHECK(ep->each_param[0] != '\0' && ep->nbackends == 1 && ep->max_items >= 1 &&
                      ep->max_items <= CONFIG_MAX_ITEMS,
                  "each on %s", ep->path);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(cfg->endpoints[j].path, ep->path) != 0, "duplicate path");
        CHECK(ep->timeout_ms >= 1 && ep->timeout_ms <= CONFIG_MAX_TIMEOUT_MS, "ep timeout");
        CHECK(ep->nbackends >= 1 && ep->nbackends <= CONFIG_MAX_BACKENDS, "nbackends %zu",
              ep->nbackends);
        total += ep->nbackends;
        for (size_t k = 0; k < ep->nbackends; k++) {
            const struct config_backend *be = &ep->backends[k];
            size_t nl = strlen(be->name);
            CHECK(nl >= 1 && nl <= 200 && !has_ctl(be->name), "backend name");
            for (size_t j = 0; j < k; j++)
                CHECK(strcmp(ep->backends[j].name, be->name) != 0, "duplicate backend name");
            CHECK(strncasecmp(be->url, "http://", 7) == 0 ||
                      strncasecmp(be->url, "https://", 8) == 0,
                  "url %s", be->url);
            for (const char *q = be->url; *q; q++)
                CHECK((unsigned char)*q > 0x20 && *q != 0x7f, "white space in url");
            CHECK(be->tls != NULL && be->tls->https == (strncasecmp(be->url, "https://", 8) == 0),
                  "connection profile of %s", be->url);
            CHECK(!be->tls->https || !be->tls->verify || be->tls->ca != NULL,
                  "a verified https backend without trust anchors");
            CHECK(be->tls->connect_to == NULL || be->tls->server_name != NULL, "connect_to");
            CHECK(be->timeout_ms >= 1 && be->timeout_ms <= ep->timeout_ms,
                  "backend timeout %ld > endpoint %ld", be->timeout_ms, ep->timeout_ms);
            CHECK(be->max_body_bytes >= 1 && be->max_body_bytes <= (1u << 30), "max body");
            CHECK(be->nheaders == 0 || be->headers != NULL, "headers");
            for (size_t h = 0; h < be->nheaders; h++) {
                const char *line = be->headers[h];
                const char *colon = strstr(line, ": ");
                CHECK(colon != NULL && colon > line, "header line %s", line);
                CHECK(!has_ctl(line), "control character in header line");
            }
        }
    }
    CHECK(total == cfg->nbackends_total, "nbackends_total %zu != %zu", cfg->nbackends_total, total);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Small error buffers too, so message truncation is exercised. */
    char err[600];
    size_t errlen = size % 5 == 0 ? 1 + size % 40 : 512;
    memset(err, 'Z', sizeof err);
    struct config *cfg = NULL;
    int rc = config_parse((const char *)data, size, "fuzz", &cfg, err, errlen);
    CHECK(err[errlen] == 'Z', "wrote past errlen %zu", errlen);
    if (rc == 0) {
        CHECK(cfg != NULL, "success without a config");
        check_config(cfg);
        CHECK(config_ref(cfg) == cfg, "config_ref");
        config_unref(cfg);
        config_unref(cfg);
        return 0;
    }
    CHECK(rc == -EINVAL || rc == -ENOMEM, "rc %d", rc);
    CHECK(cfg == NULL, "*out set on failure");
    CHECK(memchr(err, '\0', errlen) != NULL, "message not NUL-terminated");
    if (errlen >= 8 && rc == -EINVAL)
        CHECK(strncmp(err, "fuzz: ", errlen - 1 < 6 ? errlen - 1 : 6) == 0, "message %s", err);
    return 0;
}
