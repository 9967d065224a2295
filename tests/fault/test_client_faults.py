#!/usr/bin/env python3
"""Client faults: slow, broken, greedy or impatient clients never hurt other clients.

- slowloris: a few connections sending their headers one byte per 0.5 s while other clients
  are served promptly; a slow client that goes silent is closed at idle_timeout_ms;
- a client disconnecting at every stage (mid request line, mid headers, after the headers
  before the declared body, while parked on upstreams, while its answer is being written),
  with FIN and with RST: the connection is released, parked upstream transfers are aborted,
  the access log says 499 where the request reached the handler, and nothing else is affected;
- pipelining: three GETs in one write get three answers in order on the same connection;
- oversized request target (414, also far beyond libmicrohttpd's buffer) and headers (431 or
  closed); malformed request lines (400, or 505 for an unknown HTTP version); a request line
  with no target is closed at once and NUL bytes are closed within idle_timeout_ms (both
  documented libmicrohttpd 0.9.75 limits), while other clients are served meanwhile;
- HTTP/1.0 without keep-alive: answer, then close.
"""

import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faultlib  # noqa: E402

import gd  # noqa: E402
from gd import config, endpoint, http_get, parse_response, raw_request  # noqa: E402
from faultlib import (FaultTest, join, metric, recv_until_closed, short,  # noqa: E402
                      split_responses, wait_until)

RST = b"\x01\x00\x00\x00\x00\x00\x00\x00"   # struct linger {1, 0}
BIG = 30 * 10**6                           # bytes of the answer written to a leaving client


