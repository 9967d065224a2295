#!/usr/bin/env python3
"""A transfer queued behind upstream_max_host_connections keeps its own timeout_ms: it fails as
a timeout that says it waited for a connection when that time is up, whatever its place in the
queue and long before the endpoint's deadline; one that gets its turn first is answered."""

import json
import socket
import threading
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, scrape, wait_until


class QueueTimeoutTest(unittest.TestCase):
    def setUp(self):
        self.up = FakeUpstream()
        u = self.up.url
        # One connection per origin; /hang takes it. /long and /short queue behind it on the
        # same origin with backend timeouts far below their endpoints' 20 s deadline.
        self.gd = Gatherd(config(
            endpoint("/hang", [("h", u("/hang"))], timeout_ms=60000),
            endpoint("/long", [("l", u("/ok?id=long"), {"timeout_ms": 15000})], timeout_ms=20000),
            endpoint("/short", [("s", u("/ok?id=short"), {"timeout_ms": 400})], timeout_ms=20000),
            upstream_max_host_connections=1,
        ), workers=1)

    def tearDown(self):
        try:
            self.assertEqual(self.gd.stop(), 0, self.gd.stderr_text())
        finally:
            self.up.stop()

    def in_flight(self):
        """Requests in flight but the scrape itself."""
        return scrape(self.gd).get("gatherd_requests_in_flight") - 1

    def hold_connection(self):
        a = socket.create_connection(("127.0.0.1", self.gd.port), timeout=30)
        a.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\nX-Request-Id: holder\r\n\r\n")
        self.up.wait("path:/hang", 1)
        return a

    def test_queued_transfer_fails_at_its_own_timeout(self):
        a = self.hold_connection()
        got = {}

        def long_one():
            got["long"] = http_get(self.gd.url("/long"), timeout=60)

        t = threading.Thread(target=long_one)
        t.start()
        # /long queued first, with a longer timeout: /short, behind it, must not wait for it.
        wait_until(lambda: self.in_flight() >= 2, 10, "/long in flight")
        t0 = time.monotonic()
        status, _, body = http_get(self.gd.url("/short"), timeout=60)
        took = time.monotonic() - t0
        self.assertEqual(status, 502, body)
        err = json.loads(body)["errors"][0]
        self.assertEqual(err["error"], "timeout", err)
        self.assertIn("waiting for a connection", err["message"])
        self.assertGreaterEqual(took, 0.39)
        self.assertLess(took, 5, "it waited far beyond its 400 ms")
        line = self.gd.wait_access(lambda o: o.get("path") == "/short")
        self.assertEqual(line["backends"][0]["result"], "timeout", line)
        self.assertTrue(t.is_alive(), "/long still waits for the connection")
        # The connection frees: /long, still within its 15 s, gets its turn and is answered.
        a.close()
        t.join(30)
        self.assertEqual(got["long"][0], 200, got["long"])
        self.assertEqual(json.loads(got["long"][2])["results"], [{"ok": True, "id": "long"}])
        self.assertEqual(self.up.stats()["paths"].get("/ok"), 1, "/short never reached upstream")
        exp = scrape(self.gd)
        self.assertEqual(exp.get("gatherd_upstream_errors_total", endpoint="/short", backend="s",
                                 kind="timeout"), 1)

    def test_many_queued_time_out_together(self):
        # Twenty queued at once behind a held connection all fail at their 400 ms, not one
        # after the other.
        a = self.hold_connection()
        results = []

        def one():
            t0 = time.monotonic()
            s, _, b = http_get(self.gd.url("/short"), timeout=60)
            results.append((s, json.loads(b)["errors"][0]["error"], time.monotonic() - t0))

        ts = [threading.Thread(target=one) for _ in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        a.close()
        self.assertEqual(len(results), 20)
        for s, kind, took in results:
            self.assertEqual((s, kind), (502, "timeout"))
            self.assertLess(took, 5)


if __name__ == "__main__":
    unittest.main()
