#!/usr/bin/env python3
"""Upstream connections are kept alive and reused across requests; client connections are
kept alive too."""

import http.client
import json
import os
import socket
import threading
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, read_response, read_responses, \
    stop_checked


class KeepAliveTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd_cfg = config(
            endpoint("/three", [
                ("a", u("/ok?id=a")),
                ("b", u("/ok?id=b")),
                ("c", u("/ok?id=c")),
            ], timeout_ms=10000),
            endpoint("/stale", [
                ("a", u("/ok?id=a&close_after=1")),
                ("b", u("/ok?id=b&close_after=1")),
            ], timeout_ms=10000),
            endpoint("/slow", [("s", u("/ok?id=slow&delay_ms=300"))], timeout_ms=10000),
            endpoint("/raced", [("r", u("/ok?id=r&reset_next=1"))], timeout_ms=10000),
            endpoint("/cycle", [("c", u("/cycle?sizes=100,6000,300,40000,20"))],
                     timeout_ms=10000),
            # 40 legs to one origin at once: more than one shard of its pool (16 connections).
            endpoint("/wide", [(f"w{i}", u(f"/ok?id=w{i}&delay_ms=50")) for i in range(40)],
                     timeout_ms=10000),
        )
        # Upstream pools are per worker, and these tests count one pool's connections.
        cls.gd = Gatherd(cls.gd_cfg, workers=1)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def test_upstream_connections_reused(self):
        self.up.reset()
        for _ in range(30):
            status, _, body = http_get(self.gd.url("/three"))
            self.assertEqual(status, 200, body)
            self.assertEqual(json.loads(body)["errors"], [])
        st = self.up.wait("requests", 90)
        self.assertEqual(st["requests"], 90, st)
        self.assertLessEqual(st["connections_opened"], 6,
                             f"upstream connections not reused: {st}")

    def test_wide_fanout_to_one_origin_reuses_connections(self):
        # A pool runs its transfers over shards of at most 16 connections (upstream_pool.c),
        # filled in order: rounds of 40 and then 80 legs at once to one origin open about as
        # many connections as run at once, once, and reuse them in every later round.
        def rounds(clients, n):
            errors = []

            def client():
                for _ in range(n):
                    status, _, body = http_get(self.gd.url("/wide"))
                    doc = json.loads(body)
                    if status != 200 or doc["errors"] or len(doc["results"]) != 40:
                        errors.append((status, body[:200]))
            ts = [threading.Thread(target=client) for _ in range(clients)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            self.assertEqual(errors, [])

        self.up.reset()
        rounds(1, 8)
        st = self.up.wait("requests", 320)
        self.assertLessEqual(st["connections_opened"], 48, f"connections not reused: {st}")
        self.up.reset()
        rounds(2, 8)
        st = self.up.wait("requests", 640)
        # The first 40 connections are idle and reused; the second client's 40 are new, once.
        self.assertLessEqual(st["connections_opened"], 56, f"connections not reused: {st}")

    def test_stale_pooled_connections(self):
        # fakeup closes each upstream connection right after answering, without saying so:
        # gatherd must not fail a request by reusing a dead pooled connection.
        for i in range(20):
            status, _, body = http_get(self.gd.url("/stale"))
            self.assertEqual(status, 200, f"request {i}: {body!r}")
            self.assertEqual(json.loads(body)["errors"], [], f"request {i}")

    def test_idle_connection_closed_by_upstream_costs_nothing(self):
        # An idle pooled connection stays registered with the loop (upstream_sock.c parks it): when
        # the upstream closes it, the socket becomes readable for good. The loop must stop
        # watching it rather than wake up for it again and again.
        for i in range(5):
            status, _, body = http_get(self.gd.url("/stale"))
            self.assertEqual(status, 200, f"request {i}: {body!r}")
        self.up.wait_le("connections_active", 0)
        with open(f"/proc/{self.gd.proc.pid}/stat") as f:
            before = f.read().rsplit(")", 1)[1].split()
        t0 = time.monotonic()
        time.sleep(1.0)  # measuring idleness: nothing to await
        with open(f"/proc/{self.gd.proc.pid}/stat") as f:
            after = f.read().rsplit(")", 1)[1].split()
        wall = time.monotonic() - t0
        # utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
        ticks = sum(int(after[i]) - int(before[i]) for i in (11, 12))
        cpu = ticks / os.sysconf("SC_CLK_TCK")
        self.assertLess(cpu, 0.3 * wall, f"gatherd busy while idle: {cpu:.2f}s CPU in {wall:.2f}s")
        status, _, body = http_get(self.gd.url("/stale"))
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["errors"], [])

    def test_answers_outgrow_the_small_receive_buffer(self):
        # Handles are kept per receive-buffer size and a URL gets a small buffer until one of
        # its answers was larger (upstream.c): answers that grow and shrink on the same URL,
        # on reused handles and connections, arrive whole.
        sizes = [100, 6000, 300, 40000, 20]
        for i in range(3 * len(sizes)):
            status, _, body = http_get(self.gd.url("/cycle"))
            self.assertEqual(status, 200, body)
            doc = json.loads(body)
            self.assertEqual(doc["errors"], [], f"request {i}")
            got = doc["results"][0]
            self.assertEqual(len(got["pad"]), sizes[got["n"] % len(sizes)], f"request {i}")

    def test_reused_connection_reset_is_retried(self):
        # Deterministic form of the stale keep-alive race: every time gatherd reuses the pooled
        # connection, fakeup resets it before answering (as a server that closed it an instant
        # earlier would).  An idempotent GET that got no byte back is retried on a fresh
        # connection (RFC 9112 9.3.1; libcurl does it), however many times it happens over the
        # life of the process.
        before = self.up.stats()["reset_next"]
        for i in range(30):
            status, _, body = http_get(self.gd.url("/raced"))
            self.assertEqual(status, 200, f"request {i}: {body!r}")
            self.assertEqual(json.loads(body)["errors"], [], f"request {i}")
        self.assertGreaterEqual(self.up.stats()["reset_next"] - before, 20,
                                "the race was not exercised: connections were not reused")

    def test_pipelined_requests_answered_in_order(self):
        s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
        try:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-1\r\n\r\n"
                      b"GET /three HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-2\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-3\r\n\r\n")
            got = [(status, headers.get("x-request-id"))
                   for status, headers, _ in read_responses(s, 3, timeout=15)]
            self.assertEqual(got, [(200, "pipe-1"), (200, "pipe-2"), (200, "pipe-3")])
        finally:
            s.close()

    def test_http10_client(self):
        for req, closes in [(b"GET /three HTTP/1.0\r\n\r\n", True),
                            (b"GET /three HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False)]:
            with self.subTest(req=req):
                s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
                try:
                    s.sendall(req)
                    [(status, headers, body)] = read_responses(s, 1)
                    self.assertEqual(status, 200, body)
                    self.assertEqual(json.loads(body)["errors"], [])
                    if closes:
                        s.settimeout(10)
                        self.assertEqual(s.recv(10), b"", "HTTP/1.0 without keep-alive")
                finally:
                    s.close()

    def test_client_keepalive(self):
        c = http.client.HTTPConnection("127.0.0.1", self.gd.port, timeout=10)
        try:
            sock = None
            for path in ["/three", "/healthz", "/three", "/nope", "/three"]:
                c.request("GET", path)
                r = c.getresponse()
                body = r.read()
                self.assertIn(r.status, (200, 404), body)
                self.assertNotEqual((r.getheader("connection") or "").lower(), "close")
                # Same socket every time: http.client would silently reconnect otherwise.
                sock = sock or c.sock
                self.assertIs(c.sock, sock)
        finally:
            c.close()

    def test_idle_client_connection_closed(self):
        with Gatherd(config(*self.gd_cfg["endpoints"], idle_timeout_ms=500)) as g:
            s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                self.assertIn(b" 200 ", read_response(s)[:20])
                t0 = time.monotonic()
                s.settimeout(10)
                try:
                    data = s.recv(100)
                except ConnectionResetError:
                    data = b""
                elapsed = time.monotonic() - t0
                self.assertEqual(data, b"", "expected the server to close the idle connection")
                self.assertGreater(elapsed, 0.3)
                self.assertLess(elapsed, 5.0)
            finally:
                s.close()


if __name__ == "__main__":
    unittest.main()