def connect(port, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def close(s, rst):
    if rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
    s.close()


class ClientFaultTest(FaultTest):
    @classmethod
    def make_config(cls, up):
        u = up.url
        return config(
            endpoint("/fast", [("a", u("/ok?id=a")), ("b", u("/ok?id=b"))], timeout_ms=10000),
            endpoint("/slow", [("s", u("/ok?id=slow&delay_ms=300"))], timeout_ms=10000),
            endpoint("/hang", [("h", u("/hang")), ("h2", u("/hang"))], timeout_ms=60000),
            endpoint("/big", [("big", u(f"/huge_length?bytes={BIG}"))], timeout_ms=30000,
                     max_body_bytes=BIG + 1000),
            # Short, so that connections that never form a request are closed quickly.
            idle_timeout_ms=1000,
        )

    def setUp(self):
        self.up.reset()

    def tearDown(self):
        self.assert_healthy()
        self.wait_connections(1)

    # helpers -------------------------------------------------------------------------------

    def open_connections(self):
        """gatherd's count of open client connections, including the one asking."""
        return metric(self.gd, "gatherd_http_connections_open")

    def wait_connections(self, n, timeout=10):
        wait_until(lambda: self.open_connections() == n, timeout,
                   f"gatherd_http_connections_open == {n}")

    def raw(self, data, timeout=10):
        try:
            return parse_response(raw_request(self.gd.port, data, timeout=timeout))
        except socket.timeout:
            self.fail(f"no answer and no close within {timeout}s for {data[:60]!r}")

    # disconnects at every stage ------------------------------------------------------------

    def leave_before_handler(self, data, rst):
        """Send a partial request, make sure gatherd holds the connection, leave; the
        connection is released, no upstream was asked, no access line was written (the
        request never reached the handler)."""
        s = connect(self.gd.port)
        s.sendall(data)
        self.wait_connections(2)
        close(s, rst)
        self.wait_connections(1)
        self.assertEqual(self.up.stats()["requests"], 0)
        # Access lines are written in order by one logger thread: once a later request's
        # line is out, a line for the abandoned one would be too.
        rid = f"sentinel-{time.monotonic_ns()}"
        http_get(self.gd.url("/healthz"), headers={"X-Request-Id": rid})
        self.gd.wait_access_id(rid)
        self.assertEqual([a for a in self.gd.access_lines()
                          if a.get("path", "").startswith("/leave")], [])

    def test_leave_mid_request_line(self):
        for rst in (False, True):
            with self.subTest(rst=rst):
                self.leave_before_handler(b"GET /leave-mid-li", rst)

    def test_leave_mid_headers(self):
        for rst in (False, True):
            with self.subTest(rst=rst):
                self.leave_before_handler(b"GET /leave-mid-headers HTTP/1.1\r\nHost: t\r\nX-P",
                                          rst)

    def test_leave_after_headers_before_body(self):
        for rst in (False, True):
            with self.subTest(rst=rst):
                rid = f"leave-body-{int(rst)}"
                s = connect(self.gd.port)
                s.sendall(f"GET /fast HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\n"
                          "Content-Length: 1000\r\n\r\nabc".encode())
                # The handler has seen the headers once the request is in flight.
                wait_until(lambda: metric(self.gd, "gatherd_requests_in_flight") == 2, 10,
                           "the request to reach the handler")
                close(s, rst)
                line = self.gd.wait_access_id(rid)
                self.assertEqual(line["status"], 499, line)
                self.wait_connections(1)
                # The body never arrived, so the fan-out never started.
                self.assertEqual(self.up.stats()["requests"], 0)

    def test_leave_while_parked(self):
        for rst in (False, True):
            with self.subTest(rst=rst):
                self.up.reset()
                rid = f"leave-parked-{int(rst)}"
                s = connect(self.gd.port)
                s.sendall(f"GET /hang HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\n\r\n"
                          .encode())
                self.up.wait("requests", 2, timeout=10)
                t0 = time.monotonic()
                close(s, rst)
                self.up.wait("aborted", 2, timeout=5)
                self.assertLess(time.monotonic() - t0, 5)
                line = self.gd.wait_access_id(rid)
                self.assertEqual(line["status"], 499, line)
                self.assertEqual([b["result"] for b in line["backends"]],
                                 ["cancelled", "cancelled"], line)
                self.wait_connections(1)
                self.up.wait_le("connections_active", 0, timeout=5)

    def test_leave_half_close_while_parked(self):
        # A half-close (shutdown SHUT_WR) counts as leaving, as nginx treats it.
        s = connect(self.gd.port)
        s.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\nX-Request-Id: leave-half\r\n\r\n")
        self.up.wait("requests", 2, timeout=10)
        s.shutdown(socket.SHUT_WR)
        self.up.wait("aborted", 2, timeout=5)
        self.assertEqual(self.gd.wait_access_id("leave-half")["status"], 499)
        s.close()

    def test_leave_while_answer_is_written(self):
        for rst in (False, True):
            with self.subTest(rst=rst):
                rid = f"leave-writing-{int(rst)}"
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(30)
                s.connect(("127.0.0.1", self.gd.port))
                s.sendall(f"GET /big HTTP/1.1\r\nHost: t\r\nX-Request-Id: {rid}\r\n\r\n"
                          .encode())
                # The status line arrived: gatherd is writing 30 MB we do not read.
                head = s.recv(64)
                self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
                close(s, rst)
                line = self.gd.wait_access_id(rid, timeout=10)
                # The contract leaves open whether a client that left mid-answer is logged
                # 200 (the status sent, as nginx does) or 499; it must be logged, and the
                # connection released.
                self.assertIn(line["status"], (200, 499), line)
                self.assertLess(line["bytes"], BIG, line)
                self.wait_connections(1)

    def test_many_leave_at_every_stage_at_once(self):
        # 20 clients at each stage, all leaving together with RST.
        socks = []
        for i in range(20):
            for data in (b"GET /fa", b"GET /fast HTTP/1.1\r\nHost: t\r\n",
                         b"GET /fast HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nx",
                         b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n"):
                s = connect(self.gd.port)
                s.sendall(data)
                socks.append(s)
        self.up.wait("requests", 40, timeout=20)
        self.wait_connections(len(socks) + 1)
        for s in socks:
            close(s, True)
        self.up.wait("aborted", 40, timeout=10)
        self.wait_connections(1)

    # pipelining ----------------------------------------------------------------------------

    def test_pipelined_three_in_one_write(self):
        s = connect(self.gd.port)
        try:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-1\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-2\r\n\r\n"
                      b"GET /fast HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-3\r\n\r\n")
            data = b""
            deadline = time.monotonic() + 15
            while len(split_responses(data)) < 3 and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            answers = split_responses(data)
            self.assertEqual(len(answers), 3, data)
            # In order, although the first is the slowest.
            self.assertEqual([h.get("x-request-id") for _, h, _ in answers],
                             ["pipe-1", "pipe-2", "pipe-3"])
            self.assertEqual([st for st, _, _ in answers], [200, 200, 200])
            self.assertEqual(json.loads(answers[0][2])["results"], [{"ok": True, "id": "slow"}])
            self.assertEqual(json.loads(answers[1][2]), {"status": "ok"})
            self.assertEqual(json.loads(answers[2][2])["errors"], [])
            # The connection is still usable, and Connection: close ends it.
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            rest, closed = recv_until_closed(s, 10)
            self.assertTrue(closed)
            self.assertEqual([st for st, _, _ in split_responses(rest)], [200])
        finally:
            s.close()

    def test_pipelined_client_leaves_after_first_answer(self):
        s = connect(self.gd.port)
        s.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n"
                  b"GET /hang HTTP/1.1\r\nHost: t\r\nX-Request-Id: pipe-leave\r\n\r\n")
        self.up.wait("requests", 4, timeout=10)   # /fast's two, then /hang's two
        close(s, True)
        self.up.wait("aborted", 2, timeout=5)
        self.assertEqual(self.gd.wait_access_id("pipe-leave")["status"], 499)

    # oversized and malformed input ---------------------------------------------------------

    def test_oversized_target_414(self):
        for n in (9 * 1024, 40 * 1024, 200 * 1024):
            with self.subTest(bytes=n):
                status, _, body = self.raw(b"GET /fast?pad=" + b"a" * n +
                                           b" HTTP/1.1\r\nHost: t\r\n\r\n")
                self.assertEqual(status, 414, body[:200])
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_oversized_headers_431_or_closed(self):
        for n in (40, 100, 1000):
            with self.subTest(kib=n):
                data = (b"GET /fast HTTP/1.1\r\nHost: t\r\n" +
                        b"".join(b"X-Pad-%d: %s\r\n" % (i, b"b" * 1000) for i in range(n)) +
                        b"\r\n")
                status, _, body = self.raw(data)
                self.assertIn(status, (431, None), body[:200])
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_malformed_request_lines(self):
        cases = [
            (b"GET /fast FOO/1.1\r\nHost: t\r\n\r\n", (400,)),
            (b"GET /fast HTTP/1.1 extra\r\nHost: t\r\n\r\n", (400,)),
            (b"GET /fast\r\n\r\n", (400,)),
            (b"GARBAGE / \r\n\r\n", (400,)),
            (b"GET /fast HTTP/9.9\r\nHost: t\r\n\r\n", (400, 505)),
            (b"GET /fast HTTP/1.1\r\nHost: t\r\nno colon\r\n\r\n", (400,)),
            (b"GET /fast HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n", (400,)),
            (b"GET /fast HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
             (400,)),
        ]
        for data, want in cases:
            with self.subTest(data=data[:40]):
                status, _, body = self.raw(data)
                self.assertIn(status, want, body[:200])
        self.assertEqual(self.up.stats()["requests"], 0)

    def assert_closed_without_answer(self, data, within):
        """Send data; the connection must be closed without an answer within `within`
        seconds, and while it is held other clients are served."""
        s = connect(self.gd.port)
        t0 = time.monotonic()
        try:
            s.sendall(data)
            t = time.monotonic()
            status, doc, _ = join(self.gd.url("/fast"))
            self.assertEqual(status, 200, doc)
            self.assertLess(time.monotonic() - t, 1.0)
            got, closed = recv_until_closed(s, within + 5)
        finally:
            s.close()
        took = time.monotonic() - t0
        self.assertTrue(closed, f"still open after {took:.1f}s")
        self.assertEqual(got, b"")
        self.assertLess(took, within)
        return took

    def test_request_line_without_target_closed(self):
        # libmicrohttpd 0.9.75 closes it at once, without an answer (documented).
        for data in (b"GARBAGE\r\n\r\n", b"GET\r\n\r\n"):
            with self.subTest(data=data):
                self.assert_closed_without_answer(data, within=1.0)

    def test_nul_bytes_closed_within_idle_timeout(self):
        # Bytes that never form a request line hold the connection until idle_timeout_ms
        # (1 s here; libmicrohttpd counts whole seconds), then it is closed (documented).
        for data in (b"\x00\x00\x00\r\n\r\n", b"\x00" * 100, b"\x00GET / HTTP/1.1\r\n\r\n"):
            with self.subTest(data=data[:10]):
                self.assert_closed_without_answer(data, within=3.0)

    def test_many_nul_connections_do_not_block(self):
        socks = [connect(self.gd.port) for _ in range(50)]
        for s in socks:
            s.sendall(b"\x00\x00\r\n\r\n")
        t = time.monotonic()
        for _ in range(10):
            status, _, _ = join(self.gd.url("/fast"))
            self.assertEqual(status, 200)
        self.assertLess(time.monotonic() - t, 5)
        for s in socks:
            got, closed = recv_until_closed(s, 5)
            self.assertTrue(closed)
            s.close()

    def test_conflicting_content_length_400(self):
        # RFC 9112 6.3: differing Content-Length values make the framing invalid; the server
        # must answer 400 and close.  libmicrohttpd 0.9.75 alone takes the first value and
        # parses the rest of the declared body as the next request (request smuggling behind
        # a proxy that believes the other value); gatherd checks the framing itself.
        s = connect(self.gd.port)
        try:
            s.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                      b"Content-Length: 38\r\n\r\nXGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            got, _ = recv_until_closed(s, 5)
        finally:
            s.close()
        answers = split_responses(got)
        self.assertEqual([a[0] for a in answers], [400], short(got))

    # HTTP/1.0 ------------------------------------------------------------------------------

    def test_http10_without_keepalive_answer_then_close(self):
        s = connect(self.gd.port)
        t0 = time.monotonic()
        try:
            s.sendall(b"GET /fast HTTP/1.0\r\n\r\n")
            got, closed = recv_until_closed(s, 10)
        finally:
            s.close()
        self.assertTrue(closed)
        # Closed right after the answer, not by the idle timeout.
        self.assertLess(time.monotonic() - t0, 0.9)
        answers = split_responses(got)
        self.assertEqual(len(answers), 1, got)
        status, headers, body = answers[0]
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["errors"], [])
        self.assertEqual(headers.get("connection", "").lower(), "close", headers)


