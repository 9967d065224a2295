#!/usr/bin/env python3
"""Upstream connections are kept alive and reused across requests; client connections are
kept alive too."""

import http.client
import json
import socket
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, read_response


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
        )
        cls.gd = Gatherd(cls.gd_cfg)

    @classmethod
    def tearDownClass(cls):
        try:
            rc = cls.gd.stop()
            assert rc == 0, f"gatherd exit {rc}: {cls.gd.stderr_text()}"
        finally:
            cls.up.stop()

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
