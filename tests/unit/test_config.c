#include "config.h"
#include "config_tls.h"
#include "netacl.h"
#include "tap.h"

#include <stdlib.h>

static char err[1024];

static struct config *parse(const char *json)
{
    struct config *cfg = NULL;
    err[0] = '\0';
    if (config_parse(json, strlen(json), "t.json", &cfg, err, sizeof err) < 0)
        return NULL;
    return cfg;
}

/* Expects a rejection whose message contains `want`. */
static void rejects(const char *json, const char *want)
{
    struct config *cfg = parse(json);
    ok(cfg == NULL && strstr(err, want) != NULL, "rejected with \"%s\"", want);
    if (cfg != NULL || strstr(err, want) == NULL)
        printf("#   message: %s\n", err);
    config_unref(cfg);
}

#define EP(backends) "{\"endpoints\":[{\"path\":\"/t\",\"backends\":[" backends "]}]}"
#define BE "{\"name\":\"a\",\"url\":\"http://127.0.0.1:1/x\"}"
/* The endpoints member alone, to put after other top-level keys. */
#define EPS "\"endpoints\":[{\"path\":\"/t\",\"backends\":[" BE "]}]}"

/* The tls and http2 keys that need no file: the system bundle is not read for them. */
static void test_tls(void)
{
    struct config *cfg = parse(EP(BE));
    ok(cfg != NULL && !cfg->endpoints[0].backends[0].tls->https &&
           cfg->endpoints[0].backends[0].tls->id[0] == '\0',
       "an http:// backend is plain HTTP/1.1, with the empty profile id");
    config_unref(cfg);

    /* server_name: the URL names it, connect_to keeps the address, placeholders move along. */
    cfg = parse("{\"endpoints\":[{\"path\":\"/t/{id}\",\"params\":{\"id\":\"[0-9]+\"},"
                "\"backends\":[{\"name\":\"a\",\"url\":\"https://u@10.0.0.1:8443/x/{id}?q\","
                "\"tls\":{\"verify\":false,\"server_name\":\"api.test\"}},"
                "{\"name\":\"b\",\"url\":\"https://[::1]/y\","
                "\"tls\":{\"verify\":false,\"server_name\":\"api.test\"}}]}]}");
    ok(cfg != NULL, "server_name accepted (%s)", err);
    if (cfg != NULL) {
        const struct config_backend *a = &cfg->endpoints[0].backends[0];
        const struct config_backend *b = &cfg->endpoints[0].backends[1];
        is_str(a->url, "https://u@api.test:8443/x/{id}?q", "the URL names server_name");
        is_str(a->tls->connect_to, "api.test:8443:10.0.0.1:8443", "and connects to the address");
        ok(a->nrefs == 1 && strncmp(a->url + a->refs[0].start, "{id}", 4) == 0 &&
               a->refs[0].end - a->refs[0].start == 4,
           "the placeholder moved with the host");
        is_str(b->tls->connect_to, "api.test:443:[::1]:443", "IPv6, default port");
        ok(a->tls != b->tls && strcmp(a->tls->id, b->tls->id) != 0,
           "another address: another profile");
        ok(cfg->nwarnings == 2 &&
               strcmp(cfg->warnings[0].key, "endpoints[0].backends[0].tls.verify") == 0,
           "verify false is a warning per backend");
    }
    config_unref(cfg);

    cfg = parse("{\"http2\":\"prior_knowledge\",\"endpoints\":[{\"path\":\"/t\",\"backends\":["
                "{\"name\":\"a\",\"url\":\"http://h/\"},{\"name\":\"b\",\"url\":\"http://h/\","
                "\"http2\":\"off\"},{\"name\":\"c\",\"url\":\"https://h/\",\"tls\":"
                "{\"verify\":false,\"min_version\":\"1.3\"}}]}]}");
    ok(cfg != NULL, "http2 and min_version accepted (%s)", err);
    if (cfg != NULL) {
        const struct config_backend *be = cfg->endpoints[0].backends;
        ok(be[0].tls->http2 == CONFIG_HTTP2_PRIOR_KNOWLEDGE && be[1].tls->id[0] == '\0' &&
               be[2].tls->http2 == CONFIG_HTTP2_AUTO && be[2].tls->min_version == 13,
           "h2c inherited by http://, overridden by off; https:// negotiates");
    }
    config_unref(cfg);

    rejects("{\"tls\":{\"verify\":false}," EPS, "t.json: tls.verify: false is allowed only");
    rejects("{\"tls\":{\"server_name\":\"a.test\"}," EPS, "tls.server_name: is only for");
    rejects("{\"tls\":{\"ca\":\"x\"}," EPS, "tls.ca: unknown key");
    rejects("{\"tls\":[]," EPS, "tls: must be an object");
    rejects("{\"http2\":true," EPS, "http2: must be a string");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"tls\":{}}"),
            "endpoints[0].backends[0].tls: applies only to https:// URLs");
    rejects(EP("{\"name\":\"a\",\"url\":\"https://h/\",\"http2\":\"prior_knowledge\"}"),
            "endpoints[0].backends[0].http2: \"prior_knowledge\" is for http://");
    rejects(EP("{\"name\":\"a\",\"url\":\"https://h/\",\"tls\":{\"min_version\":1.3}}"),
            "tls.min_version: must be a string");
    rejects(EP("{\"name\":\"a\",\"url\":\"https://h/\",\"tls\":{\"verify\":false,"
               "\"server_name\":\"a..b\"}}"),
            "tls.server_name: must be a DNS name");
    rejects(EP("{\"name\":\"a\",\"url\":\"https://h/\",\"tls\":{\"ca_file\":\"\"}}"),
            "endpoints[0].backends[0].tls.ca_file: must name a file");
    rejects(EP("{\"name\":\"a\",\"url\":\"https://h/\",\"tls\":{\"ca_file\":"
               "\"/nonexistent/ca.pem\"}}"),
            "tls.ca_file: cannot open /nonexistent/ca.pem: No such file or directory");
    rejects(EP("{\"name\":\"a\",\"url\":\"https://h/\",\"tls\":{\"verify\":false,"
               "\"client_key_passphrase\":\"${GD_TEST_UNSET_PASS}\"}}"),
            "tls.client_key_passphrase: ");
}

