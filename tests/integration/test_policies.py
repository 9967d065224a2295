#!/usr/bin/env python3
"""Aggregation policies (issue 11) against real fakeup upstreams: `on_error: fail_fast` and
`required` backends end a request at its first (required) failure with 502, cancel what still
runs or waits (the upstream sees the connections close) and keep the join's shape; at the
endpoint deadline unfinished backends are `timeout`, not `cancelled`; `concurrency` caps the
calls one request has in flight and starts the rest in configuration order as slots free, which
fakeup's own arrival times show; waiting for a slot counts against the deadline; a client that
leaves cancels everything under every policy.  Metrics: `cancelled` in
gatherd_upstream_errors_total, gatherd_upstream_slot_wait_seconds per call started."""

import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, scrape
from gdcase import HEALTHY_PATH, ConfigCase, UpstreamCase, ok_body

WAVE_MS = 500          # each call of /waves takes this long upstream
WAVES, SLOTS = 4, 5    # 20 backends at concurrency 5
FAR = 20000            # ms: a delay no test waits for; its transfer must be cut off


class PoliciesTest(UpstreamCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            # fail_fast: "done" answers first, "bad" fails next, the other two are cut off.
            endpoint("/ff", [("done", u("/ok?id=done")),
                             ("bad", u("/status/503?delay_ms=500")),
                             ("hang", u("/hang")),
                             ("slow", u(f"/ok?id=slow&delay_ms={FAR}"))],
                     timeout_ms=30000, on_error="fail_fast"),
            endpoint("/ff-ok", [("a", u("/ok?id=a")), ("b", u("/ok?id=b&delay_ms=50"))],
                     timeout_ms=10000, on_error="fail_fast"),
            # partial: the optional failure stays isolated, the required one ends the request.
            endpoint("/required", [("opt", u("/status/500")),
                                   ("req", u("/status/503?delay_ms=500"), {"required": True}),
                                   ("slow", u(f"/ok?id=slow&delay_ms={FAR}")),
                                   ("fast", u("/ok?id=fast"))],
                     timeout_ms=30000, on_error="partial"),
            endpoint("/required-ok", [("req", u("/ok?id=req"), {"required": True}),
                                      ("opt", u("/status/503")),
                                      ("opt2", u("/ok?id=opt2"), {"required": False})],
                     timeout_ms=10000),
            endpoint("/required-timeout", [("req", u("/hang"),
                                            {"required": True, "timeout_ms": 300}),
                                           ("slow", u(f"/ok?id=slow&delay_ms={FAR}"))],
                     timeout_ms=30000),
            # Deadlines.
            endpoint("/ff-deadline", [("ok", u("/ok?id=ok")), ("hang", u("/hang")),
                                      ("slow", u(f"/ok?id=slow&delay_ms={FAR}"))],
                     timeout_ms=800, on_error="fail_fast"),
            endpoint("/required-deadline", [("ok", u("/ok?id=ok")),
                                            ("req", u("/hang"), {"required": True})],
                     timeout_ms=800),
            endpoint("/partial-deadline", [("ok", u("/ok?id=ok")), ("hang", u("/hang"))],
                     timeout_ms=800),
            # concurrency.
            endpoint("/waves", [(f"b{i:02}", u(f"/ok?id=b{i:02}&delay_ms={WAVE_MS}"))
                                for i in range(WAVES * SLOTS)],
                     timeout_ms=30000, concurrency=SLOTS),
            endpoint("/slots-deadline", [("first", u("/ok?id=first")), ("stuck", u("/hang")),
                                         ("q1", u("/ok?id=q1")), ("q2", u("/ok?id=q2"))],
                     timeout_ms=800, concurrency=1),
            endpoint("/ff-queued", [("bad", u("/status/503?delay_ms=300")),
                                    ("hang", u("/hang")),
                                    ("q1", u("/ok?id=q1")), ("q2", u("/ok?id=q2"))],
                     timeout_ms=30000, concurrency=2, on_error="fail_fast"),
            # Clients that leave.
            endpoint("/leave-partial", [("h1", u("/hang")), ("s", u(f"/ok?delay_ms={FAR}"))],
                     timeout_ms=60000),
            endpoint("/leave-ff", [("h1", u("/hang")), ("s", u(f"/ok?delay_ms={FAR}"))],
                     timeout_ms=60000, on_error="fail_fast"),
            endpoint("/leave-conc", [("h1", u("/hang")), ("h2", u("/hang")),
                                     ("q1", u("/ok?id=q1")), ("q2", u("/ok?id=q2"))],
                     timeout_ms=60000, concurrency=2),
            endpoint(HEALTHY_PATH, [("f", u("/ok?id=f"))], timeout_ms=10000),
        ))

    # helpers ---------------------------------------------------------------------------------

    def assert_errors(self, doc, want):
        """want: [(index, name, error)] in order; every entry has a message, and `status`
        exactly when it is an http_status error."""
        got = [(e.get("index"), e.get("name"), e.get("error")) for e in doc["errors"]]
        self.assertEqual(got, want, doc)
        for e in doc["errors"]:
            self.assertIsInstance(e.get("message"), str, e)
            self.assertTrue(e["message"], e)
            self.assertEqual("status" in e, e["error"] == "http_status", e)
            self.assertNotIn("item", e, "a non-each endpoint's entries carry index, not item")

    def errors_total(self, exp, path, backend, kind):
        return exp.get("gatherd_upstream_errors_total", endpoint=path, backend=backend,
                       kind=kind)

    def slot_wait(self, exp, path, backend):
        """(sum, count) of gatherd_upstream_slot_wait_seconds{path, backend}, (0, 0) if none."""
        s = exp.get("gatherd_upstream_slot_wait_seconds_sum", endpoint=path, backend=backend)
        c = exp.get("gatherd_upstream_slot_wait_seconds_count", endpoint=path, backend=backend)
        return (s or 0.0, c or 0.0)

    # fail_fast and required -------------------------------------------------------------------

    def test_fail_fast_ends_at_the_first_failure(self):
        before = scrape(self.gd)
        status, doc, elapsed = self.fetch("/ff", "ff-1")
        self.assertEqual(status, 502, doc)
        # "bad" fails after 500 ms; "slow" would take 20 s and "hang" forever.
        self.assertLess(elapsed, 5.0)
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertEqual(doc["results"], [ok_body("done"), {}, {}, {}])
        self.assert_errors(doc, [(1, "bad", "http_status"), (2, "hang", "cancelled"),
                                 (3, "slow", "cancelled")])
        self.assertEqual(doc["errors"][0]["status"], 503)
        # The upstream sees both cut-off transfers' connections close, promptly.
        self.up.wait("aborted", 2, timeout=5)
        outcomes = {e["target"]: e["outcome"] for e in self.requests_of("ff-1")}
        self.assertEqual(outcomes, {"/ok?id=done": "responded",
                                    "/status/503?delay_ms=500": "responded",
                                    "/hang": "aborted",
                                    f"/ok?id=slow&delay_ms={FAR}": "aborted"})
        line = self.access("ff-1")
        self.assertEqual(line["status"], 502)
        self.assertEqual([(b["name"], b["result"]) for b in line["backends"]],
                         [("done", "ok"), ("bad", "http_status"), ("hang", "cancelled"),
                          ("slow", "cancelled")])
        # Calls cut off by an early end are counted as kind "cancelled".
        after = self.scrape_when(
            lambda e: (self.errors_total(e, "/ff", "slow", "cancelled") or 0)
            >= (self.errors_total(before, "/ff", "slow", "cancelled") or 0) + 1,
            "the cancelled calls to be counted")
        for backend, kind, n in (("hang", "cancelled", 1), ("slow", "cancelled", 1),
                                 ("bad", "http_status", 1), ("bad", "cancelled", 0),
                                 ("done", "cancelled", 0)):
            with self.subTest(backend=backend, kind=kind):
                self.assertIsNotNone(self.errors_total(after, "/ff", backend, kind),
                                     "series missing")
                self.assertEqual(self.errors_total(after, "/ff", backend, kind)
                                 - self.errors_total(before, "/ff", backend, kind), n)
        self.assert_healthy()

    def test_fail_fast_without_failures_is_the_plain_join(self):
        status, doc, _ = self.fetch("/ff-ok", "ff-ok")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc, {"results": [ok_body("a"), ok_body("b")], "errors": []})

    def test_a_failed_required_backend_ends_a_partial_request(self):
        status, doc, elapsed = self.fetch("/required", "req-1")
        self.assertEqual(status, 502, doc)
        self.assertLess(elapsed, 5.0)
        # "opt" failed at once without ending anything: "req" still ran to its own failure.
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertEqual(doc["results"], [{}, {}, {}, ok_body("fast")])
        self.assert_errors(doc, [(0, "opt", "http_status"), (1, "req", "http_status"),
                                 (2, "slow", "cancelled")])
        self.assertEqual([e["status"] for e in doc["errors"][:2]], [500, 503])
        self.up.wait("aborted", 1, timeout=5)
        slow = [e for e in self.requests_of("req-1") if e["target"].startswith("/ok?id=slow")]
        self.assertEqual([e["outcome"] for e in slow], ["aborted"])
        self.assertEqual(self.access("req-1")["status"], 502)

    def test_optional_failures_stay_isolated(self):
        status, doc, _ = self.fetch("/required-ok", "req-ok")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"], [ok_body("req"), {}, ok_body("opt2")])
        self.assert_errors(doc, [(1, "opt", "http_status")])

    def test_a_required_backend_timing_out_ends_the_request(self):
        status, doc, elapsed = self.fetch("/required-timeout", "req-to")
        self.assertEqual(status, 502, doc)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(doc["results"], [{}, {}])
        self.assert_errors(doc, [(0, "req", "timeout"), (1, "slow", "cancelled")])
        self.up.wait("aborted", 2, timeout=5)

    # deadlines --------------------------------------------------------------------------------

    def test_fail_fast_at_the_deadline_is_timeout_not_cancelled(self):
        status, doc, elapsed = self.fetch("/ff-deadline", "ffd")
        self.assertEqual(status, 502, doc)
        self.assertGreaterEqual(elapsed, 0.75)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(doc["results"], [ok_body("ok"), {}, {}])
        self.assert_errors(doc, [(1, "hang", "timeout"), (2, "slow", "timeout")])
        self.up.wait("aborted", 2, timeout=5)
        self.assertEqual([(b["name"], b["result"]) for b in self.access("ffd")["backends"]],
                         [("ok", "ok"), ("hang", "timeout"), ("slow", "timeout")])

    def test_partial_at_the_deadline_is_as_before(self):
        status, doc, _ = self.fetch("/partial-deadline", "pd")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["results"], [ok_body("ok"), {}])
        self.assert_errors(doc, [(1, "hang", "timeout")])

    def test_a_required_backend_unfinished_at_the_deadline_is_502(self):
        status, doc, _ = self.fetch("/required-deadline", "rd")
        self.assertEqual(status, 502, doc)
        self.assertEqual(doc["results"], [ok_body("ok"), {}])
        self.assert_errors(doc, [(1, "req", "timeout")])

    # concurrency ------------------------------------------------------------------------------

    def test_waves_of_five(self):
        """20 backends of 0.5 s at concurrency 5: fakeup sees them start in four waves of five,
        in configuration order, never more than five at once; the answer takes about 2 s."""
        n = WAVES * SLOTS
        names = [f"b{i:02}" for i in range(n)]
        before = scrape(self.gd)
        status, doc, elapsed = self.fetch("/waves", "waves")
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc, {"results": [ok_body(b) for b in names], "errors": []})
        # Four sequential waves of 0.5 s: never less than 2.0 s; the upper margin is wide for
        # a machine shared with other builds (unlimited it would be 0.5 s, serial 10 s).
        self.assertGreaterEqual(elapsed, WAVES * WAVE_MS / 1000 - 0.02)
        self.assertLess(elapsed, 3.5)

        log = sorted(self.requests_of("waves"), key=lambda e: e["t"])
        self.assertEqual(len(log), n, log)
        ids = [e["target"].split("id=")[1].split("&")[0] for e in log]
        self.assertEqual(sorted(ids), names, "each backend called exactly once")
        # At most SLOTS in flight at the upstream at any arrival, and the limit was used.
        self.assertEqual(max(e["active"] for e in log), SLOTS, [e["active"] for e in log])
        # The k-th wave (in arrival order) is exactly backends 5k..5k+4: the rest start in
        # configuration order as slots free.
        for w in range(WAVES):
            with self.subTest(wave=w):
                self.assertEqual(sorted(ids[w * SLOTS:(w + 1) * SLOTS]),
                                 names[w * SLOTS:(w + 1) * SLOTS], ids)
        # A wave can only start once calls of the previous one ended, 0.5 s after they
        # started; and it starts promptly then (slots are not left idle).
        starts = [min(e["t"] for e in log[w * SLOTS:(w + 1) * SLOTS]) for w in range(WAVES)]
        for w in range(1, WAVES):
            with self.subTest(wave=w):
                gap = starts[w] - starts[w - 1]
                self.assertGreaterEqual(gap, WAVE_MS / 1000 - 0.01, starts)
                self.assertLess(gap, WAVE_MS / 1000 + 0.5, starts)
                ended = sorted(e["end"] for e in log[:w * SLOTS])
                for e in log[w * SLOTS:(w + 1) * SLOTS]:
                    # A call of wave w needs a free slot: at least (5w - 4) calls ended before.
                    self.assertGreaterEqual(sum(1 for t in ended if t <= e["t"]),
                                            w * SLOTS - SLOTS + 1, (e, ended))

        # The access line keeps one entry per backend (not an each endpoint).
        line = self.access("waves")
        self.assertEqual([(b["name"], b["result"]) for b in line["backends"]],
                         [(b, "ok") for b in names])

        # Every call's wait for a slot is observed when it starts: none for the first wave,
        # three waves (1.5 s) for the last.
        after = self.scrape_when(
            lambda e: self.slot_wait(e, "/waves", "b19")[1]
            >= self.slot_wait(before, "/waves", "b19")[1] + 1,
            "the slot waits of /waves to be observed")
        for i, b in enumerate(names):
            with self.subTest(backend=b):
                s0, c0 = self.slot_wait(before, "/waves", b)
                s1, c1 = self.slot_wait(after, "/waves", b)
                self.assertEqual(c1 - c0, 1)
                wave = i // SLOTS
                self.assertGreaterEqual(s1 - s0, wave * WAVE_MS / 1000 - 0.05)
                self.assertLess(s1 - s0, wave * WAVE_MS / 1000 + 0.5)

    def test_the_deadline_cuts_off_calls_waiting_for_a_slot(self):
        before = scrape(self.gd)
        status, doc, elapsed = self.fetch("/slots-deadline", "slots-dl")
        self.assertEqual(status, 200, doc)
        self.assertGreaterEqual(elapsed, 0.75)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(doc["results"], [ok_body("first"), {}, {}, {}])
        self.assert_errors(doc, [(1, "stuck", "timeout"), (2, "q1", "timeout"),
                                 (3, "q2", "timeout")])
        self.up.wait("aborted", 1, timeout=5)
        # The two that waited for the one slot never reached the upstream.
        self.assertEqual(sorted(e["target"] for e in self.requests_of("slots-dl")),
                         ["/hang", "/ok?id=first"])
        self.assertEqual([(b["name"], b["result"])
                          for b in self.access("slots-dl")["backends"]],
                         [("first", "ok"), ("stuck", "timeout"), ("q1", "timeout"),
                          ("q2", "timeout")])
        # A slot wait is observed when a call starts: for the two that did, not the others.
        after = self.scrape_when(
            lambda e: self.slot_wait(e, "/slots-deadline", "stuck")[1]
            >= self.slot_wait(before, "/slots-deadline", "stuck")[1] + 1,
            "the slot waits of /slots-deadline to be observed")
        for b, n in (("first", 1), ("stuck", 1), ("q1", 0), ("q2", 0)):
            with self.subTest(backend=b):
                self.assertEqual(self.slot_wait(after, "/slots-deadline", b)[1]
                                 - self.slot_wait(before, "/slots-deadline", b)[1], n)

    def test_an_early_end_cancels_calls_waiting_for_a_slot(self):
        status, doc, elapsed = self.fetch("/ff-queued", "ffq")
        self.assertEqual(status, 502, doc)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(doc["results"], [{}, {}, {}, {}])
        self.assert_errors(doc, [(0, "bad", "http_status"), (1, "hang", "cancelled"),
                                 (2, "q1", "cancelled"), (3, "q2", "cancelled")])
        self.up.wait("aborted", 1, timeout=5)
        self.assertEqual(self.access("ffq")["status"], 502)
        # The queued ones were never started, then or later.
        self.assert_healthy()
        self.assertEqual(sorted(e["target"] for e in self.requests_of("ffq")),
                         ["/hang", "/status/503?delay_ms=300"])

    # clients that leave -----------------------------------------------------------------------

    def leave_cancelled(self, path, rid, started, queued=()):
        """leave(), then: in the access line the running backends are `cancelled` and those
        in `queued` (waiting for a slot) `not_started`, and those were never requested."""
        line, log = self.leave(path, rid, started)
        self.assertEqual({b["name"]: b["result"] for b in line["backends"]},
                         {b["name"]: "not_started" if b["name"] in queued else "cancelled"
                          for b in line["backends"]}, line)
        self.assertEqual(len(line["backends"]), started + len(queued), line)
        self.assertFalse([e for e in log if any(f"id={q}" in e["target"] for q in queued)],
                         log)

    def test_client_leaves_partial(self):
        self.leave_cancelled("/leave-partial", "leave-p", 2)

    def test_client_leaves_fail_fast(self):
        self.leave_cancelled("/leave-ff", "leave-ff", 2)

    def test_client_leaves_while_calls_wait_for_slots(self):
        self.leave_cancelled("/leave-conc", "leave-c", 2, queued=("q1", "q2"))


