#!/usr/bin/env python3
"""Request framing that RFC 9112 says must be rejected is refused at once with Connection:
close, and nothing sent after the head is ever served as a further request (issue 14).

Each form carries a smuggled second request for an aggregate endpoint behind it: the test
checks the answer, that the connection is closed after it, and that the upstream never saw a
call (the smuggled request was not served)."""

import json
import socket
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, parse_response, read_response, \
    stop_checked
from smuggling import CODINGS, FORMS

class SmugglingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        # The idle timeout is far above the 5 s a test waits for an answer: an answer within
        # it is not the idle timeout closing the connection.
        cls.gd = Gatherd(config(endpoint("/tickers", [("ok", cls.up.url("/ok"))]),
                                idle_timeout_ms=60000))

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def exchange(self, data, timeout=5):
        """(status, headers, body, everything after the first answer until the close)."""
        s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=timeout)
        try:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            first = read_response(s, timeout)
            rest = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
            except ConnectionResetError:
                pass
            except socket.timeout:
                self.fail("the connection was not closed after the refusal")
        finally:
            s.close()
        status, headers, body = parse_response(first)
        return status, headers, body, rest

    def assert_refused(self, data, want):
        before = self.up.stats()["requests"]
        status, headers, body, rest = self.exchange(data)
        self.assertEqual(status, want, body[:300])
        self.assertEqual(headers.get("connection", "").lower(), "close", headers)
        self.assertIsInstance(json.loads(body).get("message"), str)
        self.assertEqual(rest, b"", "a second answer: the smuggled request was served")
        self.assertEqual(self.up.stats()["requests"], before, "the smuggled request ran")

    def test_forms(self):
        for name, (data, want) in FORMS.items():
            with self.subTest(name):
                self.assert_refused(data, want)

    def test_codings_other_than_final_chunked(self):
        for name, (coding, want) in CODINGS.items():
            with self.subTest(name):
                self.assert_refused(b"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                                    + coding + b"\r\n\r\n", want)

    def test_nul_in_path(self):
        for target in [b"/healthz%00junk", b"/healthz\x00junk", b"/tickers%00", b"/tickers\x00?a=1"]:
            with self.subTest(target=target):
                self.assert_refused(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400)

    def test_plain_requests_still_served(self):
        # The checks read the head's layout: ordinary heads, with tabs, trailing white space,
        # empty values and a bare-LF head, still pass.
        for head in [b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-E:\r\nX-T:\tv\t\r\n\r\n",
                     b"GET /healthz HTTP/1.1\nHost: a\nX-A: b \n\n",
                     b"GET /healthz HTTP/1.0\r\n\r\n",
                     b"GET /healthz?x=%41 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab"]:
            with self.subTest(head=head):
                s = socket.create_connection(("127.0.0.1", self.gd.port), timeout=5)
                try:
                    s.sendall(head)
                    status, _, body = parse_response(read_response(s, 5))
                finally:
                    s.close()
                self.assertEqual(status, 200, body)


if __name__ == "__main__":
    unittest.main()
