#!/usr/bin/env python3
"""The upstream connection pool: upstream_max_host_connections caps active connections per
worker and host (excess transfers queue, and the queueing counts against their timeout);
upstream_idle_connections caps the idle ones kept; connections that failed are not reused."""

import concurrent.futures
import json
import socket
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get


def parallel(n, fn):
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(lambda i: fn(i), range(n)))


class PoolCapTest(unittest.TestCase):
    def setUp(self):
        self.up = FakeUpstream()

    def tearDown(self):
        self.up.stop()

    def test_host_cap_queues(self):
        u = self.up.url
        with Gatherd(config(
            endpoint("/one", [("a", u("/ok?delay_ms=200"))], timeout_ms=20000),
            upstream_max_host_connections=2,
        ), workers=1) as g:
            got = parallel(10, lambda i: http_get(g.url("/one"), timeout=60))
            self.assertEqual([s for s, _, _ in got], [200] * 10)
            st = self.up.stats()
            self.assertEqual(st["requests"], 10)
            self.assertLessEqual(st["connections_opened"], 2, st)

    def test_queueing_counts_against_timeout(self):
        # One connection, requests of 400 ms each, a 1 s deadline: of 6 concurrent requests
        # the queue cannot serve all in time; the late ones fail as timeout, not hang.
        u = self.up.url
        with Gatherd(config(
            endpoint("/one", [("a", u("/ok?delay_ms=400"))], timeout_ms=1000),
            upstream_max_host_connections=1,
        ), workers=1) as g:
            got = parallel(6, lambda i: http_get(g.url("/one"), timeout=60))
            statuses = sorted(s for s, _, _ in got)
            self.assertIn(200, statuses)
            self.assertIn(502, statuses)
            for s, _, body in got:
                if s == 502:
                    self.assertEqual(json.loads(body)["errors"][0]["error"], "timeout")
            self.assertLessEqual(self.up.stats()["connections_opened"], 1 + statuses.count(502))

    def test_idle_cap(self):
        u = self.up.url
        with Gatherd(config(
            endpoint("/one", [("a", u("/ok?delay_ms=300"))], timeout_ms=20000),
            upstream_max_host_connections=0, upstream_idle_connections=1,
        ), workers=1) as g:
            got = parallel(8, lambda i: http_get(g.url("/one"), timeout=60))
            self.assertEqual([s for s, _, _ in got], [200] * 8)
            self.assertEqual(self.up.stats()["connections_opened"], 8)
            # Only one idle connection is kept afterwards.
            self.up.wait_le("connections_active", 1, timeout=10)

    def test_cancel_while_queued_frees_nothing_twice(self):
        # One connection per host.  A occupies it on /hang, B queues behind it; both clients
        # leave.  The slot must come back: C is then served normally.  B also has a backend on
        # a second upstream (another host:port), which shows when gatherd has B's request.
        u = self.up.url
        with FakeUpstream() as up2, Gatherd(config(
            endpoint("/hang", [("h", u("/hang"))], timeout_ms=60000),
            endpoint("/hang2", [("seen", up2.url("/hang")), ("h", u("/hang"))],
                     timeout_ms=60000),
            endpoint("/ok", [("o", u("/ok"))], timeout_ms=10000),
            upstream_max_host_connections=1,
        ), workers=1) as g:
            a = socket.create_connection(("127.0.0.1", g.port), timeout=10)
            a.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\nX-Request-Id: qa\r\n\r\n")
            self.up.wait("requests", 1)
            b = socket.create_connection(("127.0.0.1", g.port), timeout=10)
            b.sendall(b"GET /hang2 HTTP/1.1\r\nHost: t\r\nX-Request-Id: qb\r\n\r\n")
            up2.wait("requests", 1)
            # B's second backend is queued behind A.  Leave with B first, then A.
            b.close()
            up2.wait("aborted", 1)
            self.assertEqual(g.wait_access_id("qb")["status"], 499)
            a.close()
            self.assertEqual(g.wait_access_id("qa")["status"], 499)
            self.up.wait("aborted", 1)
            for _ in range(3):
                s, _, body = http_get(g.url("/ok"), timeout=10)
                self.assertEqual(s, 200, body)
            self.assertEqual(self.up.stats()["paths"].get("/hang"), 1, "B must never start")

    def test_failed_connection_not_reused(self):
        u = self.up.url
        with Gatherd(config(
            endpoint("/reset", [("a", u("/reset_mid"))], timeout_ms=10000),
            endpoint("/ok", [("a", u("/ok"))], timeout_ms=10000),
        ), workers=1) as g:
            for _ in range(3):
                s, _, body = http_get(g.url("/reset"))
                self.assertEqual(s, 502)
                self.assertEqual(json.loads(body)["errors"][0]["error"], "transfer")
                s, _, body = http_get(g.url("/ok"))
                self.assertEqual(s, 200, body)


if __name__ == "__main__":
    unittest.main()