def policy_config(ep=None, be=None):
    """A valid configuration; its endpoint and first backend get the keys in ep and be."""
    first = dict({"name": "a", "url": "http://127.0.0.1:9/a"}, **(be or {}))
    return config(endpoint("/p", [first, ("b", "http://127.0.0.1:9/b")], **(ep or {})))


class PolicyConfigTest(ConfigCase):
    def test_accepted(self):
        for ep, be in (({"on_error": "partial"}, None), ({"on_error": "fail_fast"}, None),
                       ({"concurrency": 1}, None), ({"concurrency": 1000}, None),
                       (None, {"required": True}), (None, {"required": False}),
                       ({"on_error": "fail_fast", "concurrency": 2}, {"required": True})):
            with self.subTest(endpoint=ep, backend=be):
                self.assert_accepted(policy_config(ep, be))

    def test_rejected(self):
        cases = [({"concurrency": v}, None, "endpoints[0].concurrency")
                 for v in (0, 1001, -1, "5", 2.5, True, None)]
        cases += [({"on_error": v}, None, "endpoints[0].on_error")
                  for v in ("maybe", "", "fail-fast", 1, None, ["partial"])]
        cases += [(None, {"required": v}, "endpoints[0].backends[0].required")
                  for v in ("yes", "true", 1, 0, None)]
        for ep, be, key in cases:
            with self.subTest(endpoint=ep, backend=be):
                self.assert_rejected(policy_config(ep, be), key)

    def test_a_bad_policy_stops_the_start(self):
        g = Gatherd(policy_config({"concurrency": 0}), wait_listening=False)
        self.assertEqual(g.wait_exit(15), 2)
        self.assertIn("endpoints[0].concurrency", g.stderr_text())
        g.stop()


if __name__ == "__main__":
    unittest.main()
