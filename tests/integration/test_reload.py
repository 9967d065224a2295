#!/usr/bin/env python3
"""SIGHUP re-reads --config: a valid file applies to new requests (in-flight ones finish under
the old one, nothing is dropped); an invalid one is logged as reload_failed and the old one
keeps serving."""

import concurrent.futures
import http.client
import json
import signal
import threading
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get


class ReloadTest(unittest.TestCase):
    def setUp(self):
        self.up = FakeUpstream()
        u = self.up.url
        self.v1 = config(
            endpoint("/a", [("one", u("/ok?id=v1&delay_ms=1500"))], timeout_ms=10000),
            endpoint("/fast", [("one", u("/ok?id=v1"))], timeout_ms=10000),
        )
        self.v2 = config(
            endpoint("/a", [("one", u("/ok?id=v2"))], timeout_ms=10000),
            endpoint("/fast", [("one", u("/ok?id=v2"))], timeout_ms=10000),
            endpoint("/b", [("x", u("/ok?id=b")), ("y", u("/ok?id=b2"))], timeout_ms=10000),
        )
        self.gd = Gatherd(self.v1)

    def tearDown(self):
        try:
            self.assertEqual(self.gd.stop(), 0, self.gd.stderr_text())
        finally:
            self.up.stop()

    def wait_nth_log(self, msg, n, timeout=10, g=None):
        seen = []
        (g or self.gd).wait_log(msg, timeout, pred=lambda o: seen.append(o) or len(seen) >= n)

    def ids(self, path):
        status, _, body = http_get(self.gd.url(path))
        return status, [r.get("id") for r in json.loads(body).get("results", [])] \
            if status in (200, 502) else body

    def test_reload_valid(self):
        self.assertEqual(self.ids("/fast"), (200, ["v1"]))
        self.assertEqual(http_get(self.gd.url("/b"))[0], 404)

        # A request in flight under v1 across the reload.
        got = {}

        def slow():
            c = http.client.HTTPConnection("127.0.0.1", self.gd.port, timeout=30)
            c.request("GET", "/a")
            r = c.getresponse()
            got["a"] = (r.status, json.loads(r.read()))
            c.close()

        t = threading.Thread(target=slow)
        t.start()
        self.up.wait("path:/ok", 2)

        self.gd.write_config(self.v2)
        self.gd.signal(signal.SIGHUP)
        line = self.gd.wait_log("reloaded", timeout=10)
        self.assertEqual(line.get("endpoints"), 3, line)
        self.assertEqual(self.ids("/fast"), (200, ["v2"]))
        self.assertEqual(self.ids("/b"), (200, ["b", "b2"]))
        t.join(30)
        self.assertEqual(got["a"][0], 200)
        self.assertEqual(got["a"][1]["results"], [{"ok": True, "id": "v1"}])

    def test_reloaded_means_every_worker_serves_it(self):
        # "reloaded" is logged once every worker has taken the new configuration: from then
        # on no connection, on whichever worker, is served under the old one.
        g = Gatherd(self.v1, workers=2)
        try:
            for round_ in range(5):
                new, old = (self.v2, "v1") if round_ % 2 == 0 else (self.v1, "v2")
                g.write_config(new)
                g.signal(signal.SIGHUP)
                self.wait_nth_log("reloaded", round_ + 1, g=g)
                with concurrent.futures.ThreadPoolExecutor(16) as ex:
                    got = list(ex.map(lambda _: http_get(g.url("/fast")), range(32)))
                served = {json.loads(body)["results"][0]["id"] for _, _, body in got}
                self.assertNotIn(old, served, f"round {round_}: old configuration served")
            workers = {l["worker"] for l in g.access_lines() if l.get("path") == "/fast"}
            self.assertEqual(workers, {0, 1}, "both workers must have served")
        finally:
            self.assertEqual(g.stop(), 0, g.stderr_text())

    def test_reload_invalid_keeps_old(self):
        self.gd.write_config('{"endpoints": [ this is not json')
        self.gd.signal(signal.SIGHUP)
        line = self.gd.wait_log("reload_failed", timeout=10)
        self.assertIsInstance(line.get("error"), str)
        self.assertEqual(self.ids("/fast"), (200, ["v1"]))

        bad = dict(self.v2, bogus_key=1)
        self.gd.write_config(bad)
        self.gd.signal(signal.SIGHUP)
        line = self.gd.wait_log("reload_failed", timeout=10,
                                pred=lambda o: "bogus_key" in o.get("error", ""))
        self.assertEqual(self.ids("/fast"), (200, ["v1"]))
        self.assertEqual(http_get(self.gd.url("/b"))[0], 404)

        # And a good one after the bad ones still applies.
        self.gd.write_config(self.v2)
        self.gd.signal(signal.SIGHUP)
        self.gd.wait_log("reloaded", timeout=10)
        self.assertEqual(self.ids("/fast"), (200, ["v2"]))

    def test_restart_needed_and_live_settings(self):
        # idle_timeout_ms cannot change without a restart: logged, the rest still applies.
        # access_log and trusted_proxies apply to new requests.
        v3 = dict(self.v2, idle_timeout_ms=12345, access_log=False)
        self.gd.write_config(v3)
        self.gd.signal(signal.SIGHUP)
        self.gd.wait_log("reloaded", timeout=10)
        line = self.gd.wait_log("restart_needed", timeout=5)
        self.assertEqual(line.get("level"), "warn", line)
        self.assertIn("idle_timeout_ms", json.dumps(line))
        self.assertEqual(self.ids("/b"), (200, ["b", "b2"]))
        http_get(self.gd.url("/healthz"), headers={"X-Request-Id": "silent-1"})

        v4 = dict(self.v2, access_log=True, trusted_proxies=["127.0.0.1"])
        self.gd.write_config(v4)
        self.gd.signal(signal.SIGHUP)
        self.wait_nth_log("reloaded", 2)
        http_get(self.gd.url("/healthz"), headers={"X-Request-Id": "loud-1",
                                                   "X-Forwarded-For": "198.51.100.7"})
        self.assertEqual(self.gd.wait_access_id("loud-1")["client"], "198.51.100.7")
        self.assertEqual([l for l in self.gd.access_lines()
                          if l.get("request_id") == "silent-1"], [])

    def test_reload_under_load_drops_nothing(self):
        stop = threading.Event()
        results = []

        def client():
            c = http.client.HTTPConnection("127.0.0.1", self.gd.port, timeout=30)
            try:
                while not stop.is_set():
                    c.request("GET", "/fast")
                    r = c.getresponse()
                    results.append((r.status, r.read()))
            except Exception as e:
                results.append((None, repr(e).encode()))
            finally:
                c.close()

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for i in range(6):
            self.up.wait("path:/ok", 50 * (i + 1), timeout=20)
            self.gd.write_config(self.v2 if i % 2 == 0 else self.v1)
            self.gd.signal(signal.SIGHUP)
            self.wait_nth_log("reloaded", i + 1)
        stop.set()
        for t in threads:
            t.join(30)
        bad = [r for r in results if r[0] != 200]
        self.assertEqual(bad, [], f"{len(bad)} of {len(results)} requests failed")
        ids = {json.loads(b)["results"][0]["id"] for _, b in results}
        self.assertEqual(ids, {"v1", "v2"})

    def test_restart_needed_for_workers(self):
        # Without --workers on the command line, a workers change in the file needs a restart.
        g = Gatherd(dict(self.v1, workers=1), workers=None)
        try:
            g.write_config(dict(self.v2, workers=2))
            g.signal(signal.SIGHUP)
            g.wait_log("reloaded", timeout=10)
            self.assertIn("workers", json.dumps(g.wait_log("restart_needed", timeout=5)))
        finally:
            self.assertEqual(g.stop(), 0)


if __name__ == "__main__":
    unittest.main()