class SlowlorisTest(FaultTest):
    SLOW = 5

    @classmethod
    def make_config(cls, up):
        return config(
            endpoint("/fast", [("a", up.url("/ok?id=a")), ("b", up.url("/ok?id=b"))],
                     timeout_ms=10000),
            idle_timeout_ms=3000,
        )

    def test_slow_headers_do_not_delay_others(self):
        request = (b"GET /fast HTTP/1.1\r\nHost: slowloris.example\r\n"
                   b"X-Request-Id: slow-%d\r\n\r\n")
        answers = {}
        lock = threading.Lock()
        dribbling = threading.Event()
        done_dribbling = threading.Barrier(self.SLOW + 1)

        def slow(i):
            data = request % i
            s = connect(self.gd.port, timeout=30)
            try:
                # 16 bytes, one per 0.5 s (8 s), then the rest of the request at once.
                for k in range(16):
                    s.sendall(data[k:k + 1])
                    dribbling.set()
                    time.sleep(0.5)
                done_dribbling.wait(30)
                s.sendall(data[16:])
                got = gd.read_response(s, 10)
            finally:
                s.close()
            with lock:
                answers[i] = parse_response(got)

        ts = [threading.Thread(target=slow, args=(i,)) for i in range(self.SLOW)]
        for t in ts:
            t.start()
        dribbling.wait(10)
        # Meanwhile, normal clients are served promptly, one by one and in bursts.
        served, worst = 0, 0.0
        while done_dribbling.n_waiting < self.SLOW and any(t.is_alive() for t in ts):
            t0 = time.monotonic()
            status, doc, _ = join(self.gd.url("/fast"))
            worst = max(worst, time.monotonic() - t0)
            self.assertEqual(status, 200, doc)
            self.assertEqual(doc["errors"], [])
            served += 1
            if served % 50 == 0:
                burst = [threading.Thread(target=lambda: join(self.gd.url("/fast")))
                         for _ in range(20)]
                for b in burst:
                    b.start()
                for b in burst:
                    b.join(20)
        done_dribbling.wait(30)
        for t in ts:
            t.join(30)
        self.assertLess(worst, 1.0, f"a normal request took {worst:.3f}s")
        self.assertGreater(served, 20)
        # The slow clients are answered too, once their requests are complete.
        self.assertEqual(sorted(answers), list(range(self.SLOW)))
        for i, (status, headers, body) in answers.items():
            self.assertEqual(status, 200, body)
            self.assertEqual(headers.get("x-request-id"), f"slow-{i}")
        self.assert_healthy()

    def test_slow_client_that_goes_silent_is_closed(self):
        s = connect(self.gd.port, timeout=30)
        try:
            for b in b"GET /fa":
                s.sendall(bytes([b]))
                time.sleep(0.5)
            t0 = time.monotonic()
            got, closed = recv_until_closed(s, 15)
        finally:
            s.close()
        self.assertTrue(closed)
        self.assertEqual(got, b"")
        # idle_timeout_ms is 3 s; libmicrohttpd counts in whole seconds.
        self.assertLess(time.monotonic() - t0, 6)
        self.assert_healthy()


if __name__ == "__main__":
    faultlib.main()
