/* Coalescing through the upstream seam: which legs share a transfer, who gets which body, and
 * when the transfer is cancelled. Ends with nothing running and no flight left. */
#include "fake_upstream.h"
#include "config_tls.h"
#include "flight.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>

struct leg {
    struct flight_wait w;
    int calls;
    enum errkind error;
    long status;
    char *body;
    size_t len;
};

static void on_done(void *arg, struct upstream_result *res)
{
    struct leg *l = arg;
    l->calls++;
    l->error = res->error;
    l->status = res->status;
    free(l->body);
    l->body = res->body;
    l->len = res->len;
    res->body = NULL;
}

static char *const hdr_a[] = {"Authorization: a"};
static char *const hdr_b[] = {"Authorization: b"};

static struct upstream_req req(const char *url, char *const *headers, const char *rid)
{
    return (struct upstream_req){url, 1000, 1 << 20, headers, headers ? 1 : 0, rid, NULL, NULL, 0};
}

int main(void)
{
    struct fake_upstream up = {0};
    struct flights *g = flights_create(&fake_ops, &up);
    struct leg l[6] = {0};
    bool joined;

    /* Unshared legs always get a transfer of their own. */
    struct upstream_req r = req("http://u/x", NULL, "r0");
    ok(flight_join(g, &l[0].w, false, &r, on_done, &l[0], &joined) == 0 && !joined, "own leg");
    ok(flight_join(g, &l[1].w, false, &r, on_done, &l[1], &joined) == 0 && !joined,
       "second own leg");
    ok(up.n == 2 && flights_count(g) == 0, "two transfers, no flight");
    fake_answer(&up, 0, 200, "{\"a\":1}");
    ok(l[0].calls == 1 && l[0].status == 200 && l[0].len == 7, "own leg answered");
    flight_leave(&l[1].w);
    ok(up.x[1].cancelled && l[1].calls == 0, "leaving an own leg cancels it, no callback");

    /* Identical requests share; a different header, URL or timeout does not. */
    struct upstream_req a1 = req("http://u/y", hdr_a, "first");
    struct upstream_req a2 = req("http://u/y", hdr_a, "second");
    struct upstream_req b = req("http://u/y", hdr_b, "third");
    struct upstream_req c = req("http://u/y", hdr_a, "fourth");
    c.timeout_ms = 999;
    ok(flight_join(g, &l[2].w, true, &a1, on_done, &l[2], &joined) == 0 && !joined,
       "first shared leg starts a flight");
    ok(flight_join(g, &l[3].w, true, &a2, on_done, &l[3], &joined) == 0 && joined,
       "identical request joins it");
    ok(flight_join(g, &l[4].w, true, &b, on_done, &l[4], &joined) == 0 && !joined,
       "other headers: a flight of its own");
    ok(flight_join(g, &l[5].w, true, &c, on_done, &l[5], &joined) == 0 && !joined,
       "other timeout: a flight of its own");
    ok(up.n == 5 && flights_count(g) == 3, "three flights");
    is_str(up.x[2].rid, "first", "the first leg's request id goes upstream");
    is_str(up.x[2].first_header, "Authorization: a", "the flight sends its own copy of headers");

    /* The leg that started the flight leaves: the flight runs on for the other. */
    flight_leave(&l[2].w);
    ok(up.x[2].running, "a flight with a leg left keeps running");
    fake_answer(&up, 2, 200, "[1,2]");
    ok(l[3].calls == 1 && l[3].len == 5 && memcmp(l[3].body, "[1,2]", 5) == 0,
       "the remaining leg gets the answer");
    ok(l[2].calls == 0, "the leg that left is not called");
    ok(flights_count(g) == 2, "a finished flight is forgotten at once");

    /* A finished flight is not a cache: the same request starts a new transfer. */
    struct leg again = {0};
    ok(flight_join(g, &again.w, true, &a1, on_done, &again, &joined) == 0 && !joined,
       "after the answer, a new flight");
    fake_fail(&up, 4, ERRKIND_TIMEOUT, "slow");
    ok(l[5].calls == 1 && l[5].error == ERRKIND_TIMEOUT, "an error reaches the leg");

    /* The last leg leaving cancels the transfer. */
    flight_leave(&l[4].w);
    ok(up.x[3].cancelled, "the last leg leaving cancels the transfer");
    flight_leave(&again.w);
    ok(up.x[5].cancelled, "and again");

    /* Equal requests over different connection profiles (client certificates, verification)
     * may be answered differently: they never share. */
    struct config_tls tls_a = {.id = "tls-a"}, tls_b = {.id = "tls-b"};
    struct upstream_req pa = req("http://u/z", NULL, "pa"), pb = pa;
    pa.tls = &tls_a;
    pb.tls = &tls_b;
    struct leg la = {0}, lb = {0};
    ok(flight_join(g, &la.w, true, &pa, on_done, &la, &joined) == 0 && !joined &&
           flight_join(g, &lb.w, true, &pb, on_done, &lb, &joined) == 0 && !joined &&
           flights_count(g) == 2,
       "another connection profile: a flight of its own");
    flight_leave(&la.w);
    flight_leave(&lb.w);

    /* A start that fails leaves nothing behind. */
    up.fail_start = true;
    struct leg failed = {0};
    ok(flight_join(g, &failed.w, true, &a1, on_done, &failed, &joined) == -ENOMEM &&
           flights_count(g) == 0,
       "a failed start: -ENOMEM and no flight");

    ok(fake_running(&up) == 0 && flights_count(g) == 0, "nothing left running");
    flights_destroy(g);
    for (size_t i = 0; i < 6; i++)
        free(l[i].body);
    free(again.body);
    return tap_done();
}
