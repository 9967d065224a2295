#!/usr/bin/env python3
"""HEAD on an endpoint, /healthz, /readyz, /metrics."""

import json
import re
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, http_get, metric_sum, parse_response, \
    raw_request, stop_checked


class BuiltinTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/tickers", [("a", u("/json/btcbox_ticker.json")), ("b", u("/ok"))],
                     timeout_ms=10000),
        ))

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def test_healthz(self):
        status, headers, body = http_get(self.gd.url("/healthz"))
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("application/json"))
        self.assertEqual(json.loads(body), {"status": "ok"})

    def test_readyz(self):
        status, headers, body = http_get(self.gd.url("/readyz"))
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"status": "ready"})

    def test_head_endpoint(self):
        g_status, g_headers, g_body = http_get(self.gd.url("/tickers"))
        self.assertEqual(g_status, 200)
        # http.client knows HEAD has no body; check on the wire too.
        raw = raw_request(self.gd.port, b"HEAD /tickers HTTP/1.1\r\nHost: t\r\n"
                                        b"Connection: close\r\n\r\n")
        status, headers, body = parse_response(raw)
        self.assertEqual(status, 200, raw)
        self.assertEqual(body, b"", "HEAD answer carries a body")
        self.assertTrue(headers.get("content-type", "").startswith("application/json"))
        if "content-length" in headers:
            self.assertEqual(int(headers["content-length"]), len(g_body))

    def test_head_healthz(self):
        status, _, body = http_get(self.gd.url("/healthz"), method="HEAD")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"")

    def test_metrics(self):
        status, headers, body = http_get(self.gd.url("/metrics"))
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("content-type", "").startswith("text/plain"), headers)
        text = body.decode()
        self.assertIn("gatherd_requests_total", text)
        self.assertIn("gatherd_log_lines_dropped_total", text)
        # Prometheus text format: every non-comment line is "name{labels} value".
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+0-9.eEinfNa]+"
                                       r"( \d+)?$")

    def test_metrics_count_requests(self):
        before = metric_sum(http_get(self.gd.url("/metrics"))[2].decode(),
                            "gatherd_requests_total")
        self.assertIsNotNone(before)
        for _ in range(5):
            self.assertEqual(http_get(self.gd.url("/tickers"))[0], 200)
        after = metric_sum(http_get(self.gd.url("/metrics"))[2].decode(),
                           "gatherd_requests_total")
        self.assertGreaterEqual(after - before, 5)


if __name__ == "__main__":
    unittest.main()
