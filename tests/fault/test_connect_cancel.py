#!/usr/bin/env python3
"""A client that leaves while its upstream connection is still being set up.

curl 7.88 closes a connect attempt it gives up on without gatherd's close callback, while
gatherd keeps idle upstream sockets registered with its loop (src/upstream/upstream_sock.c). The descriptor
of that attempt is soon reused by the next upstream connection: nothing of the abandoned
attempt may linger on the loop, requests on the reused descriptor must work, and the gauge of
open upstream connections must come back down.

A connect that never completes on loopback: a listening socket whose accept queue is full
drops further SYNs, so the client's connect() stays in progress.
"""

import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faultlib  # noqa: E402

import gd  # noqa: E402
from gd import FakeUpstream, Gatherd, config, endpoint  # noqa: E402
from faultlib import wait_until  # noqa: E402


class ConnectCancelTest(unittest.TestCase):
    def setUp(self):
        self.up = FakeUpstream()
        # A listener that never accepts, its queue filled by our own connections.
        self.full = socket.socket()
        self.full.bind(("127.0.0.1", 0))
        self.full.listen(0)
        port = self.full.getsockname()[1]
        self.fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            self.fillers.append(s)
        self.g = Gatherd(config(
            endpoint("/stuck", [("stuck", f"http://127.0.0.1:{port}/")], timeout_ms=20000),
            endpoint("/ok", [("a", self.up.url("/ok?id=a")), ("b", self.up.url("/ok?id=b"))],
                     timeout_ms=10000),
        ), workers=1)

    def tearDown(self):
        try:
            rc = self.g.stop()
            self.assertEqual(rc, 0, self.g.stderr_text())
        finally:
            for s in self.fillers + [self.full]:
                s.close()
            self.up.stop()

    def open_upstream(self):
        return faultlib.metric(self.g, "gatherd_upstream_connections_open")

    def test_cancel_during_connect(self):
        for round_ in range(5):
            c = socket.create_connection(("127.0.0.1", self.g.port), timeout=10)
            c.sendall(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
            wait_until(lambda: self.open_upstream() >= 1, 10, "the connect attempt")
            c.close()  # gatherd cancels the transfer, curl abandons the connect
            # The scrape itself is in flight.
            wait_until(lambda: faultlib.metric(self.g, "gatherd_requests_in_flight") == 1, 10,
                       "the cancelled request to end")
            # The next connections reuse the abandoned descriptor.
            for i in range(3):
                status, doc, _ = faultlib.join(self.g.url("/ok"))
                self.assertEqual(status, 200, f"round {round_} request {i}: {doc}")
                self.assertEqual(doc["errors"], [], f"round {round_} request {i}")
        # Two upstream connections to fakeup stay pooled; the abandoned attempts are closed.
        wait_until(lambda: self.open_upstream() <= 2, 10, "open upstream connections to settle")
        status, _, _ = gd.http_get(self.g.url("/healthz"))
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
