#!/usr/bin/env python3
"""Clients that hold a connection without completing a request, or send heads libmicrohttpd
refuses by itself (issue 14): a head near the 16 KiB buffer is answered 431, a slow head 408
once header_timeout_ms has passed since its first byte (an idle keep-alive connection is left
to the idle timeout), and requests refused before gatherd's handler are counted in
gatherd_http_rejected_total{reason} and, once their request line was read, logged."""

import json
import socket
import time
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, parse_response, raw_request, \
    read_response, scrape, stop_checked, wait_until

HEADER_TIMEOUT_MS = 1000


def rejected(g, reason):
    return scrape(g).samples.get(("gatherd_http_rejected_total",
                                  frozenset({("reason", reason)})), 0)


def slow_send(s, data, pace):
    """Sends data a byte at a time, `pace` seconds apart, until gatherd answers or closes;
    returns what it answered."""
    got = b""
    for i in range(len(data)):
        try:
            s.sendall(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        s.settimeout(pace)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        got += chunk
        if not chunk or b"\r\n\r\n" in got:
            break
    s.settimeout(10)
    try:
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return got


class HostileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        cls.gd = Gatherd(config(endpoint("/tickers", [("ok", cls.up.url("/ok"))]),
                                idle_timeout_ms=8000, header_timeout_ms=HEADER_TIMEOUT_MS))

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def tearDown(self):
        status, _, body = http_get(self.gd.url("/healthz"))
        self.assertEqual(status, 200, body)

    def test_head_that_fills_the_buffer_gets_431(self):
        # A head that fits libmicrohttpd's 16 KiB buffer but leaves no room to build an answer
        # was read, then closed without one; every size up to and past the buffer is answered.
        before = rejected(self.gd, "header_too_large")
        for pad in [16150, 16200, 16250] + list(range(14000, 16400, 300)):
            with self.subTest(pad=pad):
                data = (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Request-Id: big-%d\r\nX-Pad: "
                        % pad + b"a" * pad + b"\r\n\r\n")
                status, headers, body = parse_response(raw_request(self.gd.port, data))
                self.assertIn(status, (200, 431), body[:200])
                if pad >= 16150:
                    self.assertEqual(status, 431, body[:200])
                if status == 431 and body.startswith(b"{"):
                    self.assertEqual(headers.get("connection"), "close")
                    self.assertEqual(json.loads(body)["error"], "header_too_large")
                    self.assertEqual(headers.get("x-request-id"), f"big-{pad}")
        self.assertGreaterEqual(rejected(self.gd, "header_too_large"), before + 3)

    def test_slow_head_gets_408(self):
        # One byte every 0.25 s: the idle timeout (8 s) restarts on every byte and would never
        # fire; the head's deadline (1 s after its first byte) does.
        before = rejected(self.gd, "header_timeout")
        head = b"GET /tickers HTTP/1.1\r\nHost: a\r\nX-Request-Id: slow-head\r\n" + b"X: y\r\n" * 40
        for first in (b"", head[:40]):   # slow from the start; request line at once, then slow
            with self.subTest(request_line_at_once=bool(first)):
                s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
                try:
                    t0 = time.monotonic()
                    s.sendall(first)
                    got = slow_send(s, head[len(first):] + b"\r\n", 0.25)
                    took = time.monotonic() - t0
                finally:
                    s.close()
                status, headers, body = parse_response(got)
                self.assertEqual(status, 408, got[:300])
                self.assertEqual(headers.get("connection"), "close")
                self.assertEqual(json.loads(body)["error"], "request_timeout")
                self.assertLess(took, 6, "the deadline is 1 s after the first byte")
        wait_until(lambda: rejected(self.gd, "header_timeout") >= before + 2, 10,
                   "both timeouts counted")
        # Its request line was read: an access line, with the method libmicrohttpd keeps to
        # itself shown as "-".
        line = self.gd.wait_access(lambda o: o.get("status") == 408)
        self.assertEqual((line["method"], line["path"]), ("-", "/tickers"))
        self.assertEqual(self.up.stats()["requests"], 0)

    def test_idle_keepalive_connection_is_not_408(self):
        s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
        try:
            for i in range(2):
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                status, _, body = parse_response(read_response(s, 10))
                self.assertEqual(status, 200, body)
                # Idle for three header timeouts: nothing is sent and the connection stays.
                s.settimeout(3 * HEADER_TIMEOUT_MS / 1000)
                with self.assertRaises(socket.timeout):
                    self.fail(f"sent on an idle connection: {s.recv(100)!r}")
        finally:
            s.close()

    def test_refused_by_libmicrohttpd_is_counted_and_logged(self):
        before = rejected(self.gd, "bad_request")
        status, _, body = parse_response(raw_request(
            self.gd.port, b"GET /tickers HTTP/1.1\r\nHost: a\r\nX-Request-Id: bad-cl\r\n"
                          b"Content-Length: 1x\r\n\r\n"))
        self.assertEqual(status, 400, body[:200])
        line = self.gd.wait_access_id("bad-cl")
        self.assertEqual((line["status"], line["method"], line["path"]), (400, "-", "/tickers"))
        wait_until(lambda: rejected(self.gd, "bad_request") >= before + 1, 10, "a 400 counted")
        # A client error is not the operator's: libmicrohttpd's message is debug, not warn.
        self.assertFalse([o for o in self.gd.log_lines()
                          if o.get("source") == "libmicrohttpd" and o.get("level") == "warn"],
                         self.gd.stderr_text()[-2000:])

    def test_gatherd_own_refusals_are_counted(self):
        before = rejected(self.gd, "framing")
        status, _, _ = parse_response(raw_request(
            self.gd.port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc"))
        self.assertEqual(status, 400)
        wait_until(lambda: rejected(self.gd, "framing") >= before + 1, 10, "framing counted")

    def test_bytes_that_never_make_a_request_line(self):
        before = rejected(self.gd, "unparsed")
        raw_request(self.gd.port, b"GARBAGE\r\n\r\n")
        wait_until(lambda: rejected(self.gd, "unparsed") >= before + 1, 10, "unparsed counted")


if __name__ == "__main__":
    unittest.main()
