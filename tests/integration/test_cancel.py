#!/usr/bin/env python3
"""A client that leaves while its request is parked cancels the upstream transfers at once
(fakeup sees them aborted long before any timeout), gatherd stays healthy, and the access log
records status 499 with the backends `cancelled`."""

import json
import socket
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, stop_checked


class CancelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/hang", [("h", u("/hang"))], timeout_ms=60000),
            endpoint("/slow3", [
                ("a", u("/ok?delay_ms=10000")),
                ("b", u("/hang")),
                ("c", u("/ok?delay_ms=10000")),
            ], timeout_ms=60000),
            endpoint("/fast", [("ok", u("/ok"))], timeout_ms=10000),
            endpoint("/racy", [("a", u("/ok")), ("b", u("/ok?delay_ms=2")),
                               ("c", u("/ok?delay_ms=5"))], timeout_ms=10000),
            endpoint("/big", [("len", u("/huge_length?bytes=4000000")),
                              ("chunked", u("/huge_chunked?bytes=4000000"))], timeout_ms=30000),
            upstream_max_host_connections=1000,
        ))

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def setUp(self):
        self.up.reset()

    def send(self, path, rid):
        s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\n\r\n".encode())
        return s

    def assert_healthy(self):
        status, _, body = http_get(self.gd.url("/healthz"))
        self.assertEqual(status, 200)
        status, _, body = http_get(self.gd.url("/fast"))
        self.assertEqual(status, 200, body)

    def test_disconnect_cancels_one(self):
        s = self.send("/hang", "cancel-one")
        self.up.wait("requests", 1, timeout=10)
        t0 = time.monotonic()
        s.close()
        self.up.wait("aborted", 1, timeout=5)
        self.assertLess(time.monotonic() - t0, 5.0)
        line = self.gd.wait_access_id("cancel-one", timeout=10)
        self.assertEqual(line["status"], 499, line)
        self.assertEqual(line["path"], "/hang")
        self.assertEqual([(b["name"], b["result"]) for b in line["backends"]],
                         [("h", "cancelled")])
        self.assert_healthy()

    def test_disconnect_cancels_all_backends(self):
        s = self.send("/slow3", "cancel-three")
        self.up.wait("requests", 3, timeout=10)
        s.close()
        self.up.wait("aborted", 3, timeout=5)
        line = self.gd.wait_access_id("cancel-three", timeout=10)
        self.assertEqual(line["status"], 499, line)
        self.assertEqual([(b["name"], b["result"]) for b in line["backends"]],
                         [("a", "cancelled"), ("b", "cancelled"), ("c", "cancelled")])
        self.assert_healthy()

    def test_reset_by_client(self):
        s = self.send("/hang", "cancel-rst")
        self.up.wait("requests", 1, timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        self.up.wait("aborted", 1, timeout=5)
        self.assertEqual(self.gd.wait_access_id("cancel-rst")["status"], 499)
        self.assert_healthy()

    def test_many_disconnects(self):
        socks = [self.send("/slow3", f"cancel-many-{i}") for i in range(50)]
        self.up.wait("requests", 150, timeout=20)
        for s in socks:
            s.close()
        self.up.wait("aborted", 150, timeout=10)
        for i in range(50):
            self.assertEqual(self.gd.wait_access_id(f"cancel-many-{i}")["status"], 499)
        self.assert_healthy()
        # Nothing is left open upstream once everything was cancelled.
        st = self.up.stats()
        self.assertEqual(st["aborted"], 150, st)

    def test_close_races(self):
        # Clients that leave at every possible moment: right after sending, while the backends
        # complete, while the answer is written.  gatherd must neither crash nor leak (the
        # sanitizer build fails the exit status) and must keep serving.
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
            s.sendall(b"GET /racy HTTP/1.1\r\nHost: t\r\n\r\n")
            if i % 3 == 1:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        self.assert_healthy()
        status, _, body = http_get(self.gd.url("/racy"), headers={"X-Request-Id": "after-races"})
        self.assertEqual(status, 200, body)
        self.gd.wait_access_id("after-races")
        # A request whose client left before gatherd read it never reaches the handler and has
        # no access line; those that did are either answered or logged as 499.
        statuses = {l["status"] for l in self.gd.access_lines() if l.get("path") == "/racy"}
        self.assertLessEqual(statuses, {200, 499})

    def test_leave_while_reading_a_big_answer(self):
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertTrue(s.recv(1024).startswith(b"HTTP/1.1 200"))
            s.close()
        self.assert_healthy()
        status, _, body = http_get(self.gd.url("/big"), timeout=60)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), 8000000 + len('{"results":[,],"errors":[]}'))


if __name__ == "__main__":
    unittest.main()
