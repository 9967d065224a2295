#!/usr/bin/env python3
"""Background refresh ("refresh_ms"): one upstream call per interval per backend whatever the
load and the number of workers, /readyz warming until every refreshed endpoint has finished its
first fan-out, reloads adding and removing refreshers, a drain with a refresh in flight, the
refresh metrics, and the configuration rules. Calls are counted at the upstream (fakeup)."""

import concurrent.futures
import http.client
import json
import signal
import threading
import time
import unittest

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get, run_check_config, stop_checked






def readyz(g):
    st, _, body = http_get(g.url("/readyz"))
    return st, json.loads(body)


class RefreshLoadTest(unittest.TestCase):
    def test_one_call_per_interval_under_load(self):
        """64 clients on a refreshed endpoint, two workers: the upstream sees one call per
        backend per interval, and every client is answered from memory."""
        with FakeUpstream() as up:
            u = up.url
            g = Gatherd(config(endpoint("/r", [("a", u("/switch?key=la")),
                                               ("b", u("/switch?key=lb"))],
                                        cache={"ttl_ms": 10000}, refresh_ms=500)), workers=2)
            try:
                gd.wait_until(lambda: readyz(g)[0] == 200, 10, "ready")
                stop = time.monotonic() + 3.0
                statuses = []
                lock = threading.Lock()

                def client(_):
                    c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=30)
                    seen = []
                    while time.monotonic() < stop:
                        c.request("GET", "/r")
                        r = c.getresponse()
                        r.read()
                        seen.append((r.status, r.getheader("Cache-Status", "")))
                    c.close()
                    with lock:
                        statuses.extend(seen)
                t0 = time.monotonic()
                with concurrent.futures.ThreadPoolExecutor(64) as ex:
                    list(ex.map(client, range(64)))
                elapsed = time.monotonic() - t0
                self.assertGreater(len(statuses), 64)
                self.assertEqual({s for s, _ in statuses}, {200})
                self.assertTrue(all(cs.startswith("gatherd; hit") for _, cs in statuses),
                                {cs for _, cs in statuses})
                for key in ("la", "lb"):
                    log = up.switch_calls(key)
                    # One at start-up, then one per 500 ms: never more, whatever the load.
                    self.assertLessEqual(len(log), 1 + int((elapsed + 1.5) / 0.5) + 1, log)
                    ts = [e["t"] for e in log]
                    gaps = [b - a for a, b in zip(ts, ts[1:])]
                    # Start to start, as seen at the upstream: a loop busy with 64 clients
                    # on 2 shared cores can delay one arrival by 100 ms and shorten the next
                    # gap as much; calls made per request would be milliseconds apart.
                    self.assertTrue(all(gap > 0.25 for gap in gaps), gaps)
                    # Never two at once: each call of a backend ends before the next begins.
                    self.assertTrue(all(b["t"] >= a["end"] for a, b in zip(log, log[1:])
                                        if a["end"] is not None), log)
                exp = gd.scrape(g)
                self.assertGreaterEqual(exp.get("gatherd_refreshes_total", endpoint="/r",
                                                outcome="complete"), 4)
                self.assertLess(exp.get("gatherd_refresh_age_seconds", endpoint="/r"), 2.0)
                self.assertEqual(exp.get("gatherd_cache_lookups_total", endpoint="/r",
                                         result="miss"), 0)
            finally:
                stop_checked(g)


class RefreshTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()

    def test_readyz_warming(self):
        u = self.up.url
        self.up.switch("wf", 503)
        g = Gatherd(config(
            endpoint("/slow", [("a", u("/switch?key=ws&delay_ms=1500"))],
                     cache={"ttl_ms": 10000}, refresh_ms=60000, timeout_ms=5000),
            endpoint("/fails", [("a", u("/switch?key=wf"))], cache={"ttl_ms": 10000},
                     refresh_ms=60000),
            endpoint("/hangs", [("a", u("/hang"))], cache={"ttl_ms": 10000}, refresh_ms=60000,
                     timeout_ms=1000),
        ), workers=2)
        try:
            self.assertEqual(readyz(g), (503, {"status": "warming"}))
            self.assertEqual(http_get(g.url("/healthz"))[0], 200)
            # The slow one's first fan-out ends after 1.5 s; the failing one and the one cut off
            # at its 1 s deadline count as finished too.
            gd.wait_until(lambda: readyz(g)[0] == 200, 10, "ready")
            self.assertGreaterEqual(len(self.up.switch_calls("ws")), 1)
            self.assertEqual(readyz(g), (200, {"status": "ready"}))
            exp = gd.scrape(g)
            self.assertEqual(exp.get("gatherd_refreshes_total", endpoint="/fails",
                                     outcome="failed"), 1)
            self.assertEqual(exp.get("gatherd_refreshes_total", endpoint="/hangs",
                                     outcome="failed"), 1)
            self.assertEqual(exp.get("gatherd_refreshes_total", endpoint="/slow",
                                     outcome="complete"), 1)
            self.assertIsNone(exp.get("gatherd_refresh_age_seconds", endpoint="/fails"))
        finally:
            self.up.switch("wf", 200)
            stop_checked(g)

    def test_partial_not_stored(self):
        u = self.up.url
        self.up.switch("pb", 503)
        g = Gatherd(config(endpoint("/p", [("a", u("/switch?key=pa")),
                                           ("b", u("/switch?key=pb"))],
                                    cache={"ttl_ms": 10000}, refresh_ms=300)), workers=1)
        try:
            gd.wait_until(lambda: (gd.scrape(g).get("gatherd_refreshes_total", endpoint="/p",
                                                    outcome="partial") or 0) >= 2, 10,
                          "partial refreshes")
            st, h, _ = http_get(g.url("/p"))
            self.assertEqual(st, 200)
            self.assertEqual(h["cache-status"], "gatherd; fwd=miss")
            self.up.switch("pb", 200)
            gd.wait_until(lambda: http_get(g.url("/p"))[1]["cache-status"].startswith(
                "gatherd; hit"), 10, "a complete refresh stored")
        finally:
            self.up.switch("pb", 200)
            stop_checked(g)

    def test_reload_adds_and_removes(self):
        u = self.up.url
        a = endpoint("/a", [("a", u("/switch?key=ha"))], cache={"ttl_ms": 10000})
        b = endpoint("/b", [("b", u("/switch?key=hb"))], cache={"ttl_ms": 10000})
        g = Gatherd(config(dict(a, refresh_ms=300), b), workers=2)
        try:
            gd.wait_until(lambda: len(self.up.switch_calls("ha")) >= 2, 10, "/a refreshing")
            self.assertEqual(self.up.switch_calls("hb"), [])
            g.write_config(config(a, dict(b, refresh_ms=300)))
            g.signal(signal.SIGHUP)
            g.wait_log("reloaded")
            t = time.monotonic()
            gd.wait_until(lambda: len(self.up.switch_calls("hb")) >= 3, 10, "/b refreshing")
            # /a's refresher is gone: at most the one running at the reload ends after it.
            late = [e for e in self.up.switch_calls("ha") if e["t"] > t + 0.1]
            self.assertEqual(late, [])
            exp = gd.scrape(g)
            self.assertIsNone(exp.get("gatherd_refresh_age_seconds", endpoint="/a"),
                              "an endpoint no longer refreshed has no age to alert on")
            self.assertIsNotNone(exp.get("gatherd_refresh_age_seconds", endpoint="/b"))
            # An interval change takes effect without a restart.
            g.write_config(config(a, dict(b, refresh_ms=1500)))
            g.signal(signal.SIGHUP)
            gd.wait_until(lambda: len([l for l in g.log_lines()
                                       if l.get("msg") == "reloaded"]) == 2, 10, "reloaded")
            t = time.monotonic()
            time.sleep(2.0)  # the subject is the interval itself
            recent = [e for e in self.up.switch_calls("hb") if e["t"] > t]
            self.assertLessEqual(len(recent), 2, recent)
            self.assertGreaterEqual(len(recent), 1, recent)
        finally:
            stop_checked(g)

    def test_sigterm_with_refresh_in_flight(self):
        u = self.up.url
        g = Gatherd(config(endpoint("/t", [("a", u("/switch?key=tt&delay_ms=5000"))],
                                    cache={"ttl_ms": 10000}, refresh_ms=200, timeout_ms=10000),
                           drain_timeout_ms=1000), workers=2)
        try:
            gd.wait_until(lambda: len(self.up.switch_calls("tt")) >= 1, 10, "a refresh running")
            t0 = time.monotonic()
            g.signal(signal.SIGTERM)
            rc = g.wait_exit(timeout=15)
            self.assertEqual(rc, 0, g.stderr_text())
            self.assertLess(time.monotonic() - t0, 1.0 + 3.0)
            log = self.up.switch_calls("tt")
            self.assertEqual(len(log), 1, "no refresh starts after the drain began")
            gd.wait_until(lambda: self.up.switch_calls("tt")[0]["outcome"] == "aborted", 10,
                          "the refresh cut off")
        finally:
            g.kill()  # cleans up, exited or not

    def test_config_rules(self):
        base = {"path": "/x", "backends": [{"name": "a", "url": "http://127.0.0.1:1/x"}]}
        cases = [
            (dict(base, refresh_ms=1000), "endpoints[0].refresh_ms: requires \"cache\""),
            (dict(base, refresh_ms=50, cache={"ttl_ms": 1}), "endpoints[0].refresh_ms: must be"),
            (dict(base, path="/x/{id}", params={"id": "[a-z]+"}, refresh_ms=1000,
                  backends=[{"name": "a", "url": "http://127.0.0.1:1/{id}"}],
                  cache={"ttl_ms": 1}), "endpoints[0].refresh_ms: is not allowed"),
            (dict(base, each={"param": "ids"},
                  backends=[{"name": "a", "url": "http://127.0.0.1:1/{item}"}],
                  refresh_ms=1000, cache={"ttl_ms": 1}), "endpoints[0].refresh_ms: is not allowed"),
        ]
        for ep, want in cases:
            rc, _, err, _ = run_check_config({"endpoints": [ep]})
            self.assertEqual(rc, 2, err)
            self.assertIn(want, err)


if __name__ == "__main__":
    unittest.main()
