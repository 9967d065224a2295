/* The join state machine (agg.h) driven by the fuzz input, against a model of its contract.
 *
 * Input: one byte for the number of backends (1..16), then each backend's name (a length byte
 * and that many raw bytes: any bytes, quotes, invalid UTF-8), then operations until the input
 * ends: start, complete (status and body, arbitrary or one of a few valid JSON bodies), fail,
 * cancel (any kind, including invalid ones), render in the middle, with indexes that may be out
 * of range. Completion order, statuses and bodies are therefore arbitrary.
 *
 * Checked: every return code and state against the model; agg_remaining(); then, after the
 * remaining backends are cut off as the deadline does, agg_render(): 200 exactly when one
 * backend is DONE, output that passes jsonv_check, and (parsed with jansson) "results" with one
 * entry per backend in order, each DONE body's value or {}, and "errors" listing every other
 * backend in index order with its name, kind, status (only for http_status) and a message. A
 * render in the middle (a caller bug the code tolerates) must still be valid JSON. */
#include "agg.h"
#include "buf.h"
#include "config.h"
#include "plan.h"
#include "fuzz.h"
#include "jsonv.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>

#define MAX_BACKENDS 16

static const char *const kind_names[] = {"none",        "timeout",      "connect",
                                         "http_status", "invalid_json", "too_large",
                                         "transfer",    "cancelled",    "dependency"};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == ERRKIND_COUNT,
               "a name for every error kind");

static const char *const bodies[] = {
    "{\"a\":1}", " [1, 2, {\"b\": null}] ",           "\"caf\xC3\xA9\"", "-0.5e+3",
    "true",      "{\"k\":\"\\u00e9\\ud83d\\ude00\"}", "\n{}\n",          "[[[[[]]]]]",
};

struct model {
    enum agg_state state;
    enum errkind error;
    long status;
    char *value; /* DONE: the trimmed body */
    size_t vlen;
};

