#!/usr/bin/env python3
"""Nothing of one backend's settings leaks into the next transfer: gatherd recycles its
upstream transfer state (connections, handles), so backends with different headers, timeouts
and body caps alternate on one worker and each must get exactly its own configuration."""

import json
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, stop_checked


class ReuseTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/with_headers", [
                {"name": "h", "url": u("/echo?who=h"),
                 "headers": {"X-Token": "secret", "Accept": "application/x-special"}},
            ], timeout_ms=10000),
            endpoint("/without_headers", [{"name": "n", "url": u("/echo?who=n")}],
                     timeout_ms=10000),
            endpoint("/short_timeout", [
                {"name": "s", "url": u("/ok?delay_ms=2000"), "timeout_ms": 200},
            ], timeout_ms=10000),
            endpoint("/long_timeout", [
                {"name": "l", "url": u("/ok?id=l&delay_ms=700")},
            ], timeout_ms=10000),
            endpoint("/small_cap", [
                {"name": "c", "url": u("/huge_length?bytes=5000"), "max_body_bytes": 1000},
            ], timeout_ms=10000),
            endpoint("/small_cap_chunked", [
                {"name": "c", "url": u("/huge_chunked?bytes=5000"), "max_body_bytes": 1000},
            ], timeout_ms=10000),
            endpoint("/no_cap", [{"name": "b", "url": u("/huge_length?bytes=5000")}],
                     timeout_ms=10000),
            endpoint("/no_cap_chunked", [{"name": "b", "url": u("/huge_chunked?bytes=5000")}],
                     timeout_ms=10000),
            endpoint("/error_then", [{"name": "e", "url": u("/status/503")}], timeout_ms=10000),
            endpoint("/ok", [{"name": "o", "url": u("/ok?id=o")}], timeout_ms=10000),
        ), workers=1)

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def get(self, path, want=200):
        status, _, body = http_get(self.gd.url(path), timeout=30)
        self.assertEqual(status, want, body[:300])
        return json.loads(body)

    def test_headers_do_not_leak(self):
        for _ in range(5):
            h = self.get("/with_headers")["results"][0]["headers"]
            self.assertEqual(h.get("x-token"), "secret")
            self.assertEqual(h.get("accept"), "application/x-special")
            n = self.get("/without_headers")["results"][0]["headers"]
            self.assertNotIn("x-token", n)
            self.assertNotEqual(n.get("accept"), "application/x-special")

    def test_timeouts_do_not_leak(self):
        for _ in range(3):
            doc = self.get("/short_timeout", 502)
            self.assertEqual(doc["errors"][0]["error"], "timeout")
            doc = self.get("/long_timeout")
            self.assertEqual(doc["errors"], [], "a 200 ms timeout leaked into a 10 s backend")

    def test_body_caps_do_not_leak(self):
        for _ in range(3):
            for capped, free in [("/small_cap", "/no_cap"),
                                 ("/small_cap_chunked", "/no_cap_chunked")]:
                doc = self.get(capped, 502)
                self.assertEqual(doc["errors"][0]["error"], "too_large")
                doc = self.get(free)
                self.assertEqual(doc["errors"], [], f"{capped}'s cap leaked into {free}")
                self.assertEqual(len(doc["results"][0]), 4998)

    def test_errors_do_not_leak(self):
        for _ in range(5):
            doc = self.get("/error_then", 502)
            self.assertEqual(doc["errors"][0].get("status"), 503)
            doc = self.get("/ok")
            self.assertEqual(doc, {"results": [{"ok": True, "id": "o"}], "errors": []})


if __name__ == "__main__":
    unittest.main()
