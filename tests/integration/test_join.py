#!/usr/bin/env python3
"""The join: results in configuration order whatever the completion order, byte for byte,
fetched in parallel; the client's query string is not forwarded."""

import json
import time
import unittest

import gd
from gd import FakeUpstream, Gatherd, config, endpoint, http_get, stop_checked


class JoinTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        names = gd.FIXTURE_NAMES
        cls.cfg = config(
            # Delays 300/150/0 ms: the last backend finishes first, the first one last.
            endpoint("/tickers", [
                ("bitbank", u(f"/json/{names[0]}?delay_ms=300")),
                ("btcbox", u(f"/json/{names[1]}?delay_ms=150")),
                ("coincheck", u(f"/json/{names[2]}")),
            ], timeout_ms=10000),
            endpoint("/slow3", [
                ("a", u("/ok?id=a&delay_ms=1000")),
                ("b", u("/ok?id=b&delay_ms=1000")),
                ("c", u("/ok?id=c&delay_ms=1000")),
            ], timeout_ms=10000),
            endpoint("/values", [
                ("ws", u("/body?b=%20%0A%09%5B1%2C%202%5D%20%0D%0A")),   # " \n\t[1, 2] \r\n"
                ("num", u("/body?b=-12.5e3")),
                ("str", u("/body?b=%22caf%C3%A9%20%5Cu00e9%20%5C%22q%5C%22%22")),
                ("null", u("/body?b=null")),
                ("true", u("/body?b=true")),
                ("obj", u("/body?b=%7B%20%22k%22%20%3A%20%5B%20%7B%7D%20%5D%20%7D")),
            ], timeout_ms=10000),
            endpoint("/nul", [("nul", u("/body?b=%7B%22s%22%3A%22a%5Cu0000b%22%7D"))],
                     timeout_ms=10000),
            endpoint("/echoq", [("e", u("/echo?fixed=1"))], timeout_ms=10000),
            endpoint("/big", [
                ("len", u("/huge_length?bytes=5000000")),
                ("chunked", u("/huge_chunked?bytes=3000000")),
                ("small", u("/ok?id=s")),
            ], timeout_ms=30000),
            endpoint("/many", [(f"b{i}", u(f"/ok?id={i}&delay_ms={(i * 7) % 50}"))
                               for i in range(1000)], timeout_ms=60000),
        )
        cls.gd = Gatherd(cls.cfg)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def test_order_and_bytes(self):
        want = [gd.fixture_bytes(n).strip() for n in gd.FIXTURE_NAMES]
        for _ in range(5):
            status, headers, body = http_get(self.gd.url("/tickers"))
            self.assertEqual(status, 200, body)
            self.assertTrue(headers.get("content-type", "").startswith("application/json"),
                            headers)
            doc = json.loads(body)
            self.assertEqual(set(doc), {"results", "errors"})
            self.assertEqual(doc["errors"], [])
            self.assertEqual(doc["results"], [json.loads(w) for w in want])
            # Byte for byte, minus the fixture's trailing newline.
            self.assertEqual(gd.raw_members(body), want)

    def test_parallel(self):
        # Three backends of 1 s each: serial would be 3 s.
        http_get(self.gd.url("/slow3"))  # warm the upstream connections
        t0 = time.monotonic()
        status, _, body = http_get(self.gd.url("/slow3"))
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 200, body)
        self.assertEqual([r["id"] for r in json.loads(body)["results"]], ["a", "b", "c"])
        self.assertGreaterEqual(elapsed, 0.95)
        self.assertLess(elapsed, 0.8 * 3.0, "backends were not fetched in parallel")

    def test_values_copied_verbatim(self):
        status, _, body = http_get(self.gd.url("/values"))
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["errors"], [])
        self.assertEqual(gd.raw_members(body), [
            b"[1, 2]", b"-12.5e3", '"café \\u00e9 \\"q\\""'.encode(), b"null", b"true",
            b'{ "k" : [ {} ] }'])

    def test_nul_escape_is_valid_json(self):
        # "\u0000" is valid JSON in valid UTF-8: it must not count as invalid_json.
        status, _, body = http_get(self.gd.url("/nul"))
        self.assertEqual(status, 200, body)
        self.assertEqual(gd.raw_members(body), [b'{"s":"a\\u0000b"}'])

    def test_big_bodies(self):
        # Multi-megabyte bodies (under the 8 MiB default cap), fixed-length and chunked.
        status, _, body = http_get(self.gd.url("/big"), timeout=60)
        self.assertEqual(status, 200, body[:300])
        raw = gd.raw_members(body)
        self.assertEqual(len(raw), 3)
        self.assertEqual(raw[0], gd.filler(5000000))
        self.assertEqual(raw[1], gd.filler(3000000))
        self.assertEqual(json.loads(raw[2]), {"ok": True, "id": "s"})
        self.assertEqual(json.loads(body)["errors"], [])

    def test_thousand_backends(self):
        # The most backends an endpoint may have, finishing in scrambled order.
        t0 = time.monotonic()
        status, _, body = http_get(self.gd.url("/many"), timeout=120)
        self.assertEqual(status, 200, body[:300])
        doc = json.loads(body)
        self.assertEqual(doc["errors"], [])
        self.assertEqual([r["id"] for r in doc["results"]], [str(i) for i in range(1000)])
        self.assertLess(time.monotonic() - t0, 30)

    def test_query_not_forwarded(self):
        status, _, body = http_get(self.gd.url("/echoq?client=1&x=y"))
        self.assertEqual(status, 200, body)
        echo = json.loads(body)["results"][0]
        self.assertEqual(echo["method"], "GET")
        self.assertEqual(echo["path"], "/echo")
        self.assertEqual(echo["query"], "fixed=1")


if __name__ == "__main__":
    unittest.main()