static bool valid_utf8(const char *s)
{
    json_t *j = json_string(s);
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

static size_t remaining(const struct model *m, size_t n)
{
    size_t r = 0;
    for (size_t i = 0; i < n; i++)
        r += m[i].state == AGG_PENDING || m[i].state == AGG_RUNNING;
    return r;
}

static void check_states(const struct agg *a, const struct model *m, size_t n)
{
    CHECK(agg_count(a) == n, "count");
    CHECK(agg_remaining(a) == remaining(m, n), "remaining %zu, model %zu", agg_remaining(a),
          remaining(m, n));
    for (size_t i = 0; i < n; i++) {
        CHECK(agg_state_of(a, i) == m[i].state, "slot %zu state %d, model %d", i,
              agg_state_of(a, i), m[i].state);
        CHECK(agg_status_of(a, i) == m[i].status, "slot %zu status %ld, model %ld", i,
              agg_status_of(a, i), m[i].status);
        if (m[i].state == AGG_FAILED || m[i].state == AGG_CANCELLED)
            CHECK(agg_error_of(a, i) == m[i].error, "slot %zu error %d, model %d", i,
                  agg_error_of(a, i), m[i].error);
    }
}

/* Renders and checks the JSON. `final`: every backend is settled. */
static void check_render(const struct agg *a, const struct config_endpoint *ep,
                         const struct model *m, size_t n, bool final)
{
    struct buf out = BUF_INIT;
    CHECK(buf_appends(&out, "  ") == 0, "oom"); /* render appends: keep a prefix */
    int status = agg_render(a, &out);
    bool any_ok = false;
    for (size_t i = 0; i < n; i++)
        any_ok |= m[i].state == AGG_DONE;
    CHECK(status == (any_ok ? 200 : 502), "render status %d, any_ok %d", status, any_ok);
    const char *text = out.data + 2;
    size_t len = out.len - 2;
    CHECK(memcmp(out.data, "  ", 2) == 0, "prefix overwritten");
    size_t start, end;
    CHECK(jsonv_check(text, len, &start, &end) == 0, "render output invalid at byte %zu: %.*s",
          start, (int)len, text);
    CHECK(start == 0 && end == len, "render output has surrounding space");

    /* jansson has limits jsonv does not (escaped lone surrogates, huge numbers): parse the
     * whole answer only when every DONE body parses on its own. */
    for (size_t i = 0; i < n; i++) {
        if (m[i].state != AGG_DONE)
            continue;
        json_t *v = json_loadb(m[i].value, m[i].vlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (v == NULL) {
            buf_finish(&out);
            return;
        }
        json_decref(v);
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &jerr);
    CHECK(root != NULL, "jansson refuses the join: %s", jerr.text);
    CHECK(json_object_size(root) == 2, "keys");
    json_t *results = json_object_get(root, "results"), *errors = json_object_get(root, "errors");
    CHECK(json_is_array(results) && json_array_size(results) == n, "results: one per backend");
    CHECK(json_is_array(errors), "errors array");
    size_t e = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(results, i);
        if (m[i].state == AGG_DONE) {
            json_t *v = json_loadb(m[i].value, m[i].vlen, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
            CHECK(json_equal(r, v), "results[%zu] is not the body's value", i);
            json_decref(v);
            continue;
        }
        CHECK(json_is_object(r) && json_object_size(r) == 0, "results[%zu] not {}", i);
        json_t *err = json_array_get(errors, e++);
        CHECK(json_is_object(err), "errors entry for %zu missing", i);
        json_t *idx = json_object_get(err, "index");
        CHECK(json_is_integer(idx) && json_integer_value(idx) == (json_int_t)i,
              "errors entry index, want %zu", i);
        json_t *name = json_object_get(err, "name");
        CHECK(json_is_string(name), "name");
        if (valid_utf8(ep->backends[i].name))
            CHECK(strcmp(json_string_value(name), ep->backends[i].name) == 0 &&
                      json_string_length(name) == strlen(ep->backends[i].name),
                  "name of %zu", i);
        json_t *kind = json_object_get(err, "error");
        CHECK(json_is_string(kind), "error kind");
        if (final) {
            CHECK(strcmp(json_string_value(kind), kind_names[m[i].error]) == 0, "kind %s, model %s",
                  json_string_value(kind), kind_names[m[i].error]);
        }
        json_t *st = json_object_get(err, "status");
        if (final && m[i].error == ERRKIND_HTTP_STATUS)
            CHECK(json_is_integer(st) && json_integer_value(st) == m[i].status, "status");
        else if (final)
            CHECK(st == NULL, "status present for %s", kind_names[m[i].error]);
        json_t *msg = json_object_get(err, "message");
        CHECK(json_is_string(msg), "message");
        CHECK(json_object_size(err) == (st ? 5u : 4u), "unexpected keys in an errors entry");
    }
    CHECK(json_array_size(errors) == e, "errors has %zu entries, want %zu", json_array_size(errors),
          e);
    json_decref(root);
    buf_finish(&out);
}

static int expect_rc(int rc, int want, const char *what, size_t i)
{
    CHECK(rc == want, "%s(%zu): rc %d, model %d", what, i, rc, want);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cursor c = {data, size};
    size_t n = 1 + cur_u8(&c) % MAX_BACKENDS;
    struct config_backend backends[MAX_BACKENDS];
    memset(backends, 0, sizeof backends);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p;
        size_t len = cur_bytes(&c, cur_u8(&c) % 24, &p);
        backends[i].name = dup_n(p, len);
    }
    struct config_endpoint ep = {
        .path = "/fuzz", .timeout_ms = 1000, .nbackends = n, .backends = backends};
    struct model m[MAX_BACKENDS];
    memset(m, 0, sizeof m);
    struct plan *plan;
    if (plan_build(&ep, &(struct plan_request){NULL, NULL}, &plan, NULL, 0) < 0)
        return 0;
    struct agg *a = agg_create(plan);
    CHECK(a != NULL, "oom");
    check_states(a, m, n);

    int ops = 0;
    while (c.left > 0 && ops++ < 200) {
        uint8_t op = cur_u8(&c);
        size_t i = cur_u8(&c) % (n + 2); /* n and n+1 are out of range */
        bool in = i < n;
        switch (op % 6) {
        case 0: /* start */
            expect_rc(agg_start(a, i),
                      !in                         ? -EINVAL
                      : m[i].state == AGG_PENDING ? 0
                                                  : -EALREADY,
                      "start", i);
            if (in && m[i].state == AGG_PENDING)
                m[i].state = AGG_RUNNING;
            break;
        case 1:   /* complete, arbitrary body */
        case 2: { /* complete, a valid body */
            long status = (long)cur_u16(&c) % 700;
            char *body;
            size_t len;
            if (op % 6 == 2) {
                const char *t = bodies[cur_u8(&c) % (sizeof bodies / sizeof bodies[0])];
                len = strlen(t);
                body = dup_n(t, len);
            } else {
                const uint8_t *p;
                len = cur_bytes(&c, cur_u8(&c), &p);
                body = len == 0 && (op & 0x80) ? NULL : dup_n(p, len);
            }
            int want = !in ? -EINVAL : m[i].state == AGG_RUNNING ? 0 : -EALREADY;
            size_t vs = 0, ve = 0;
            bool json_ok = len > 0 && jsonv_check(body, len, &vs, &ve) == 0;
            char *value = json_ok ? dup_n(body + vs, ve - vs) : NULL;
            expect_rc(agg_complete(a, i, status, body, len), want, "complete", i); /* owns body */
            if (want == 0) {
                m[i].status = status;
                if (status < 200 || status > 299) {
                    m[i].state = AGG_FAILED;
                    m[i].error = ERRKIND_HTTP_STATUS;
                } else if (!json_ok) {
                    m[i].state = AGG_FAILED;
                    m[i].error = ERRKIND_INVALID_JSON;
                } else {
                    m[i].state = AGG_DONE;
                    m[i].value = value;
                    m[i].vlen = ve - vs;
                    value = NULL;
                }
            }
            free(value);
            break;
        }
        case 3:   /* fail */
        case 4: { /* cancel */
            enum errkind kind = (enum errkind)(cur_u8(&c) % (ERRKIND_COUNT + 2));
            const uint8_t *p;
            size_t len = cur_bytes(&c, cur_u8(&c) % 32, &p);
            char *msg = (op & 0x40) ? NULL : dup_n(p, len);
            bool kind_ok = kind != ERRKIND_NONE && kind < ERRKIND_COUNT;
            if (op % 6 == 3) {
                /* A call that could not be started fails from PENDING too (agg.h). */
                bool live = in && (m[i].state == AGG_PENDING || m[i].state == AGG_RUNNING);
                int want = !in || !kind_ok ? -EINVAL : live ? 0 : -EALREADY;
                expect_rc(agg_fail(a, i, kind, msg), want, "fail", i);
                if (want == 0) {
                    m[i].state = AGG_FAILED;
                    m[i].error = kind;
                }
            } else {
                bool live = in && (m[i].state == AGG_PENDING || m[i].state == AGG_RUNNING);
                int want = !in || !kind_ok ? -EINVAL : live ? 0 : -EALREADY;
                expect_rc(agg_cancel(a, i, kind, msg), want, "cancel", i);
                if (want == 0) {
                    m[i].state = AGG_CANCELLED;
                    m[i].error = kind;
                }
            }
            free(msg);
            break;
        }
        case 5:
            check_render(a, &ep, m, n, false);
            break;
        }
        check_states(a, m, n);
    }

    /* The deadline: whatever is left is cut off, as fanout's stop_legs() does. */
    for (size_t i = 0; i < n; i++) {
        bool live = m[i].state == AGG_PENDING || m[i].state == AGG_RUNNING;
        expect_rc(agg_cancel(a, i, ERRKIND_TIMEOUT, "deadline"), live ? 0 : -EALREADY, "cut", i);
        if (live) {
            m[i].state = AGG_CANCELLED;
            m[i].error = ERRKIND_TIMEOUT;
        }
    }
    CHECK(agg_done(a), "not done after every backend was cut off");
    check_states(a, m, n);
    check_render(a, &ep, m, n, true);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(errkind_name(m[i].error), kind_names[m[i].error]) == 0, "error name");

    agg_destroy(a);
    plan_destroy(plan);
    for (size_t i = 0; i < n; i++) {
        free(m[i].value);
        free(backends[i].name);
    }
    return 0;
}