int main(void)
{
    struct config *cfg = parse(EP(BE));
    ok(cfg != NULL, "minimal config accepted (%s)", err);
    ok(cfg->workers == 0 && cfg->access_log && cfg->endpoints[0].timeout_ms == 5000,
       "defaults: workers 0, access log on, 5 s deadline");
    ok(cfg->endpoints[0].backends[0].timeout_ms == 5000, "backend inherits the endpoint timeout");
    ok(cfg->endpoints[0].backends[0].max_body_bytes == 8u << 20, "8 MiB default body cap");
    ok(config_find(cfg, "/t") == &cfg->endpoints[0] && config_find(cfg, "/u") == NULL, "find");
    config_unref(cfg);

    cfg = parse("{\"endpoints\":[{\"path\":\"/t\",\"backends\":[" BE "]},{\"path\":\"/c\","
                "\"coalesce\":true,\"backends\":[" BE ",{\"name\":\"b\",\"url\":\"http://h/\","
                "\"coalesce\":false}]}]}");
    ok(cfg != NULL, "coalesce accepted (%s)", err);
    if (cfg != NULL)
        ok(!cfg->endpoints[0].backends[0].coalesce && cfg->endpoints[1].backends[0].coalesce &&
               !cfg->endpoints[1].backends[1].coalesce,
           "coalesce: off by default, inherited from the endpoint, overridden by a backend");
    config_unref(cfg);
    rejects("{\"endpoints\":[{\"path\":\"/t\",\"coalesce\":1,\"backends\":[" BE "]}]}",
            "endpoints[0].coalesce: must be true or false");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"coalesce\":\"yes\"}"),
            "endpoints[0].backends[0].coalesce: must be true or false");

    setenv("GD_TEST_TOKEN", "s3cret", 1);
    cfg = parse("{\"listen\":\"127.0.0.1:9\",\"workers\":2,\"log_level\":\"warn\","
                "\"trusted_proxies\":[\"10.0.0.0/8\",\"::1\"],\"max_body_bytes\":100,"
                "\"endpoints\":[{\"path\":\"/t\",\"timeout_ms\":300,\"max_body_bytes\":50,"
                "\"backends\":[{\"name\":\"a\",\"url\":\"https://h:8443/p?q=1\",\"timeout_ms\":"
                "200,\"headers\":{\"Authorization\":\"Bearer ${GD_TEST_TOKEN}\",\"X-A\":\"$$5\"}}"
                "]}]}");
    ok(cfg != NULL, "full config accepted (%s)", err);
    if (cfg != NULL) {
        struct config_backend *b = &cfg->endpoints[0].backends[0];
        is_str(b->headers[0], "Authorization: Bearer s3cret", "${VAR} expanded in a header");
        is_str(b->headers[1], "X-A: $5", "$$ is a literal dollar");
        ok(b->max_body_bytes == 50 && b->timeout_ms == 200, "per-endpoint cap inherited");
        ok(netacl_match_text(cfg->trusted_proxies, "10.1.2.3") &&
               !netacl_match_text(cfg->trusted_proxies, "11.0.0.1"),
           "trusted proxies parsed");
        struct config *ref = config_ref(cfg);
        config_unref(ref);
        ok(atomic_load(&cfg->refs) == 1, "ref/unref balance");
    }
    config_unref(cfg);

    rejects("{\"endpoints\": [", "line 1, column");
    rejects("{\"endpoints\":[]}\n\n  x", "line 3");
    rejects("[]", "must be a JSON object");
    rejects("{\"bogus\":1," EPS, "bogus: unknown key");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"extra\":1}"),
            "endpoints[0].backends[0].extra: unknown key");
    rejects(EP("{\"name\":\"a\"}"), "endpoints[0].backends[0].url: is required");
    rejects(EP("{\"name\":\"a\",\"url\":\"ftp://h/\"}"), "must be an http:// or https:// URL");
    rejects(EP("{\"name\":\"a\",\"url\":\"http:///x\"}"), "has no host");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h:99999/\"}"), "port above 65535");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/a b\"}"), "white space");
    rejects(EP("{\"url\":\"http://h/\"}"), "backends[0].name: is required");
    rejects(EP(BE "," BE), "duplicate backend name");
    rejects(EP(""), "endpoints[0].backends: must not be empty");
    rejects("{\"endpoints\":[]}", "endpoints: must not be empty");
    rejects("{}", "endpoints: is required");
    rejects("{\"endpoints\":[{\"path\":\"/t\",\"backends\":[" BE "]},{\"path\":\"/t\","
            "\"backends\":[" BE "]}]}",
            "endpoints[1].path: duplicate path");
    rejects("{\"endpoints\":[{\"path\":\"/t\",\"timeout_ms\":-1,\"backends\":[" BE "]}]}",
            "endpoints[0].timeout_ms: must be between 1 and 600000");
    rejects("{\"endpoints\":[{\"path\":\"/t\",\"timeout_ms\":1000000000,\"backends\":[" BE "]}]}",
            "timeout_ms: must be between");
    rejects("{\"endpoints\":[{\"path\":\"/t\",\"timeout_ms\":\"5\",\"backends\":[" BE "]}]}",
            "must be an integer");
    rejects("{\"endpoints\":[{\"path\":\"/t\",\"timeout_ms\":100,\"backends\":[{\"name\":\"a\","
            "\"url\":\"http://h/\",\"timeout_ms\":200}]}]}",
            "exceeds the endpoint's timeout_ms");
    rejects("{\"endpoints\":[{\"path\":\"/healthz\",\"backends\":[" BE "]}]}", "reserved");
    rejects("{\"endpoints\":[{\"path\":\"t\",\"backends\":[" BE "]}]}", "must start with '/'");
    rejects("{\"endpoints\":[{\"path\":\"/t?x\",\"backends\":[" BE "]}]}", "'?'");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"headers\":{\"X\":\"${GD_UNSET_VAR_Q}\"}}"),
            "environment variable GD_UNSET_VAR_Q is not set");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"headers\":{\"X\":\"${oops\"}}"),
            "unterminated");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"headers\":{\"Bad Name\":\"v\"}}"),
            "not a valid header name");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"headers\":{\"X-Request-Id\":\"v\"}}"),
            "set by gatherd");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"headers\":{\"X\":\"a\\r\\nB: c\"}}"),
            "control characters");
    rejects(EP("{\"name\":\"a\",\"url\":\"http://h/\",\"headers\":{\"X\":1}}"), "must be a string");
    rejects("{\"workers\":-1," EPS, "workers: must be between 0 and 256");
    rejects("{\"log_level\":\"loud\"," EPS, "log_level: must be one of");
    rejects("{\"trusted_proxies\":[\"10.0.0.0/33\"]," EPS, "trusted_proxies[0]");
    rejects("{\"access_log\":1," EPS, "access_log: must be true or false");
    rejects("{\"listen\":\"\"," EPS, "listen: must not be empty");
    rejects("{\"listen\":\"nonsense\"," EPS, "listen: \"nonsense\": must be HOST:PORT");
    rejects("{\"listen\":\"1.2.3.4:99999\"," EPS, "listen: \"1.2.3.4:99999\": PORT must be");
    rejects("{\"listen\":\"127.0.0.1:x\"," EPS, "listen: \"127.0.0.1:x\": PORT must be");
    rejects("{\"listen\":\"[::1\"," EPS, "listen: \"[::1\": has no ']'");
    rejects("{\"listen\":\"unix:\"," EPS, "listen: \"unix:\": unix socket path must be");
    rejects("{\"listen\":\"example.com:80\"," EPS, "listen: \"example.com:80\": HOST must be");
    cfg = parse("{\"listen\":\"[::1]:0\"," EPS);
    ok(cfg != NULL && strcmp(cfg->listen, "[::1]:0") == 0, "an IPv6 listen address (%s)", err);
    config_unref(cfg);
    cfg = parse("{\"listen\":\"unix:/run/g.sock\"," EPS);
    ok(cfg != NULL, "a unix socket listen address (%s)", err);
    config_unref(cfg);
    rejects("{\"endpoints\":[{\"path\":\"/t\",\"path\":\"/u\",\"backends\":[" BE "]}]}",
            "duplicate object key");

    cfg = NULL;
    ok(config_default(&cfg, err, sizeof err) == 0, "built-in default parses (%s)", err);
    ok(cfg != NULL && cfg->nendpoints == 1 && strcmp(cfg->endpoints[0].path, "/tickers") == 0 &&
           cfg->endpoints[0].nbackends == 3,
       "built-in default is /tickers over three exchanges");
    ok(cfg != NULL && cfg->listen == NULL, "built-in default leaves listen to $PORT or 5042");
    ok(cfg != NULL && cfg->endpoints[0].backends[0].tls->https &&
           cfg->endpoints[0].backends[0].tls->verify &&
           cfg->endpoints[0].backends[0].tls->ca != NULL &&
           cfg->endpoints[0].backends[0].tls->http2 == CONFIG_HTTP2_AUTO,
       "built-in default: verified against the system bundle, HTTP/2 by ALPN");
    ok(cfg != NULL && cfg->endpoints[0].backends[0].tls == cfg->endpoints[0].backends[2].tls &&
           cfg->nwarnings == 0,
       "backends with equal settings share one profile; no warning");
    config_unref(cfg);
    test_tls();
    return tap_done();
}
