#!/usr/bin/env python3
"""SIGTERM/SIGINT drain: requests in flight are all answered, the listener is closed at once
(new connections refused), /readyz turns 503 on connections already open (which stay open, on
every worker, until nothing is in flight), and the process exits 0; after drain_timeout_ms
the remaining backends are cut off as `timeout` and those answers are still sent."""

import http.client
import json
import signal
import socket
import threading
import time
import unittest

from gd import FakeUpstream, Gatherd, config, connect_refused, endpoint, http_get, \
    parse_response, read_response

N = 40


class InFlight:
    """N requests on their own keep-alive (HTTP/1.1) connections, in threads."""

    def __init__(self, port, path, n, timeout=60):
        self.results = [None] * n
        self.threads = [threading.Thread(target=self._one, args=(i, port, path, timeout),
                                         daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _one(self, i, port, path, timeout):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            c.request("GET", path, headers={"X-Request-Id": f"drain-{i}"})
            r = c.getresponse()
            self.results[i] = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except Exception as e:  # recorded and asserted on by the test
            self.results[i] = e
        finally:
            c.close()

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t for t in self.threads if t.is_alive()]


class SignalTest(unittest.TestCase):
    def setUp(self):
        self.up = FakeUpstream()
        u = self.up.url
        self.cfg = config(
            endpoint("/slow", [
                ("a", u("/ok?id=a&delay_ms=3000")),
                ("b", u("/ok?id=b&delay_ms=3000")),
            ], timeout_ms=30000),
            endpoint("/forever", [
                ("a", u("/ok?id=a&delay_ms=30000")),
                ("b", u("/hang")),
            ], timeout_ms=60000),
            upstream_max_host_connections=1000,
            drain_timeout_ms=20000,
        )

    def tearDown(self):
        self.up.stop()

    def drain(self, sig):
        g = Gatherd(self.cfg)
        try:
            # A kept-alive idle connection opened before the signal.
            idle = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
            idle.request("GET", "/readyz")
            r = idle.getresponse()
            self.assertEqual((r.status, json.loads(r.read())), (200, {"status": "ready"}))

            flight = InFlight(g.port, "/slow", N)
            self.up.wait("requests", 2 * N, timeout=20)
            g.signal(sig)
            line = g.wait_log("draining", timeout=5)
            self.assertEqual(line.get("in_flight"), N, line)
            # The listener is closed at once, while requests are still in flight.
            self.assertTrue(connect_refused(g.port), "new connection accepted while draining")
            self.assertEqual(self.up.stats()["responses"], 0,
                             "the refusal check must happen while requests are in flight")
            # /readyz on a connection opened before stays open while requests are in flight
            # and answers 503 draining, with Connection: close.
            idle.request("GET", "/readyz")
            r = idle.getresponse()
            body = r.read()
            self.assertEqual(r.status, 503, body)
            self.assertEqual(json.loads(body), {"status": "draining"})
            self.assertEqual((r.getheader("connection") or "").lower(), "close")
            idle.close()

            left = flight.join(30)
            self.assertEqual(left, [], "requests still unanswered")
            for i, res in enumerate(flight.results):
                self.assertNotIsInstance(res, Exception, f"request {i}: {res!r}")
                status, headers, body = res
                self.assertEqual(status, 200, body)
                doc = json.loads(body)
                self.assertEqual(doc["errors"], [])
                self.assertEqual([r["id"] for r in doc["results"]], ["a", "b"])
                self.assertEqual(headers.get("connection", "").lower(), "close",
                                 "answers during a drain must carry Connection: close")
            self.assertEqual(g.wait_exit(30), 0, g.stderr_text())
            g.wait_log("stopped", timeout=1)
            for i in range(N):
                self.assertEqual(g.wait_access_id(f"drain-{i}", timeout=1)["status"], 200)
        finally:
            g.kill()

    def test_sigterm_drains(self):
        self.drain(signal.SIGTERM)

    def test_sigint_drains(self):
        self.drain(signal.SIGINT)

    def test_idle_connections_see_draining(self):
        # Connections opened before the signal stay open while anything is still in flight,
        # whichever worker holds them, and /readyz on them answers 503 with Connection: close.
        # With two workers, eight idle connections and one request in flight, some of the
        # idle ones are (almost surely) on the worker with nothing in flight.
        g = Gatherd(self.cfg, workers=2)
        try:
            readyz = b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"
            idle = [socket.create_connection(("127.0.0.1", g.port), timeout=10) for _ in range(8)]
            for c in idle:
                c.sendall(readyz)
                status, _, body = parse_response(read_response(c))
                self.assertEqual((status, body), (200, b'{"status":"ready"}'))
            holder = socket.create_connection(("127.0.0.1", g.port), timeout=10)
            holder.sendall(b"GET /forever HTTP/1.1\r\nHost: t\r\nX-Request-Id: held\r\n\r\n")
            self.up.wait("requests", 2, timeout=20)
            g.signal(signal.SIGTERM)
            self.assertEqual(g.wait_log("draining", timeout=5).get("in_flight"), 1)
            for i, c in enumerate(idle):
                c.sendall(readyz)
                status, headers, body = parse_response(read_response(c))
                self.assertEqual((status, body), (503, b'{"status":"draining"}'), i)
                self.assertEqual(headers.get("connection"), "close", i)
                self.assertEqual(c.recv(1), b"", f"connection {i} left open after close")
                c.close()
            self.assertTrue(g.alive())
            # The drain ends when the last request does: here its client leaves.
            holder.close()
            self.assertEqual(g.wait_access_id("held", timeout=10)["status"], 499)
            self.assertEqual(g.wait_exit(10), 0, g.stderr_text())
        finally:
            g.kill()

    def test_drain_limit_cuts_off(self):
        self.cfg["drain_timeout_ms"] = 500
        g = Gatherd(self.cfg)
        try:
            flight = InFlight(g.port, "/forever", 5)
            self.up.wait("requests", 10, timeout=20)
            t0 = time.monotonic()
            g.signal(signal.SIGTERM)
            g.wait_log("draining", timeout=5)
            self.assertEqual(flight.join(15), [])
            self.assertLess(time.monotonic() - t0, 10.0)
            for res in flight.results:
                self.assertNotIsInstance(res, Exception, repr(res))
                status, _, body = res
                self.assertEqual(status, 502, body)
                doc = json.loads(body)
                self.assertEqual(doc["results"], [{}, {}])
                self.assertEqual([e["error"] for e in doc["errors"]], ["timeout", "timeout"])
            self.assertEqual(g.wait_exit(15), 0, g.stderr_text())
            self.up.wait("aborted", 10, timeout=5)
        finally:
            g.kill()

    def test_idle_keepalive_does_not_delay_exit(self):
        g = Gatherd(self.cfg)
        try:
            c = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
            c.request("GET", "/healthz")
            self.assertEqual(c.getresponse().read(), b'{"status":"ok"}')
            t0 = time.monotonic()
            g.signal(signal.SIGTERM)
            # idle_timeout_ms is 30 s by default: the drain must not wait for it.
            self.assertEqual(g.wait_exit(10), 0, g.stderr_text())
            self.assertLess(time.monotonic() - t0, 5.0)
            c.close()
        finally:
            g.kill()

    def test_idle_exit(self):
        g = Gatherd(self.cfg)
        try:
            self.assertEqual(http_get(g.url("/healthz"))[0], 200)
            t0 = time.monotonic()
            g.signal(signal.SIGTERM)
            self.assertEqual(g.wait_exit(10), 0, g.stderr_text())
            self.assertLess(time.monotonic() - t0, 5.0, "an idle drain must be quick")
            self.assertEqual(g.wait_log("draining", timeout=1).get("in_flight"), 0)
            g.wait_log("stopped", timeout=1)
        finally:
            g.kill()


if __name__ == "__main__":
    unittest.main()
