#!/usr/bin/env python3
"""X-Request-Id: a valid client id (1-128 of [A-Za-z0-9._:@/+=-]) is echoed and sent upstream,
otherwise a 16-hex-digit id is generated; every answer carries one.  Also the configured backend
headers with ${VAR} and $$ substitution reach the upstream."""

import concurrent.futures
import json
import re
import unittest

from gd import FakeUpstream, Gatherd, config, endpoint, get_json, http_get, parse_response, \
    raw_request, stop_checked

HEX16 = re.compile(r"^[0-9a-f]{16}$")
ALLOWED = "AZaz09._:@/+=-"


class RequestIdTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.up = FakeUpstream()
        u = cls.up.url
        cls.gd = Gatherd(config(
            endpoint("/echo2", [
                ("e1", u("/echo")),
                {"name": "e2", "url": u("/echo"),
                 "headers": {"X-Token": "Bearer ${GD_TEST_TOKEN}", "X-Price": "$$5",
                             "Accept": "application/json"}},
            ], timeout_ms=10000),
        ), env={"GD_TEST_TOKEN": "s3cr3t"})

    @classmethod
    def tearDownClass(cls):
        stop_checked(cls.gd, cls.up)

    def echo(self, headers=None):
        status, h, doc = get_json(self.gd.url("/echo2"), headers=headers or {})
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["errors"], [])
        return h.get("x-request-id"), [r["headers"].get("x-request-id") for r in doc["results"]]

    def test_client_id_echoed_and_forwarded(self):
        rid, upstream = self.echo({"X-Request-Id": "abc-123"})
        self.assertEqual(rid, "abc-123")
        self.assertEqual(upstream, ["abc-123", "abc-123"])
        self.assertEqual(self.gd.wait_access_id("abc-123")["path"], "/echo2")

    def test_all_allowed_characters(self):
        for value in [ALLOWED, "x", "a" * 128, "req.1:2@host/p+q=r-s_t"]:
            rid, upstream = self.echo({"X-Request-Id": value})
            self.assertEqual(rid, value)
            self.assertEqual(upstream, [value, value])

    def test_generated_when_absent(self):
        rid, upstream = self.echo()
        self.assertRegex(rid or "", HEX16)
        self.assertEqual(upstream, [rid, rid])
        rid2, _ = self.echo()
        self.assertNotEqual(rid, rid2, "generated ids must differ between requests")
        self.gd.wait_access_id(rid)

    def test_generated_ids_unique_across_workers_and_restarts(self):
        seen = set()
        for _ in range(2):  # two processes: ids must not repeat after a restart either
            with Gatherd(config(endpoint("/x", [("a", self.up.url("/ok"))])), workers=2) as g:
                with concurrent.futures.ThreadPoolExecutor(8) as ex:
                    ids = list(ex.map(lambda _: http_get(g.url("/healthz"))[1]["x-request-id"],
                                      range(400)))
                for rid in ids:
                    self.assertRegex(rid, HEX16)
                seen.update(ids)
        self.assertEqual(len(seen), 800, "generated request ids repeat")

    def test_invalid_replaced(self):
        for value in ["has space", "a" * 300, "a" * 129, "semi;colon", "quote\"d", "é"]:
            with self.subTest(value=value):
                raw = raw_request(self.gd.port, (
                    "GET /echo2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                    f"X-Request-Id: {value}\r\n\r\n").encode("utf-8"))
                status, h, body = parse_response(raw)
                self.assertEqual(status, 200, raw[:300])
                rid = h.get("x-request-id", "")
                self.assertRegex(rid, HEX16)
                doc = json.loads(body)
                self.assertEqual([r["headers"].get("x-request-id") for r in doc["results"]],
                                 [rid, rid])

    def test_empty_replaced(self):
        raw = raw_request(self.gd.port, b"GET /echo2 HTTP/1.1\r\nHost: t\r\nConnection: close"
                                        b"\r\nX-Request-Id:\r\n\r\n")
        status, h, _ = parse_response(raw)
        self.assertEqual(status, 200, raw[:300])
        self.assertRegex(h.get("x-request-id", ""), HEX16)

    def test_every_answer_has_an_id(self):
        for path, method in [("/healthz", "GET"), ("/readyz", "GET"), ("/metrics", "GET"),
                             ("/nope", "GET"), ("/echo2", "POST"), ("/echo2", "HEAD")]:
            with self.subTest(path=path, method=method):
                _, h, _ = http_get(self.gd.url(path), method=method)
                self.assertRegex(h.get("x-request-id", ""), HEX16)
                _, h, _ = http_get(self.gd.url(path), method=method,
                                   headers={"X-Request-Id": "given-1"})
                self.assertEqual(h.get("x-request-id"), "given-1")

    def test_configured_headers(self):
        status, _, doc = get_json(self.gd.url("/echo2"))
        self.assertEqual(status, 200, doc)
        h1, h2 = (r["headers"] for r in doc["results"])
        self.assertNotIn("x-token", h1)
        self.assertEqual(h2.get("x-token"), "Bearer s3cr3t")
        self.assertEqual(h2.get("x-price"), "$5")
        self.assertEqual(h2.get("accept"), "application/json")


if __name__ == "__main__":
    unittest.main()
