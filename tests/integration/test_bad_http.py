#!/usr/bin/env python3
"""Malformed or oversized client input is answered with the right 4xx (or the connection is
closed), never hangs, and never hurts the service."""

import json
import socket
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, parse_response, raw_request, \
    stop_checked


class BadHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        # A short idle timeout bounds how long a client that never completes a request can
        # hold a connection; "never a hang" below means answered or closed within it.
        cls.gd = Gatherd(config(
            endpoint("/tickers", [("ok", cls.up.url("/ok"))], timeout_ms=10000),
            idle_timeout_ms=2000,
        ))

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def tearDown(self):
        # After every bad input the service still answers.
        status, _, body = http_get(self.gd.url("/healthz"))
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "ok"})

    def raw(self, data, timeout=15):
        """(status or None if the connection was closed without an answer, headers, body)."""
        try:
            got = raw_request(self.gd.port, data, timeout=timeout)
        except socket.timeout:
            self.fail("gatherd neither answered nor closed the connection")
        return parse_response(got)

    def assert_4xx(self, data, want, allow_close=False):
        status, headers, body = self.raw(data)
        if status is None and allow_close:
            return None
        self.assertIsNotNone(status, "connection closed without an answer")
        self.assertTrue(400 <= status < 500, f"status {status}, want {want}: {body[:200]!r}")
        if status != want:
            print(f"note: contract says {want}, gatherd/libmicrohttpd answered {status}")
        return status

    def test_garbage_request_line(self):
        # libmicrohttpd 0.9.75 closes the connection without an answer when the request line
        # has no space at all; the contract's 400 "from libmicrohttpd" is accepted or a close.
        self.assert_4xx(b"GARBAGE\r\n\r\n", 400, allow_close=True)
        self.assert_4xx(b"GET\r\n\r\n", 400, allow_close=True)

    def test_request_line_without_version(self):
        status, _, body = self.raw(b"GARBAGE / \r\n\r\n")
        self.assertEqual(status, 400, body)
        status, _, body = self.raw(b"GET /tickers\r\n\r\n")
        self.assertEqual(status, 400, body)

    def test_garbage_bytes(self):
        # Answered with a 4xx or closed (at the latest by the 2 s idle timeout), never a hang.
        for data in [b"\x00\x01\x02 \xff\xfe / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00",
                     b"\r\n" * 100, b"\xff" * 5000 + b"\r\n\r\n"]:
            with self.subTest(data=data[:20]):
                self.assert_4xx(data, 400, allow_close=True)

    def test_access_log_stays_utf8_json(self):
        self.raw(b"GET /\xff\xfe\"\\\x01 HTTP/1.1\r\nX-Request-Id: weird-path\r\n"
                 b"Connection: close\r\n\r\n")
        self.gd.wait_access_id("weird-path")
        for line in self.gd.stdout_bytes():
            json.loads(line.decode("utf-8"))   # strict: raises on invalid UTF-8

    def test_bad_header_line(self):
        status, _, body = self.raw(b"GET /tickers HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n")
        self.assertEqual(status, 400, body)

    def test_url_too_long(self):
        # A known endpoint with a 10 KB query: a 4xx here cannot be a plain 404.
        data = b"GET /tickers?pad=" + b"a" * 10240 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
        self.assert_4xx(data, 414)

    def test_headers_too_large(self):
        data = (b"GET /tickers HTTP/1.1\r\nHost: t\r\n" +
                b"".join(b"X-Pad-%d: %s\r\n" % (i, b"b" * 1000) for i in range(100)) + b"\r\n")
        self.assert_4xx(data, 431, allow_close=True)

    def test_post_405(self):
        before = self.up.stats()["requests"]
        for method in ["POST", "PUT", "DELETE", "PATCH"]:
            with self.subTest(method=method):
                status, headers, body = http_get(self.gd.url("/tickers"), method=method,
                                                 body=b"{}")
                self.assertEqual(status, 405, body)
                allow = [m.strip() for m in headers.get("allow", "").split(",")]
                self.assertEqual(sorted(allow), ["GET", "HEAD"], headers)
                self.assertIsInstance(json.loads(body), dict)
                self.assertTrue(headers.get("content-type", "").startswith("application/json"))
        self.assertEqual(self.up.stats()["requests"], before, "a 405 must not reach upstreams")

    def test_post_on_reserved_path_405(self):
        status, headers, body = http_get(self.gd.url("/healthz"), method="POST", body=b"")
        self.assertEqual(status, 405, body)
        self.assertIn("GET", headers.get("allow", ""))

    def test_unknown_path_404(self):
        status, headers, body = http_get(self.gd.url("/x"))
        self.assertEqual(status, 404)
        self.assertTrue(headers.get("content-type", "").startswith("application/json"))
        self.assertEqual(json.loads(body),
                         {"error": "not_found", "message": "no endpoint at /x"})

    def test_unknown_path_with_query_404(self):
        status, _, body = http_get(self.gd.url("/x?y=1"))
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(body)["error"], "not_found")

    def test_large_body_413(self):
        body = b"z" * (100 * 1024)
        status, headers, data = self.raw(
            b"GET /tickers HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.assertEqual(status, 413, data)

    def test_chunked_body_refused_at_once(self):
        # gatherd takes no request body in chunked coding (libmicrohttpd accepts chunk lines
        # RFC 9112 does not): refused from the head, before any of the body is read.
        chunk = b"z" * 8192
        body = b"".join(b"2000\r\n" + chunk + b"\r\n" for _ in range(12)) + b"0\r\n\r\n"
        status, headers, data = self.raw(
            b"GET /tickers HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        self.assertEqual(status, 400, data)
        self.assertEqual(headers.get("connection"), "close")

    def test_small_body_ignored(self):
        status, _, body = http_get(self.gd.url("/tickers"), body=b"x" * 1024,
                                   headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["errors"], [])

    def test_body_at_64k_ignored(self):
        status, _, body = http_get(self.gd.url("/tickers"), body=b"x" * 65536,
                                   headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 200, body)

    def test_body_over_64k_413(self):
        status, _, body = self.raw(b"GET /tickers HTTP/1.1\r\nHost: t\r\n"
                                   b"Content-Length: 65537\r\n\r\n" + b"x" * 65537)
        self.assertEqual(status, 413, body)

    def test_gatherd_errors_are_json_with_request_id(self):
        # The 4xx answers gatherd itself produces (as opposed to libmicrohttpd's internal
        # ones) are JSON and carry X-Request-Id like every other answer.
        cases = [
            (b"GET /tickers?pad=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n", 414),
            (b"GET /tickers HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n", 413),
            (b"POST /tickers HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n", 405),
            (b"GET /nope HTTP/1.1\r\nHost: t\r\n", 404),
        ]
        for head, want in cases:
            with self.subTest(want=want):
                body = b"x" * 70000 if want == 413 else b""
                status, headers, data = self.raw(head + b"X-Request-Id: err-" +
                                                 str(want).encode() + b"\r\n\r\n" + body)
                self.assertEqual(status, want, data[:200])
                self.assertEqual(headers.get("x-request-id"), f"err-{want}")
                self.assertTrue(headers.get("content-type", "").startswith("application/json"))
                self.assertIsInstance(json.loads(data).get("error"), str)

    def test_client_silent_after_connect(self):
        # A client that connects and sends a partial request, then closes.
        s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=10)
        s.sendall(b"GET /tick")
        s.close()


if __name__ == "__main__":
    unittest.main()
